//! The root types: queries, mutations and the subscription, each a thin call into the core.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, Subscription};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use super::types::{
    EventsMissed, ItemGql, OrderConnection, OrderEdge, OrderEventGql, OrderFeedItem,
    OrderFilterInput, OrderGql, OrderOrder, PageInfo, ProductConnection, ProductEdge, ProductGql,
    SortDirection, StatusGql,
};
use crate::domain::Principal;
use crate::domain::core::{ORDER_SORT_FIELDS, customer_ref};
use crate::domain::feed::{self, EventFilter, FeedItem};
use crate::domain::model::{CustomerId, Order, OrderId, ProductId};
use crate::domain::pagination::{Limit, PageRequest, Position, RowKey, SortSpec, SortValue};
use crate::domain::{
    DomainError, Expect, FieldViolation, NewItem, NewOrder, OrderChanges, OrderFilter,
};
use crate::gateway::ApiError;
use crate::gateway::auth::AuthError;
use crate::gateway::idempotency::Outcome;
use crate::gateway::trace::TraceId;
use crate::protocols::AppState;

/// The `Idempotency-Key` header of the HTTP request, handed to mutations.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyHeader(pub Option<String>);

/// An error from the one table, as a GraphQL error (the table's GraphQL rendering, with the
/// request's trace id).
pub fn gql_error(ctx: &Context<'_>, error: impl Into<ApiError>) -> async_graphql::Error {
    crate::gateway::error::graphql::to_graphql(&error.into(), ctx.data_opt::<TraceId>())
}

/// A nullable field that failed: the field is null in `data` and the error is listed beside it
/// (async-graphql would otherwise leave the field out of `data` altogether).
fn nullable<T>(ctx: &Context<'_>, result: Result<T, impl Into<ApiError>>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            ctx.add_error(
                ctx.set_error_path(gql_error(ctx, error).into_server_error(ctx.item.pos)),
            );
            None
        }
    }
}

fn app<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

/// The caller. The HTTP handler and the WebSocket's `connection_init` put it in the request
/// data; without one (a wiring mistake) every resolver refuses rather than run as nobody.
pub fn who<'a>(ctx: &Context<'a>) -> Result<&'a Principal, ApiError> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| AuthError::Missing.to_api())
}

fn sort_spec(order_by: Option<Vec<OrderOrder>>) -> Result<SortSpec, FieldViolation> {
    let Some(order_by) = order_by.filter(|o| !o.is_empty()) else {
        return Ok(SortSpec::by_id());
    };
    let spec: Vec<String> = order_by
        .iter()
        .map(|o| {
            let sign = if o.direction == SortDirection::Desc {
                "-"
            } else {
                ""
            };
            format!("{sign}{}", o.field.name())
        })
        .collect();
    SortSpec::parse(&spec.join(","), ORDER_SORT_FIELDS)
        .map_err(|v| FieldViolation::new("orderBy", v.message))
}

/// The key of a row under `target`, from its key under `forward` (the same row; `target` is
/// `forward` reversed, which may add an explicit id term).
fn rekey(key: RowKey, target: &SortSpec) -> RowKey {
    let mut values = key.values;
    values.truncate(target.terms().len());
    while values.len() < target.terms().len() {
        values.push(SortValue::Int(key.id as i64));
    }
    RowKey { values, id: key.id }
}

/// A Relay page of orders: `first`/`after` forwards, `last`/`before` backwards.
pub fn order_connection(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    filter: Option<OrderFilterInput>,
    order_by: Option<Vec<OrderOrder>>,
) -> async_graphql::Result<OrderConnection> {
    let app = app(ctx);
    let core = &app.core;
    let who = who(ctx).map_err(|e| gql_error(ctx, e))?;
    let mut violations = Vec::new();
    if first.is_some() && last.is_some() {
        violations.push(FieldViolation::new("last", "give first or last, not both"));
    }
    // Page sizes are the core's, as on REST and gRPC (`pagination.max_limit`).
    let limits = core.page_limits();
    let mut limit = Limit::new(limits.default);
    for (name, n) in [("first", first), ("last", last)] {
        match limits.limit(n.map(i64::from), name) {
            Ok(asked) if n.is_some() => limit = asked,
            Ok(_) => {}
            Err(v) => violations.push(v),
        }
    }
    let forward = sort_spec(order_by).unwrap_or_else(|v| {
        violations.push(v);
        SortSpec::by_id()
    });
    let (status, customer_id) = filter.map_or((None, None), |f| (f.status, f.customer_id));
    let mut domain_filter =
        OrderFilter::parse(None, customer_id.as_deref().map(String::as_str)).unwrap_or_default();
    domain_filter.status = status.map(Into::into);
    let backwards = last.is_some() || (before.is_some() && first.is_none());
    let sort = if backwards {
        forward.reversed()
    } else {
        forward.clone()
    };
    let cursor = if backwards {
        before.as_ref()
    } else {
        after.as_ref()
    };
    let position = match cursor {
        Some(cursor) => match core.cursors().decode("orders", cursor, &forward) {
            Ok(key) => Position::After(rekey(key, &sort)),
            Err(e) => {
                let mut v = e.violation();
                v.field = if backwards { "before" } else { "after" }.to_owned();
                violations.push(v);
                Position::Start
            }
        },
        None => Position::Start,
    };
    if !violations.is_empty() {
        return Err(gql_error(ctx, DomainError::Invalid(violations)));
    }
    let mut page = core.list_orders(
        who,
        &domain_filter,
        &PageRequest {
            sort,
            position,
            limit,
        },
    );
    let more = page.has_more();
    if backwards {
        page.rows.reverse();
    }
    let edges: Vec<OrderEdge> = page
        .rows
        .into_iter()
        .map(|order| OrderEdge {
            cursor: core
                .cursors()
                .encode("orders", &forward, &core.order_key(&order, &forward)),
            node: OrderGql(order),
        })
        .collect();
    let page_info = PageInfo {
        has_next_page: if backwards { before.is_some() } else { more },
        has_previous_page: if backwards { more } else { after.is_some() },
        start_cursor: edges.first().map(|e| e.cursor.clone()),
        end_cursor: edges.last().map(|e| e.cursor.clone()),
    };
    Ok(OrderConnection {
        edges,
        page_info,
        filter: Some(domain_filter),
    })
}

/// Queries.
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// One order; null (with a NOT_FOUND error) when there is none.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> Option<OrderGql> {
        let order = who(ctx).and_then(|who| Ok(app(ctx).core.order(who, OrderId::parse(&id)?)?));
        nullable(ctx, order.map(OrderGql))
    }

    /// Orders as a Relay connection.
    #[graphql(
        complexity = "(first.or(last).unwrap_or(20).clamp(1, 100) as usize).saturating_mul(child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<OrderFilterInput>,
        order_by: Option<Vec<OrderOrder>>,
    ) -> async_graphql::Result<OrderConnection> {
        order_connection(ctx, first, after, last, before, filter, order_by)
    }

    /// One customer.
    async fn customer(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<super::types::CustomerGql>> {
        let who = who(ctx).map_err(|e| gql_error(ctx, e))?;
        CustomerId::parse(&id)
            .and_then(|id| app(ctx).core.customer(who, id))
            .map(|c| Some(super::types::CustomerGql(c)))
            .map_err(|e| gql_error(ctx, e))
    }

    /// One product.
    async fn product(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<ProductGql>> {
        ProductId::parse(&id)
            .and_then(|id| app(ctx).core.product(id))
            .map(|p| Some(ProductGql(p)))
            .map_err(|e| gql_error(ctx, e))
    }

    /// Products as a Relay connection, in id order.
    #[graphql(
        complexity = "(first.unwrap_or(20).clamp(1, 100) as usize).saturating_mul(child_complexity)"
    )]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ProductConnection> {
        let core = &app(ctx).core;
        let sort = SortSpec::by_id();
        let limit = core
            .page_limits()
            .limit(first.map(i64::from), "first")
            .map_err(|v| gql_error(ctx, v))?;
        let position = match &after {
            Some(cursor) => Position::After(
                core.cursors()
                    .decode("products", cursor, &sort)
                    .map_err(|e| {
                        let mut v = e.violation();
                        v.field = "after".into();
                        gql_error(ctx, DomainError::Invalid(vec![v]))
                    })?,
            ),
            None => Position::Start,
        };
        let page = core.list_products(&PageRequest {
            sort: sort.clone(),
            position,
            limit,
        });
        let more = page.has_more();
        let edges: Vec<ProductEdge> = page
            .rows
            .into_iter()
            .map(|p| ProductEdge {
                cursor: core
                    .cursors()
                    .encode("products", &sort, &core.product_key(&p, &sort)),
                node: ProductGql(p),
            })
            .collect();
        Ok(ProductConnection {
            page_info: PageInfo {
                has_next_page: more,
                has_previous_page: after.is_some(),
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
            total_count: core.store().products().len(),
        })
    }
}

/// One line of a new order.
#[derive(InputObject)]
pub struct NewItemInput {
    /// An existing product.
    pub product_id: ID,
    /// 1 to 1000.
    pub quantity: i32,
}

/// `createOrder` input.
#[derive(InputObject)]
pub struct CreateOrderInput {
    /// An existing customer.
    pub customer_id: ID,
    /// 1 to 100 items.
    pub items: Vec<NewItemInput>,
}

/// `updateOrder` input: fields left out stay as they are.
#[derive(InputObject)]
pub struct UpdateOrderInput {
    /// The order.
    pub id: ID,
    /// A new customer (only while pending).
    pub customer_id: Option<ID>,
    /// A new status, following the life cycle.
    pub status: Option<StatusGql>,
    /// New items replacing the current ones (only while pending).
    pub items: Option<Vec<NewItemInput>>,
    /// Apply only at this version (REST: If-Match).
    pub expected_version: Option<u64>,
}

/// `cancelOrder` input.
#[derive(InputObject)]
pub struct CancelOrderInput {
    /// The order.
    pub id: ID,
    /// Why.
    pub reason: Option<String>,
    /// Apply only at this version.
    pub expected_version: Option<u64>,
}

/// `addItem` input.
#[derive(InputObject)]
pub struct AddItemInput {
    /// The order.
    pub order_id: ID,
    /// An existing product.
    pub product_id: ID,
    /// 1 to 1000.
    pub quantity: i32,
    /// Apply only at this version.
    pub expected_version: Option<u64>,
}

/// `deleteOrder` input.
#[derive(InputObject)]
pub struct DeleteOrderInput {
    /// The order.
    pub id: ID,
    /// Apply only at this version.
    pub expected_version: Option<u64>,
}

/// The result of an order mutation.
#[derive(SimpleObject)]
pub struct OrderPayload {
    /// The order after the change.
    pub order: OrderGql,
}

/// The result of `addItem`.
#[derive(SimpleObject)]
pub struct AddItemPayload {
    /// The order after the change.
    pub order: OrderGql,
    /// The new item.
    pub item: ItemGql,
}

/// The result of `deleteOrder`.
#[derive(SimpleObject)]
pub struct DeleteOrderPayload {
    /// The deleted order's id.
    pub deleted_id: ID,
}

fn expect(version: Option<u64>) -> Expect {
    version.map_or(Expect::Any, |v| Expect::OneOf(vec![v]))
}

fn items(items: &[NewItemInput], violations: &mut Vec<FieldViolation>) -> Vec<NewItem> {
    NewItem::parse_all(
        items
            .iter()
            .map(|i| (i.product_id.as_str(), i64::from(i.quantity))),
        violations,
    )
    .into_iter()
    .collect()
}

/// Mutations. Each takes one input object and returns a payload. The request's
/// `Idempotency-Key` header applies (same keys as REST and gRPC); send one mutation per request
/// when you use it.
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Creates a pending order.
    async fn create_order(
        &self,
        ctx: &Context<'_>,
        input: CreateOrderInput,
    ) -> async_graphql::Result<OrderPayload> {
        let app = app(ctx);
        let run = || -> Result<Order, ApiError> {
            let who = who(ctx)?;
            let command = NewOrder::parse(
                input.customer_id.as_str(),
                input
                    .items
                    .iter()
                    .map(|i| (i.product_id.as_str(), i64::from(i.quantity))),
            )
            .map_err(ApiError::invalid)?;
            let key = ctx
                .data_opt::<IdempotencyHeader>()
                .and_then(|k| k.0.as_deref());
            let executed = app
                .idempotency
                .execute(who, key, "create_order", &command, || {
                    app.core
                        .create_order(who, command.clone())
                        .map(Outcome::Order)
                })?;
            executed.order().cloned()
        };
        run()
            .map(|o| OrderPayload { order: OrderGql(o) })
            .map_err(|e| gql_error(ctx, e))
    }

    /// Changes the fields given.
    async fn update_order(
        &self,
        ctx: &Context<'_>,
        input: UpdateOrderInput,
    ) -> async_graphql::Result<OrderPayload> {
        let app = app(ctx);
        let run = || -> Result<Order, ApiError> {
            let who = who(ctx)?;
            let id = OrderId::parse(&input.id)?;
            let mut violations = Vec::new();
            let changes = OrderChanges {
                customer_id: input.customer_id.as_ref().and_then(|c| {
                    customer_ref(c, "customer_id")
                        .map_err(|v| violations.push(v))
                        .ok()
                }),
                status: input.status.map(Into::into),
                items: input.items.as_ref().map(|i| items(i, &mut violations)),
            };
            if !violations.is_empty() {
                return Err(ApiError::invalid(violations));
            }
            let expect = expect(input.expected_version);
            let key = ctx
                .data_opt::<IdempotencyHeader>()
                .and_then(|k| k.0.as_deref());
            // The same operation and command as REST's PATCH: one key works on both.
            let command = (id, &changes, &expect);
            let executed = app
                .idempotency
                .execute(who, key, "update_order", &command, || {
                    app.core
                        .update_order(who, id, changes.clone(), &expect)
                        .map(Outcome::Order)
                })?;
            executed.order().cloned()
        };
        run()
            .map(|o| OrderPayload { order: OrderGql(o) })
            .map_err(|e| gql_error(ctx, e))
    }

    /// Cancels a pending or paid order.
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        input: CancelOrderInput,
    ) -> async_graphql::Result<OrderPayload> {
        let app = app(ctx);
        let run = || -> Result<Order, ApiError> {
            let who = who(ctx)?;
            let id = OrderId::parse(&input.id)?;
            let expect = expect(input.expected_version);
            let key = ctx
                .data_opt::<IdempotencyHeader>()
                .and_then(|k| k.0.as_deref());
            let command = (id, &input.reason, &expect);
            let executed = app
                .idempotency
                .execute(who, key, "cancel_order", &command, || {
                    app.core
                        .cancel_order(who, id, input.reason.clone(), &expect)
                        .map(Outcome::Order)
                })?;
            executed.order().cloned()
        };
        run()
            .map(|o| OrderPayload { order: OrderGql(o) })
            .map_err(|e| gql_error(ctx, e))
    }

    /// Adds an item to a pending order.
    async fn add_item(
        &self,
        ctx: &Context<'_>,
        input: AddItemInput,
    ) -> async_graphql::Result<AddItemPayload> {
        let app = app(ctx);
        let run = || -> Result<AddItemPayload, ApiError> {
            let who = who(ctx)?;
            let id = OrderId::parse(&input.order_id)?;
            let item = NewItem::parse(&input.product_id, i64::from(input.quantity))
                .map_err(ApiError::invalid)?;
            let expect = expect(input.expected_version);
            let key = ctx
                .data_opt::<IdempotencyHeader>()
                .and_then(|k| k.0.as_deref());
            let command = (id, &item, &expect);
            let executed = app
                .idempotency
                .execute(who, key, "add_item", &command, || {
                    app.core
                        .add_item(who, id, item.clone(), &expect)
                        .map(|(order, item_id)| Outcome::ItemAdded(order, item_id))
                })?;
            match executed.recorded {
                Ok(Outcome::ItemAdded(order, item_id)) => {
                    let item = order
                        .item(item_id)
                        .cloned()
                        .ok_or_else(|| DomainError::Internal("added item missing".into()))?;
                    Ok(AddItemPayload {
                        order: OrderGql(order),
                        item: ItemGql(item),
                    })
                }
                Ok(_) => Err(DomainError::Internal("unexpected idempotent outcome".into()).into()),
                Err(error) => Err(error.into()),
            }
        };
        run().map_err(|e| gql_error(ctx, e))
    }

    /// Deletes an order.
    async fn delete_order(
        &self,
        ctx: &Context<'_>,
        input: DeleteOrderInput,
    ) -> async_graphql::Result<DeleteOrderPayload> {
        let app = app(ctx);
        let who = who(ctx).map_err(|e| gql_error(ctx, e))?;
        OrderId::parse(&input.id)
            .and_then(|id| {
                app.core
                    .delete_order(who, id, &expect(input.expected_version))
            })
            .map(|o| DeleteOrderPayload {
                deleted_id: ID(o.id.to_string()),
            })
            .map_err(|e| gql_error(ctx, e))
    }
}

/// Subscriptions (over WebSocket at /graphql/ws).
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Order events from the log: live, or replayed after `afterSeq` first. A gap (a seq older
    /// than the log keeps) arrives as an `EventsMissed` item.
    async fn order_events(
        &self,
        ctx: &Context<'_>,
        order_id: Option<ID>,
        types: Option<Vec<String>>,
        after_seq: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = OrderFeedItem> + use<>> {
        let app = app(ctx).clone();
        let who = who(ctx).map_err(|e| gql_error(ctx, e))?.clone();
        let filter = EventFilter::parse(
            types.iter().flatten().map(String::as_str),
            order_id.as_ref().map_or("", |id| id.as_str()),
            "",
            "types",
        )
        .map_err(|v| gql_error(ctx, DomainError::Invalid(v)))?;
        let streaming = crate::protocols::push::admit(&app).map_err(|e| gql_error(ctx, e))?;
        // "From now on" is fixed when the subscription starts, not when the task gets to run.
        let after = after_seq.or(Some(app.core.events().last_seq()));
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let _streaming = streaming;
            let follow = feed::follow(app.core.events(), &who, after, &filter, |item| {
                let item = match item {
                    FeedItem::Event(event) => OrderFeedItem::Event(OrderEventGql(event)),
                    FeedItem::Missed {
                        requested_after,
                        resumed_after,
                    } => OrderFeedItem::Missed(EventsMissed {
                        requested_after,
                        resumed_after,
                    }),
                };
                let tx = &tx;
                async move { tx.send(item).await.is_ok() }
            });
            tokio::select! {
                () = follow => {}
                () = tx.closed() => {}
                () = app.drained() => {}
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
