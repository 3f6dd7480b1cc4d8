//! The GraphQL object types: thin wrappers over domain values, with hand-written resolvers.
//!
//! Nested look-ups (an order's customer, an item's product) go through per-request DataLoaders,
//! so a page of 100 orders costs one customer batch and one product batch, not 200 look-ups.

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject, Union};

use super::context::{app, gql_error, who};
use super::loaders::{CustomerLoader, ProductLoader};
use crate::domain::core::ORDER_SORT_FIELDS;
use crate::domain::events::{Change, Event};
use crate::domain::model::{Customer, CustomerId, Item, Order, OrderStatus, Product};
use crate::domain::pagination::{Limit, PageRequest, Position, RowKey, SortSpec, SortValue};
use crate::domain::{DomainError, FieldViolation, OrderFilter};
use crate::protocols::AppState;
use crate::wire::timestamp;

/// Where an order is in its life cycle.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "OrderStatus")]
pub enum StatusGql {
    /// Created, not yet paid; items may change.
    Pending,
    /// Paid, not yet shipped.
    Paid,
    /// Handed to the carrier.
    Shipped,
    /// Received; final.
    Delivered,
    /// Cancelled before shipping; final.
    Cancelled,
}

impl From<OrderStatus> for StatusGql {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Pending => Self::Pending,
            OrderStatus::Paid => Self::Paid,
            OrderStatus::Shipped => Self::Shipped,
            OrderStatus::Delivered => Self::Delivered,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<StatusGql> for OrderStatus {
    fn from(s: StatusGql) -> Self {
        match s {
            StatusGql::Pending => Self::Pending,
            StatusGql::Paid => Self::Paid,
            StatusGql::Shipped => Self::Shipped,
            StatusGql::Delivered => Self::Delivered,
            StatusGql::Cancelled => Self::Cancelled,
        }
    }
}

/// An order.
pub struct OrderGql(pub Order);

#[Object(name = "Order")]
impl OrderGql {
    /// Opaque id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The customer's id.
    async fn customer_id(&self) -> ID {
        ID(self.0.customer_id.to_string())
    }
    /// Who placed it (batched: one look-up per request, not per order).
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<CustomerGql>> {
        let loader = ctx.data::<DataLoader<CustomerLoader>>()?;
        Ok(loader.load_one(self.0.customer_id).await?.map(CustomerGql))
    }
    /// Its status.
    async fn status(&self) -> StatusGql {
        self.0.status.into()
    }
    /// Its lines.
    async fn items(&self) -> Vec<ItemGql> {
        self.0.items.iter().cloned().map(ItemGql).collect()
    }
    /// Sum of quantity * unitPriceCents.
    async fn total_cents(&self) -> i64 {
        self.0.total_cents()
    }
    /// ISO 4217.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    /// RFC 3339.
    async fn created_at(&self) -> String {
        timestamp(self.0.created_at)
    }
    /// RFC 3339.
    async fn updated_at(&self) -> String {
        timestamp(self.0.updated_at)
    }
    /// Grows by one on every change; send it back as expectedVersion.
    async fn version(&self) -> u64 {
        self.0.version
    }
    /// Set once cancelled.
    async fn cancellation(&self) -> Option<CancellationGql> {
        self.0.cancellation.as_ref().map(|c| CancellationGql {
            reason: c.reason.clone(),
            cancelled_at: timestamp(c.cancelled_at),
        })
    }
}

/// Why and when an order was cancelled.
#[derive(SimpleObject)]
#[graphql(name = "Cancellation")]
pub struct CancellationGql {
    /// As given.
    pub reason: Option<String>,
    /// RFC 3339.
    pub cancelled_at: String,
}

/// One line of an order.
pub struct ItemGql(pub Item);

#[Object(name = "Item")]
impl ItemGql {
    /// Unique within its order.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The product's id.
    async fn product_id(&self) -> ID {
        ID(self.0.product_id.to_string())
    }
    /// What was ordered (batched per request).
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ProductGql>> {
        let loader = ctx.data::<DataLoader<ProductLoader>>()?;
        Ok(loader.load_one(self.0.product_id).await?.map(ProductGql))
    }
    /// How many.
    async fn quantity(&self) -> u32 {
        self.0.quantity.get()
    }
    /// The product's price when the item was added.
    async fn unit_price_cents(&self) -> i64 {
        self.0.unit_price_cents
    }
}

/// Someone who places orders.
pub struct CustomerGql(pub Customer);

#[Object(name = "Customer")]
impl CustomerGql {
    /// Opaque id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Unique email.
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// This customer's orders, as a connection.
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
        let mut filter = filter.unwrap_or_default();
        // The parent fixes the customer. A filter naming another one contradicts it: refused,
        // rather than quietly replaced (the same id, or none, is this customer's list).
        if let Some(asked) = &filter.customer_id
            && CustomerId::parse(asked).ok() != Some(self.0.id)
        {
            return Err(gql_error(
                ctx,
                FieldViolation::new(
                    "filter.customerId",
                    format!(
                        "these are customer {}'s orders; filter.customerId '{}' names another \
                         customer (leave it out, or ask Query.orders)",
                        self.0.id,
                        asked.as_str()
                    ),
                ),
            ));
        }
        filter.customer_id = Some(ID(self.0.id.to_string()));
        order_connection(ctx, first, after, last, before, Some(filter), order_by)
    }
}

/// Something that can be ordered.
pub struct ProductGql(pub Product);

#[Object(name = "Product")]
impl ProductGql {
    /// Opaque id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Unit price in cents.
    async fn price_cents(&self) -> i64 {
        self.0.price_cents
    }
    /// ISO 4217.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
}

/// Relay page information.
#[derive(SimpleObject, Default)]
pub struct PageInfo {
    /// More rows follow the last edge.
    pub has_next_page: bool,
    /// More rows precede the first edge.
    pub has_previous_page: bool,
    /// The first edge's cursor.
    pub start_cursor: Option<String>,
    /// The last edge's cursor.
    pub end_cursor: Option<String>,
}

/// An order and its cursor.
#[derive(SimpleObject)]
pub struct OrderEdge {
    /// Opaque; pass as `after` or `before`.
    pub cursor: String,
    /// The order.
    pub node: OrderGql,
}

/// A page of orders.
pub struct OrderConnection {
    /// The page.
    pub edges: Vec<OrderEdge>,
    /// Where it sits.
    pub page_info: PageInfo,
    /// The filter, for `totalCount`; `None` when it names something that does not exist.
    pub filter: Option<crate::domain::OrderFilter>,
}

#[Object]
impl OrderConnection {
    /// The page's orders with their cursors.
    async fn edges(&self) -> &[OrderEdge] {
        &self.edges
    }
    /// The page's orders.
    async fn nodes(&self) -> Vec<&OrderGql> {
        self.edges.iter().map(|e| &e.node).collect()
    }
    /// Where the page sits.
    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }
    /// Every matching order, on all pages (costs a scan: ask only when needed).
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<usize> {
        Ok(match &self.filter {
            Some(filter) => {
                let who =
                    super::context::who(ctx).map_err(|e| super::context::gql_error(ctx, e))?;
                ctx.data::<AppState>()?.core.count_orders(who, filter)
            }
            None => 0,
        })
    }
}

/// A product and its cursor.
#[derive(SimpleObject)]
pub struct ProductEdge {
    /// Opaque; pass as `after`.
    pub cursor: String,
    /// The product.
    pub node: ProductGql,
}

/// A page of products.
#[derive(SimpleObject)]
pub struct ProductConnection {
    /// The page's products with their cursors.
    pub edges: Vec<ProductEdge>,
    /// Where the page sits.
    pub page_info: PageInfo,
    /// Every product.
    pub total_count: usize,
}

/// Which orders a list includes.
#[derive(InputObject, Default)]
pub struct OrderFilterInput {
    /// Only orders in this status.
    pub status: Option<StatusGql>,
    /// Only this customer's orders.
    pub customer_id: Option<ID>,
}

/// Fields orders can be sorted by.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum OrderSortField {
    /// Creation order.
    Id,
    /// When created.
    CreatedAt,
    /// When last changed.
    UpdatedAt,
    /// The total.
    TotalCents,
    /// Life-cycle position.
    Status,
}

impl OrderSortField {
    /// The domain's name for the field.
    pub fn name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::CreatedAt => "created_at",
            Self::UpdatedAt => "updated_at",
            Self::TotalCents => "total_cents",
            Self::Status => "status",
        }
    }
}

/// Ascending or descending.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Default)]
pub enum SortDirection {
    /// Smallest first.
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

/// One sort key.
#[derive(InputObject)]
pub struct OrderOrder {
    /// The field.
    pub field: OrderSortField,
    /// The direction.
    #[graphql(default)]
    pub direction: SortDirection,
}

/// A change to an order, from the event log.
pub struct OrderEventGql(pub std::sync::Arc<Event>);

#[Object(name = "OrderEvent")]
impl OrderEventGql {
    /// Strictly increasing; the same seq every protocol shows for this event.
    async fn seq(&self) -> u64 {
        self.0.seq
    }
    /// `order.created`, `order.updated`, `order.status_changed`, `order.item_added`,
    /// `order.cancelled` or `order.deleted`.
    #[graphql(name = "type")]
    async fn kind(&self) -> &'static str {
        self.0.change.event_type()
    }
    /// The order it concerns.
    async fn order_id(&self) -> ID {
        ID(self.0.order_id.to_string())
    }
    /// RFC 3339.
    async fn occurred_at(&self) -> String {
        timestamp(self.0.occurred_at)
    }
    /// The order right after the change (for order.deleted: right before).
    async fn order(&self) -> OrderGql {
        OrderGql(self.0.order.clone())
    }
    /// For status changes and cancellations: the status before.
    async fn from_status(&self) -> Option<StatusGql> {
        match &self.0.change {
            Change::StatusChanged { from, .. } | Change::Cancelled { from } => Some((*from).into()),
            _ => None,
        }
    }
    /// For order.item_added: the new item's id.
    async fn item_id(&self) -> Option<ID> {
        match &self.0.change {
            Change::ItemAdded { item_id } => Some(ID(item_id.to_string())),
            _ => None,
        }
    }
}

/// Events lost to this subscription: re-read state if they matter, then carry on.
#[derive(SimpleObject)]
pub struct EventsMissed {
    /// The last seq the client had.
    pub requested_after: u64,
    /// The feed continues after this seq.
    pub resumed_after: u64,
}

/// What a subscription yields.
#[derive(Union)]
pub enum OrderFeedItem {
    /// A change.
    Event(OrderEventGql),
    /// A gap.
    Missed(EventsMissed),
}

// ---- the orders connection, shared by `Query.orders` and `Customer.orders` ----

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
