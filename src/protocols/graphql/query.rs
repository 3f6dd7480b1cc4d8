//! The root types: queries, mutations and the subscription, each a thin call into the core.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject, Subscription};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use super::context::{app, gql_error, nullable, who};
use super::types::order_connection;
use super::types::{
    EventsMissed, ItemGql, OrderConnection, OrderEventGql, OrderFeedItem, OrderFilterInput,
    OrderGql, OrderOrder, PageInfo, ProductConnection, ProductEdge, ProductGql, StatusGql,
};
use crate::domain::Core;
use crate::domain::Principal;
use crate::domain::command::{
    AddItem, CancelOrder, Command, CreateOrder, CreateOrders, UpdateOrder,
};
use crate::domain::core::BulkElement;
use crate::domain::core::customer_ref;
use crate::domain::feed::{self, EventFilter, FeedItem};
use crate::domain::model::{CustomerId, Order, OrderId, ProductId};
use crate::domain::pagination::{PageRequest, Position, SortSpec};
use crate::domain::{DomainError, Expect, FieldViolation, NewItem, NewOrder, OrderChanges};
use crate::gateway::ApiError;

/// The `Idempotency-Key` header of the HTTP request, handed to mutations.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyHeader(pub Option<String>);

/// Runs `command` once per `Idempotency-Key` header of the HTTP request (handed to the
/// mutation as [`IdempotencyHeader`]): the one place GraphQL binds idempotency.
fn execute<C: Command>(
    ctx: &Context<'_>,
    who: &Principal,
    command: &C,
) -> Result<C::Output, ApiError> {
    let app = app(ctx);
    let key = ctx
        .data_opt::<IdempotencyHeader>()
        .and_then(|k| k.0.as_deref());
    Ok(app
        .idempotency
        .execute(&app.core, who, key, command)?
        .output)
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

/// The input of `createOrders`.
#[derive(InputObject)]
pub struct CreateOrdersInput {
    /// 1 to 100 orders; each is created, or fails, on its own.
    pub orders: Vec<CreateOrderInput>,
}

/// A bad field of a failed element.
#[derive(SimpleObject)]
pub struct FieldErrorGql {
    /// The field, as the element names it.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Why one element of `createOrders` failed: the error table's row, as a resolver error's
/// `extensions` would carry it.
#[derive(SimpleObject)]
pub struct BulkErrorGql {
    /// The table's GraphQL code (`BAD_USER_INPUT`, `FORBIDDEN`, ...).
    pub code: &'static str,
    /// What happened.
    pub message: String,
    /// The problem type, as REST's bulk result shows it.
    pub r#type: String,
    /// The HTTP status REST gives the element.
    pub status: u16,
    /// Each bad field.
    pub errors: Vec<FieldErrorGql>,
}

/// One element of `createOrders`, by its position in the input.
#[derive(SimpleObject)]
pub struct BulkResultGql {
    /// The element's index in `orders`.
    pub index: usize,
    /// The order created, when it was.
    pub order: Option<OrderGql>,
    /// Why not, when it was not.
    pub error: Option<BulkErrorGql>,
}

/// The result of `createOrders`: one result per element, and the counts.
#[derive(SimpleObject)]
pub struct CreateOrdersPayload {
    /// One per element, in order.
    pub results: Vec<BulkResultGql>,
    /// How many were created.
    pub created: usize,
    /// How many failed.
    pub failed: usize,
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
            execute(ctx, who, &CreateOrder(command))
        };
        run()
            .map(|o| OrderPayload { order: OrderGql(o) })
            .map_err(|e| gql_error(ctx, e))
    }

    /// Creates many orders at once (1 to 100, the limit REST and gRPC share); each element
    /// succeeds or fails alone. Honours `Idempotency-Key` for the whole batch.
    async fn create_orders(
        &self,
        ctx: &Context<'_>,
        input: CreateOrdersInput,
    ) -> async_graphql::Result<CreateOrdersPayload> {
        let run = || -> Result<CreateOrdersPayload, ApiError> {
            let who = who(ctx)?;
            Core::check_bulk_size(input.orders.len())?;
            let orders: Vec<BulkElement> = input
                .orders
                .iter()
                .map(|order| {
                    NewOrder::parse(
                        order.customer_id.as_str(),
                        order
                            .items
                            .iter()
                            .map(|i| (i.product_id.as_str(), i64::from(i.quantity))),
                    )
                })
                .collect();
            let results: Vec<BulkResultGql> = execute(ctx, who, &CreateOrders(orders))?
                .into_iter()
                .enumerate()
                .map(|(index, result)| match result {
                    Ok(order) => BulkResultGql {
                        index,
                        order: Some(OrderGql(order)),
                        error: None,
                    },
                    Err(error) => {
                        let error = ApiError::from(error);
                        BulkResultGql {
                            index,
                            order: None,
                            error: Some(BulkErrorGql {
                                code: error.kind.graphql,
                                r#type: error.kind.type_uri(),
                                status: error.kind.status.as_u16(),
                                errors: error
                                    .violations
                                    .into_iter()
                                    .map(|v| FieldErrorGql {
                                        field: v.field,
                                        message: v.message,
                                    })
                                    .collect(),
                                message: error.detail,
                            }),
                        }
                    }
                })
                .collect();
            let created = results.iter().filter(|r| r.order.is_some()).count();
            Ok(CreateOrdersPayload {
                failed: results.len() - created,
                created,
                results,
            })
        };
        run().map_err(|e| gql_error(ctx, e))
    }

    /// Changes the fields given.
    async fn update_order(
        &self,
        ctx: &Context<'_>,
        input: UpdateOrderInput,
    ) -> async_graphql::Result<OrderPayload> {
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
            // The same command as REST's PATCH: one key works on both.
            let command = UpdateOrder {
                id,
                changes,
                expect,
            };
            execute(ctx, who, &command)
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
        let run = || -> Result<Order, ApiError> {
            let who = who(ctx)?;
            let id = OrderId::parse(&input.id)?;
            let expect = expect(input.expected_version);
            let command = CancelOrder {
                id,
                reason: input.reason.clone(),
                expect,
            };
            execute(ctx, who, &command)
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
        let run = || -> Result<AddItemPayload, ApiError> {
            let who = who(ctx)?;
            let id = OrderId::parse(&input.order_id)?;
            let item = NewItem::parse(&input.product_id, i64::from(input.quantity))
                .map_err(ApiError::invalid)?;
            let expect = expect(input.expected_version);
            let command = AddItem {
                order: id,
                item,
                expect,
            };
            let (order, item_id) = execute(ctx, who, &command)?;
            let item = order
                .item(item_id)
                .cloned()
                .ok_or_else(|| DomainError::Internal("added item missing".into()))?;
            Ok(AddItemPayload {
                order: OrderGql(order),
                item: ItemGql(item),
            })
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
        // The client's address, which the WebSocket route puts in the connection's data.
        let peer = ctx.data_opt::<std::net::IpAddr>().copied();
        let streaming =
            crate::protocols::push::admit(&app, Some(&who), peer).map_err(|e| gql_error(ctx, e))?;
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
                // Ended by the token lapsing: the session itself closes (4401), see ws.rs.
                _ = follow => {}
                () = tx.closed() => {}
                () = app.drained() => {}
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
