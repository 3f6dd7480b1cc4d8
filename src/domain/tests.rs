//! Unit tests of the order rules: life cycle, totals, versions, concurrency and pagination.

use std::collections::HashSet;
use std::sync::Arc;

use super::access::{Principal, Role};
use super::core::ORDER_SORT_FIELDS;
use super::core::{Core, Expect, NewCustomer, NewItem, NewOrder, OrderChanges, OrderFilter};
use super::error::DomainError;
use super::events::{Change, MemoryEventLog};
use super::model::{CustomerId, OrderId, OrderStatus, ProductId, Quantity};
use super::pagination::{CursorCodec, Limit, PageRequest, Position, SortSpec};
use super::seed;
use super::store::MemoryStore;

fn admin() -> Principal {
    Principal::new("test", Role::Admin)
}

fn core() -> Core {
    let store = Arc::new(MemoryStore::new());
    seed::load(store.as_ref(), 0);
    Core::new(
        store,
        Arc::new(MemoryEventLog::new(100_000, 100_000)),
        CursorCodec::new(b"test"),
    )
}

fn item(product: u64, quantity: i64) -> NewItem {
    NewItem {
        product_id: ProductId(product),
        quantity: Quantity::parse(quantity).unwrap(),
    }
}

fn new_order(core: &Core) -> super::model::Order {
    core.create_order(
        &admin(),
        NewOrder {
            customer_id: CustomerId(1),
            items: vec![item(1, 2), item(5, 1)],
        },
    )
    .unwrap()
}

fn set_status(
    core: &Core,
    id: OrderId,
    status: OrderStatus,
) -> Result<super::model::Order, DomainError> {
    core.update_order(
        &admin(),
        id,
        OrderChanges {
            status: Some(status),
            ..OrderChanges::default()
        },
        &Expect::Any,
    )
}

#[test]
fn the_life_cycle_allows_exactly_the_documented_transitions() {
    use OrderStatus::*;
    let allowed = [
        (Pending, Paid),
        (Paid, Shipped),
        (Shipped, Delivered),
        (Pending, Cancelled),
        (Paid, Cancelled),
    ];
    for from in OrderStatus::ALL {
        for to in OrderStatus::ALL {
            assert_eq!(
                from.can_become(to),
                allowed.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn an_order_walks_its_life_cycle_and_cannot_skip_or_go_back() {
    let core = core();
    let order = new_order(&core);
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(
        set_status(&core, order.id, OrderStatus::Shipped),
        Err(DomainError::IllegalTransition {
            from: "pending",
            to: "shipped"
        })
    );
    for next in [
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
    ] {
        assert_eq!(set_status(&core, order.id, next).unwrap().status, next);
    }
    assert!(matches!(
        set_status(&core, order.id, OrderStatus::Paid),
        Err(DomainError::IllegalTransition { .. })
    ));
}

#[test]
fn only_pending_or_paid_orders_can_be_cancelled() {
    let core = core();
    let order = new_order(&core);
    set_status(&core, order.id, OrderStatus::Paid).unwrap();
    let cancelled = core
        .cancel_order(&admin(), order.id, Some("too slow".into()), &Expect::Any)
        .unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        cancelled.cancellation.unwrap().reason.as_deref(),
        Some("too slow")
    );
    assert!(matches!(
        core.cancel_order(&admin(), order.id, None, &Expect::Any),
        Err(DomainError::IllegalTransition {
            from: "cancelled",
            to: "cancelled"
        })
    ));

    let shipped = new_order(&core);
    set_status(&core, shipped.id, OrderStatus::Paid).unwrap();
    set_status(&core, shipped.id, OrderStatus::Shipped).unwrap();
    assert!(matches!(
        core.cancel_order(&admin(), shipped.id, None, &Expect::Any),
        Err(DomainError::IllegalTransition {
            from: "shipped",
            to: "cancelled"
        })
    ));
}

#[test]
fn the_total_is_derived_from_the_items_and_follows_every_change() {
    let core = core();
    let order = new_order(&core);
    // Product 1 costs 2 450, product 5 costs 650.
    assert_eq!(order.total_cents(), 2 * 2_450 + 650);
    let (order, item_id) = core
        .add_item(&admin(), order.id, item(3, 1), &Expect::Any)
        .unwrap();
    assert_eq!(item_id.0, 3);
    assert_eq!(order.total_cents(), 2 * 2_450 + 650 + 12_900);
    let order = core
        .update_order(
            &admin(),
            order.id,
            OrderChanges {
                items: Some(vec![item(2, 3)]),
                ..OrderChanges::default()
            },
            &Expect::Any,
        )
        .unwrap();
    assert_eq!(order.total_cents(), 3 * 5_900);
    assert_eq!(order.items[0].id.0, 4, "replaced items get fresh ids");
}

#[test]
fn items_change_only_while_pending() {
    let core = core();
    let order = new_order(&core);
    set_status(&core, order.id, OrderStatus::Paid).unwrap();
    assert!(matches!(
        core.add_item(&admin(), order.id, item(1, 1), &Expect::Any),
        Err(DomainError::InvalidState(_))
    ));
    assert_eq!(core.order(&admin(), order.id).unwrap().items.len(), 2);
}

#[test]
fn every_change_bumps_the_version_once_and_a_no_op_does_not() {
    let core = core();
    let order = new_order(&core);
    assert_eq!(order.version, 1);
    let order = set_status(&core, order.id, OrderStatus::Paid).unwrap();
    assert_eq!(order.version, 2);
    let order = set_status(&core, order.id, OrderStatus::Paid).unwrap();
    assert_eq!(
        order.version, 2,
        "setting the current status changes nothing"
    );
    let events = core.events().since(0, 100);
    assert_eq!(
        events
            .iter()
            .map(|e| e.change.event_type())
            .collect::<Vec<_>>(),
        vec!["order.created", "order.status_changed"]
    );
}

#[test]
fn a_stale_expected_version_is_refused_and_changes_nothing() {
    let core = core();
    let order = new_order(&core);
    set_status(&core, order.id, OrderStatus::Paid).unwrap();
    let stale = Expect::OneOf(vec![1]);
    assert_eq!(
        core.cancel_order(&admin(), order.id, None, &stale),
        Err(DomainError::VersionMismatch { actual: 2 })
    );
    assert_eq!(
        core.delete_order(&admin(), order.id, &stale),
        Err(DomainError::VersionMismatch { actual: 2 })
    );
    assert_eq!(
        core.order(&admin(), order.id).unwrap().status,
        OrderStatus::Paid
    );
    core.cancel_order(&admin(), order.id, None, &Expect::OneOf(vec![2]))
        .unwrap();
}

#[test]
fn invalid_orders_report_every_bad_field_and_store_nothing() {
    let core = core();
    let err = core
        .create_order(
            &admin(),
            NewOrder {
                customer_id: CustomerId(999),
                items: vec![item(1, 1), item(999, 1)],
            },
        )
        .unwrap_err();
    let DomainError::Invalid(violations) = err else {
        panic!("expected a validation error, got {err:?}");
    };
    let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, vec!["customer_id", "items[1].product_id"]);
    assert!(
        core.create_order(
            &admin(),
            NewOrder {
                customer_id: CustomerId(1),
                items: vec![]
            }
        )
        .is_err()
    );
    assert_eq!(core.store().order_count(), 0);
    assert_eq!(core.events().last_seq(), 0);
}

#[test]
fn quantities_outside_one_to_a_thousand_do_not_parse() {
    for bad in [0, -1, 1_001, i64::MAX, i64::MIN] {
        assert!(Quantity::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(Quantity::parse(1_000).unwrap().get(), 1_000);
}

#[test]
fn ids_parse_only_as_canonical_positive_integers() {
    assert_eq!(OrderId::parse("12").unwrap(), OrderId(12));
    for bad in ["0", "012", "+1", "-1", "abc", "", "99999999999999999999999"] {
        assert!(
            matches!(OrderId::parse(bad), Err(DomainError::NotFound { .. })),
            "{bad}"
        );
    }
}

#[test]
fn customer_emails_are_unique_regardless_of_case() {
    let core = core();
    let err = core
        .create_customer(
            &admin(),
            NewCustomer {
                name: "Ada again".into(),
                email: "ADA@example.com".into(),
            },
        )
        .unwrap_err();
    assert!(matches!(err, DomainError::AlreadyExists(_)));
    let bad = core
        .create_customer(
            &admin(),
            NewCustomer {
                name: " ".into(),
                email: "nope".into(),
            },
        )
        .unwrap_err();
    assert!(matches!(bad, DomainError::Invalid(v) if v.len() == 2));
}

#[test]
fn concurrent_writers_never_lose_an_update() {
    let core = Arc::new(core());
    let order = new_order(&core);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let core = Arc::clone(&core);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    core.add_item(&admin(), order.id, item(5, 1), &Expect::Any)
                        .unwrap();
                    // Read the version, then write expecting it: losers retry, nobody overwrites.
                    loop {
                        let seen = core.order(&admin(), order.id).unwrap().version;
                        if core
                            .add_item(&admin(), order.id, item(5, 1), &Expect::OneOf(vec![seen]))
                            .is_ok()
                        {
                            break;
                        }
                    }
                    // Drop back below the item limit by replacing the items.
                    let _ = core.update_order(
                        &admin(),
                        order.id,
                        OrderChanges {
                            items: Some(vec![item(1, 1)]),
                            ..OrderChanges::default()
                        },
                        &Expect::Any,
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let order = core.order(&admin(), order.id).unwrap();
    let events = core.events().since(0, 1_000_000);
    // Every write that succeeded bumped the version by exactly one and emitted one event.
    assert_eq!(order.version as usize, events.len());
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    // Events of one order are published in version order.
    let versions: Vec<u64> = events.iter().map(|e| e.order.version).collect();
    assert_eq!(versions, (1..=order.version).collect::<Vec<_>>());
}

#[test]
fn keyset_pages_stay_exact_under_concurrent_inserts() {
    for sort in ["id", "-created_at,total_cents", "-total_cents"] {
        let core = Arc::new(core());
        seed::preload_orders(core.store().as_ref(), 500);
        let before: HashSet<u64> = {
            let mut all = HashSet::new();
            core.store().scan_orders(None, &mut |o| {
                all.insert(o.id.0);
                std::ops::ControlFlow::Continue(())
            });
            all
        };
        let writer = {
            let core = Arc::clone(&core);
            std::thread::spawn(move || {
                for _ in 0..300 {
                    new_order(&core);
                }
            })
        };
        let spec = SortSpec::parse(sort, ORDER_SORT_FIELDS).unwrap();
        let mut seen = Vec::new();
        let mut position = Position::Start;
        loop {
            let page = core.list_orders(
                &admin(),
                &OrderFilter::default(),
                &PageRequest {
                    sort: spec.clone(),
                    position,
                    limit: Limit::new(7),
                },
            );
            seen.extend(page.rows.iter().map(|o| o.id.0));
            match page.next {
                // Through the cursor text, as a client would.
                Some(key) => {
                    let cursor = core.cursors().encode("orders", &spec, &key);
                    position =
                        Position::After(core.cursors().decode("orders", &cursor, &spec).unwrap());
                }
                None => break,
            }
        }
        writer.join().unwrap();
        let unique: HashSet<u64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: a row was served twice");
        assert!(
            before.is_subset(&unique),
            "{sort}: a row that existed was skipped"
        );
    }
}

#[test]
fn filters_and_offsets_select_the_right_rows() {
    let core = core();
    seed::preload_orders(core.store().as_ref(), 40);
    let paid = core.list_orders(
        &admin(),
        &OrderFilter {
            status: Some(OrderStatus::Paid),
            ..OrderFilter::default()
        },
        &PageRequest {
            sort: SortSpec::by_id(),
            position: Position::Start,
            limit: Limit::new(100),
        },
    );
    assert_eq!(paid.rows.len(), 10);
    assert!(paid.rows.iter().all(|o| o.status == OrderStatus::Paid));
    let page = core.list_orders(
        &admin(),
        &OrderFilter::default(),
        &PageRequest {
            sort: SortSpec::by_id(),
            position: Position::Offset(35),
            limit: Limit::new(10),
        },
    );
    assert_eq!(
        page.rows.iter().map(|o| o.id.0).collect::<Vec<_>>(),
        vec![36, 37, 38, 39, 40]
    );
    assert!(!page.has_more());
}

#[test]
fn deleting_an_order_emits_its_last_state_and_frees_nothing_for_reuse() {
    let core = core();
    let order = new_order(&core);
    let deleted = core.delete_order(&admin(), order.id, &Expect::Any).unwrap();
    assert_eq!(deleted.id, order.id);
    assert!(matches!(
        core.order(&admin(), order.id),
        Err(DomainError::NotFound { .. })
    ));
    let last = core.events().since(0, 10).pop().unwrap();
    assert_eq!(last.change, Change::Deleted);
    assert_ne!(new_order(&core).id, order.id);
}
