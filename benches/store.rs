//! Store and core micro-benchmarks: reads, writes, the cost of offset vs keyset pages at depth,
//! and event fan-out to N subscribers.
//!
//! Run with `cargo bench --bench store`. Compare the two `page_at_depth` lines: a keyset page
//! walks the ordered index from the cursor and costs the same at any depth; an offset page
//! re-walks every skipped row, so its cost grows with the offset.
//!
//! `fan_out/N` appends one event and has each of N live subscribers take it (the broadcast
//! channel under every streaming protocol): the domain's share of delivering one event to N
//! clients, before any JSON or socket write. Divide by N for the cost per delivery.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use polyport::domain::core::ORDER_SORT_FIELDS;
use polyport::domain::events::{Change, EventLog, MemoryEventLog};
use polyport::domain::model::{CustomerId, OrderId, ProductId, Quantity};
use polyport::domain::pagination::{CursorCodec, Limit, PageRequest, Position, RowKey, SortSpec};
use polyport::domain::seed;
use polyport::domain::store::MemoryStore;
use polyport::domain::{Core, NewItem, NewOrder, OrderFilter, Principal, Role};

const ORDERS: usize = 100_000;

fn core_with(orders: usize) -> Core {
    let store = Arc::new(MemoryStore::new());
    seed::load(store.as_ref(), orders);
    Core::new(
        store,
        Arc::new(MemoryEventLog::new(10_000, 1_024)),
        CursorCodec::new(b"bench"),
    )
}

fn benches(c: &mut Criterion) {
    let admin = Principal::new("bench", Role::Admin);
    let core = core_with(ORDERS);

    c.bench_function("get_order", |b| {
        let mut id = 0u64;
        b.iter(|| {
            id = id % ORDERS as u64 + 1;
            black_box(core.order(&admin, OrderId(id)).unwrap());
        })
    });

    c.bench_function("create_order", |b| {
        // Its own store: the orders this benchmark creates (millions) must not grow the store
        // the page benchmarks below read.
        let core = core_with(0);
        let command = NewOrder {
            customer_id: CustomerId(1),
            items: vec![NewItem {
                product_id: ProductId(3),
                quantity: Quantity::parse(2).unwrap(),
            }],
        };
        b.iter(|| black_box(core.create_order(&admin, command.clone()).unwrap()))
    });

    let mut group = c.benchmark_group("page_at_depth");
    for depth in [0usize, 10_000, 90_000] {
        let limit = Limit::new(50);
        let keyset = PageRequest {
            sort: SortSpec::by_id(),
            position: if depth == 0 {
                Position::Start
            } else {
                Position::After(RowKey {
                    values: Vec::new(),
                    id: depth as u64,
                })
            },
            limit,
        };
        let offset = PageRequest {
            sort: SortSpec::by_id(),
            position: Position::Offset(depth),
            limit,
        };
        group.bench_with_input(BenchmarkId::new("keyset", depth), &keyset, |b, request| {
            b.iter(|| black_box(core.list_orders(&admin, &OrderFilter::default(), request)))
        });
        group.bench_with_input(BenchmarkId::new("offset", depth), &offset, |b, request| {
            b.iter(|| black_box(core.list_orders(&admin, &OrderFilter::default(), request)))
        });
    }
    group.finish();

    c.bench_function("first_page_sorted_by_total_desc", |b| {
        let request = PageRequest {
            sort: SortSpec::parse("-total_cents", ORDER_SORT_FIELDS).unwrap(),
            position: Position::Start,
            limit: Limit::new(50),
        };
        b.iter(|| black_box(core.list_orders(&admin, &OrderFilter::default(), &request)))
    });

    let mut group = c.benchmark_group("fan_out");
    let order = core_with(1).order(&admin, OrderId(1)).unwrap();
    for subscribers in [1usize, 100, 1_000] {
        let log = MemoryEventLog::new(1_024, 1_024);
        let mut live: Vec<_> = (0..subscribers).map(|_| log.subscribe(None).live).collect();
        group.throughput(criterion::Throughput::Elements(subscribers as u64));
        group.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            b.iter(|| {
                log.append(&order, Change::Updated);
                for receiver in &mut live {
                    black_box(receiver.try_recv().unwrap());
                }
            })
        });
    }
    group.finish();

    let mut slow = c.benchmark_group("preload");
    slow.sample_size(10);
    slow.bench_function("100k_orders", |b| b.iter(|| black_box(core_with(ORDERS))));
    slow.finish();
}

criterion_group!(store, benches);
criterion_main!(store);
