//! The order core: every rule about orders, customers and products, in one place.
//!
//! Adapters parse their wire formats into the commands below, call one method, and translate the
//! result back. Nothing here knows which protocol asked; that is why a change made over REST is
//! the same change, with the same event, as one made over gRPC or GraphQL.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::access::{Action, Principal};
use super::error::{DomainError, DomainResult, FieldViolation};
use super::events::{Change, EventLog};
use super::model::{
    Cancellation, Customer, CustomerId, Item, ItemId, Order, OrderId, OrderStatus, Product,
    ProductId, Quantity,
};
use super::pagination::{
    CursorCodec, Page, PageLimits, PageRequest, Position, RowKey, SortValue, page_from_sorted,
    select_page,
};
use super::store::{Edit, Store};

/// Fields a list of orders can be sorted by.
pub const ORDER_SORT_FIELDS: &[&str] = &["id", "created_at", "updated_at", "total_cents", "status"];
/// Fields a list of customers can be sorted by.
pub const CUSTOMER_SORT_FIELDS: &[&str] = &["id", "name", "email"];
/// Fields a list of products can be sorted by.
pub const PRODUCT_SORT_FIELDS: &[&str] = &["id", "name", "price_cents"];
/// Fields a list of items can be sorted by.
pub const ITEM_SORT_FIELDS: &[&str] = &["id", "product_id", "quantity", "unit_price_cents"];
/// The most orders one bulk request may create, on every protocol.
pub const MAX_BULK_ORDERS: usize = 100;

/// One element of a bulk create: a parsed order, or why it did not parse.
pub type BulkElement = Result<NewOrder, Vec<FieldViolation>>;

/// One line of a new order, or an item to add.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NewItem {
    /// What to order.
    pub product_id: ProductId,
    /// How many.
    pub quantity: Quantity,
}

impl NewItem {
    /// Parses an item from wire values; violations name `product_id` and `quantity`.
    pub fn parse(product_id: &str, quantity: i64) -> Result<Self, Vec<FieldViolation>> {
        let product_id = ProductId::parse(product_id).map_err(|_| {
            FieldViolation::new("product_id", format!("no product with id '{product_id}'"))
        });
        match (product_id, Quantity::parse(quantity)) {
            (Ok(product_id), Ok(quantity)) => Ok(Self {
                product_id,
                quantity,
            }),
            (p, q) => Err(p.err().into_iter().chain(q.err()).collect()),
        }
    }

    /// Parses a list of items, reporting problems under `items[i]`.
    pub fn parse_all<'a>(
        items: impl IntoIterator<Item = (&'a str, i64)>,
        violations: &mut Vec<FieldViolation>,
    ) -> Vec<Self> {
        let mut parsed = Vec::new();
        for (i, (product_id, quantity)) in items.into_iter().enumerate() {
            match Self::parse(product_id, quantity) {
                Ok(item) => parsed.push(item),
                Err(errors) => {
                    violations.extend(errors.into_iter().map(|v| v.under(&format!("items[{i}]"))))
                }
            }
        }
        parsed
    }
}

/// Parses a reference to a customer named in a request field.
pub fn customer_ref(raw: &str, field: &str) -> Result<CustomerId, FieldViolation> {
    CustomerId::parse(raw)
        .map_err(|_| FieldViolation::new(field, format!("no customer with id '{raw}'")))
}

/// A request to create an order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NewOrder {
    /// Who places it.
    pub customer_id: CustomerId,
    /// At least one item.
    pub items: Vec<NewItem>,
}

impl NewOrder {
    /// Parses an order from wire values, reporting every bad field.
    pub fn parse<'a>(
        customer_id: &str,
        items: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let customer_id = customer_ref(customer_id, "customer_id").map_err(|v| violations.push(v));
        let items = NewItem::parse_all(items, &mut violations);
        match customer_id {
            Ok(customer_id) if violations.is_empty() => Ok(Self { customer_id, items }),
            _ => Err(violations),
        }
    }
}

/// A partial change to an order (PATCH); a full replacement (PUT) sets every field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OrderChanges {
    /// A new owner (only while pending).
    pub customer_id: Option<CustomerId>,
    /// A new status, following the life cycle.
    pub status: Option<OrderStatus>,
    /// New items replacing all current ones (only while pending).
    pub items: Option<Vec<NewItem>>,
}

/// A request to create a customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NewCustomer {
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// A plausible email address, unique among customers.
    pub email: String,
}

/// What a write expects the order's version to be (an `If-Match` ETag, or a version field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Expect {
    /// No expectation: last writer wins.
    #[default]
    Any,
    /// The current version must be one of these.
    OneOf(Vec<u64>),
}

/// Which orders a list includes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Only orders of this customer.
    pub customer_id: Option<CustomerId>,
    /// The filter named a customer id this server never issued: it matches no order.
    pub(super) no_such_customer: bool,
}

impl OrderFilter {
    /// The filter as every protocol receives it, in text; absent or empty means "any". An
    /// unknown status is a violation of `status`. A customer id this server never issued
    /// names no customer, so the filter matches no order: not an error, since ids are opaque
    /// and a refusal would tell which ones exist.
    pub fn parse(status: Option<&str>, customer_id: Option<&str>) -> Result<Self, FieldViolation> {
        let mut filter = Self::default();
        if let Some(raw) = status.filter(|s| !s.is_empty()) {
            filter.status = Some(raw.parse()?);
        }
        if let Some(raw) = customer_id.filter(|s| !s.is_empty()) {
            match CustomerId::parse(raw) {
                Ok(id) => filter.customer_id = Some(id),
                Err(_) => filter.no_such_customer = true,
            }
        }
        Ok(filter)
    }

    /// Only the orders of `customer`.
    pub fn of_customer(customer: CustomerId) -> Self {
        Self {
            customer_id: Some(customer),
            ..Self::default()
        }
    }

    fn matches(&self, order: &Order) -> bool {
        !self.no_such_customer
            && self.status.is_none_or(|s| order.status == s)
            && self.customer_id.is_none_or(|c| order.customer_id == c)
    }
}

/// The domain core. Cheap to share: it is a handle to the store and the event log.
pub struct Core {
    store: Arc<dyn Store>,
    events: Arc<dyn EventLog>,
    cursors: CursorCodec,
    limits: PageLimits,
    /// Customer and product reads, single or batched: how tests prove there is no N+1.
    lookups: std::sync::atomic::AtomicU64,
}

impl Core {
    /// A core over `store` and `events`, signing cursors with `cursors`.
    pub fn new(store: Arc<dyn Store>, events: Arc<dyn EventLog>, cursors: CursorCodec) -> Self {
        Self {
            store,
            events,
            cursors,
            limits: PageLimits::default(),
            lookups: Default::default(),
        }
    }

    /// The same core with page sizes from configuration.
    pub fn with_page_limits(self, limits: PageLimits) -> Self {
        Self { limits, ..self }
    }

    /// Page sizes: the default and the largest a list request may ask for, on every protocol.
    pub fn page_limits(&self) -> PageLimits {
        self.limits
    }

    /// How many customer or product reads (one per single read, one per batch) have been made.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_lookup(&self) {
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The customers with these ids that `who` may see, in one lookup (ids that name nothing
    /// are left out).
    pub fn customers_by_ids(&self, who: &Principal, ids: &[CustomerId]) -> Vec<Customer> {
        self.count_lookup();
        ids.iter()
            .filter(|id| who.sees_customer(**id))
            .filter_map(|id| self.store.customer(*id))
            .collect()
    }

    /// The products with these ids, in one lookup (ids that name nothing are left out).
    pub fn products_by_ids(&self, ids: &[ProductId]) -> Vec<Product> {
        self.count_lookup();
        ids.iter()
            .filter_map(|id| self.store.product(*id))
            .collect()
    }

    /// The key of `order` in a list sorted by `sort`, to build a cursor pointing at it.
    pub fn order_key(&self, order: &Order, sort: &super::pagination::SortSpec) -> RowKey {
        RowKey::of(sort, order.id.0, |field| order_sort_value(order, field))
    }

    /// The key of `product` in a list sorted by `sort`.
    pub fn product_key(&self, product: &Product, sort: &super::pagination::SortSpec) -> RowKey {
        RowKey::of(sort, product.id.0, |field| {
            product_sort_value(product, field)
        })
    }

    /// How many orders `who` sees match `filter` (a full scan, as `SELECT count(*)` without an
    /// index).
    pub fn count_orders(&self, who: &Principal, filter: &OrderFilter) -> usize {
        let Some(filter) = scoped(who, filter) else {
            return 0;
        };
        let mut n = 0;
        self.store.scan_orders(None, &mut |order| {
            if filter.matches(order) {
                n += 1;
            }
            ControlFlow::Continue(())
        });
        n
    }

    /// The event log every streaming protocol reads.
    pub fn events(&self) -> &Arc<dyn EventLog> {
        &self.events
    }

    /// The codec adapters use to turn page positions into cursors and back.
    pub fn cursors(&self) -> &CursorCodec {
        &self.cursors
    }

    /// The store, for seeding and readiness checks.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // ---- products ----

    /// One product.
    pub fn product(&self, id: ProductId) -> DomainResult<Product> {
        self.count_lookup();
        self.store
            .product(id)
            .ok_or_else(|| DomainError::not_found(ProductId::RESOURCE, id))
    }

    /// A page of products.
    pub fn list_products(&self, request: &PageRequest) -> Page<Product> {
        page_of(
            self.store.products(),
            request,
            |p| p.id.0,
            product_sort_value,
        )
    }

    // ---- customers ----

    /// One customer (another customer's record is not found for a customer principal).
    pub fn customer(&self, who: &Principal, id: CustomerId) -> DomainResult<Customer> {
        self.count_lookup();
        self.store
            .customer(id)
            .filter(|_| who.sees_customer(id))
            .ok_or_else(|| DomainError::not_found(CustomerId::RESOURCE, id))
    }

    /// A page of the customers `who` may see.
    pub fn list_customers(&self, who: &Principal, request: &PageRequest) -> Page<Customer> {
        let mut customers = self.store.customers();
        customers.retain(|c| who.sees_customer(c.id));
        page_of(customers, request, |c| c.id.0, customer_sort_value)
    }

    /// Creates a customer; the email must be plausible and not taken.
    pub fn create_customer(&self, who: &Principal, new: NewCustomer) -> DomainResult<Customer> {
        who.may(Action::CreateCustomer)?;
        let mut violations = Vec::new();
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            violations.push(FieldViolation::new("name", "must be 1 to 200 characters"));
        }
        let email = new.email.trim().to_owned();
        if !plausible_email(&email) {
            violations.push(FieldViolation::new(
                "email",
                "must look like name@example.com (at most 254 characters)",
            ));
        }
        if !violations.is_empty() {
            return Err(DomainError::Invalid(violations));
        }
        let customer = Customer {
            id: self.store.next_customer_id(),
            name,
            email,
        };
        self.store.insert_customer(customer.clone())?;
        Ok(customer)
    }

    // ---- orders: reads ----

    /// One order (another customer's is not found for a customer principal).
    pub fn order(&self, who: &Principal, id: OrderId) -> DomainResult<Order> {
        self.store
            .order(id)
            .filter(|order| who.sees(order))
            .ok_or_else(|| DomainError::not_found(OrderId::RESOURCE, id))
    }

    /// One item of an order.
    pub fn item(&self, who: &Principal, order_id: OrderId, item_id: ItemId) -> DomainResult<Item> {
        self.order(who, order_id)?
            .item(item_id)
            .cloned()
            .ok_or_else(|| DomainError::not_found(ItemId::RESOURCE, item_id))
    }

    /// A page of an order's items.
    pub fn list_items(
        &self,
        who: &Principal,
        order_id: OrderId,
        request: &PageRequest,
    ) -> DomainResult<Page<Item>> {
        let order = self.order(who, order_id)?;
        Ok(page_of(order.items, request, |i| i.id.0, item_sort_value))
    }

    /// The ids of a page of orders matching `filter`, without reading the orders (see
    /// [`Core::list_orders`] for the cost). A limit of `usize::MAX` sorts every match once.
    pub fn order_ids(
        &self,
        who: &Principal,
        filter: &OrderFilter,
        request: &PageRequest,
    ) -> Page<u64> {
        let Some(filter) = scoped(who, filter) else {
            return Page {
                rows: Vec::new(),
                next: None,
            };
        };
        if request.sort.is_by_id() {
            let (after, skip) = match &request.position {
                Position::Start => (None, 0),
                Position::After(key) => (Some(OrderId(key.id)), 0),
                Position::Offset(n) => (None, *n),
            };
            let wanted = skip.saturating_add(request.limit.get()).saturating_add(1);
            let mut keys = Vec::new();
            let mut skipped = 0;
            self.store.scan_orders(after, &mut |order| {
                if filter.matches(order) {
                    if skipped < skip {
                        skipped += 1;
                    } else {
                        keys.push(RowKey {
                            values: Vec::new(),
                            id: order.id.0,
                        });
                    }
                }
                if keys.len() + skip >= wanted {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            page_from_sorted(keys.into_iter(), request.limit)
        } else {
            let mut keys = Vec::new();
            self.store.scan_orders(None, &mut |order| {
                if filter.matches(order) {
                    keys.push(row_key(order, request, |o| o.id.0, order_sort_value));
                }
                ControlFlow::Continue(())
            });
            select_page(keys.into_iter(), request)
        }
    }

    /// A page of orders matching `filter`.
    ///
    /// In plain id order with a cursor, the store's ordered index is walked from the cursor and
    /// the walk stops after `limit + 1` matches: the cost is independent of depth. Any other sort
    /// (or an offset) looks at every order, which is what a real database without a matching
    /// index would do too.
    pub fn list_orders(
        &self,
        who: &Principal,
        filter: &OrderFilter,
        request: &PageRequest,
    ) -> Page<Order> {
        let ids = self.order_ids(who, filter, request);
        // An order deleted between the scan and here is left out of the page, and so is one
        // moved to another customer meanwhile.
        let rows = ids
            .rows
            .iter()
            .filter_map(|id| self.store.order(OrderId(*id)))
            .filter(|order| who.sees(order))
            .collect();
        Page {
            rows,
            next: ids.next,
        }
    }

    // ---- orders: writes ----

    /// Refuses a bulk create of `count` orders unless it holds 1 to [`MAX_BULK_ORDERS`]: a
    /// violation of `orders`, the whole request refused and nothing created. Adapters that
    /// receive the orders one by one (a gRPC stream) ask before taking each one.
    pub fn check_bulk_size(count: usize) -> DomainResult<()> {
        if (1..=MAX_BULK_ORDERS).contains(&count) {
            Ok(())
        } else {
            Err(DomainError::invalid(
                "orders",
                format!("must hold 1 to {MAX_BULK_ORDERS} orders"),
            ))
        }
    }

    /// Creates each order of a bulk request on its own, in order: a bad element fails alone,
    /// with the error it would get by itself.
    pub fn create_orders(
        &self,
        who: &Principal,
        orders: &[BulkElement],
    ) -> DomainResult<Vec<DomainResult<Order>>> {
        Self::check_bulk_size(orders.len())?;
        Ok(orders
            .iter()
            .map(|order| match order {
                Ok(new) => self.create_order(who, new.clone()),
                Err(violations) => Err(DomainError::Invalid(violations.clone())),
            })
            .collect())
    }

    /// Creates an order for an existing customer from existing products.
    pub fn create_order(&self, who: &Principal, new: NewOrder) -> DomainResult<Order> {
        who.may(Action::CreateOrder)?;
        if !who.sees_customer(new.customer_id) {
            return Err(DomainError::Forbidden(
                "a customer places orders only for itself".into(),
            ));
        }
        let mut violations = Vec::new();
        if self.store.customer(new.customer_id).is_none() {
            violations.push(FieldViolation::new(
                "customer_id",
                format!("no customer with id '{}'", new.customer_id),
            ));
        }
        let items = self.price_items(&new.items, 1, &mut violations);
        if !violations.is_empty() {
            return Err(DomainError::Invalid(violations));
        }
        let (items, currency) = items.expect("no violations means the items were priced");
        let now = SystemTime::now();
        let order = Order {
            id: self.store.next_order_id(),
            customer_id: new.customer_id,
            status: OrderStatus::Pending,
            next_item_id: items.len() as u64 + 1,
            items,
            currency,
            created_at: now,
            updated_at: now,
            version: 1,
            cancellation: None,
        };
        let events = &self.events;
        self.store.insert_order(order.clone(), &mut |committed| {
            events.append(committed, Change::Created);
        });
        Ok(order)
    }

    /// Applies `changes` (a PATCH, or every field for a PUT). Items and customer change only
    /// while pending; the status follows the life cycle. A change that changes nothing keeps
    /// the version and emits no event.
    pub fn update_order(
        &self,
        who: &Principal,
        id: OrderId,
        changes: OrderChanges,
        expect: &Expect,
    ) -> DomainResult<Order> {
        who.may(Action::ChangeOrder)?;
        // Price new items outside the order's lock: it reads the catalog only.
        let mut violations = Vec::new();
        let new_items = changes
            .items
            .as_ref()
            .map(|items| self.price_items(items, 1, &mut violations));
        if let Some(customer_id) = changes.customer_id
            && self.store.customer(customer_id).is_none()
        {
            violations.push(FieldViolation::new(
                "customer_id",
                format!("no customer with id '{customer_id}'"),
            ));
        }
        if !violations.is_empty() {
            return Err(DomainError::Invalid(violations));
        }
        let new_items = new_items.map(|priced| priced.expect("no violations"));

        let (order, _) = self.change_order(who, id, expect, &mut |order| {
            let mut made = Vec::new();
            let mut content_changed = false;
            if let Some(customer_id) = changes.customer_id
                && customer_id != order.customer_id
            {
                require_pending(order, "the customer")?;
                order.customer_id = customer_id;
                content_changed = true;
            }
            if let Some((items, currency)) = &new_items
                && !same_lines(&order.items, items)
            {
                require_pending(order, "the items")?;
                order.items = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Item {
                        id: ItemId(order.next_item_id + i as u64),
                        ..item.clone()
                    })
                    .collect();
                order.next_item_id += items.len() as u64;
                order.currency = currency.clone();
                content_changed = true;
            }
            if content_changed {
                made.push(Change::Updated);
            }
            if let Some(status) = changes.status
                && status != order.status
            {
                made.push(transition(order, status, None)?);
            }
            if !made.is_empty() {
                touch(order);
            }
            Ok(made)
        })?;
        Ok(order)
    }

    /// Edits order `id` under its lock: `edit` runs only on an order `who` may see, at the
    /// version `expect` names, and the changes it reports are published once committed.
    fn change_order(
        &self,
        who: &Principal,
        id: OrderId,
        expect: &Expect,
        edit: Edit<'_>,
    ) -> DomainResult<(Order, Vec<Change>)> {
        let events = &self.events;
        self.store.update_order(
            id,
            &mut |order| {
                visible(who, order)?;
                check_version(order, expect)?;
                edit(order)
            },
            &mut |committed, made| publish(events.as_ref(), committed, made),
        )
    }

    /// Adds one item to a pending order; returns the order and the new item's id.
    pub fn add_item(
        &self,
        who: &Principal,
        id: OrderId,
        new: NewItem,
        expect: &Expect,
    ) -> DomainResult<(Order, ItemId)> {
        who.may(Action::ChangeOrder)?;
        let product = self.store.product(new.product_id).ok_or_else(|| {
            DomainError::invalid(
                "product_id",
                format!("no product with id '{}'", new.product_id),
            )
        })?;
        let (order, made) = self.change_order(who, id, expect, &mut |order| {
            require_pending(order, "the items")?;
            if order.items.len() >= Order::MAX_ITEMS {
                return Err(DomainError::InvalidState(format!(
                    "an order holds at most {} items",
                    Order::MAX_ITEMS
                )));
            }
            if product.currency != order.currency {
                return Err(DomainError::invalid(
                    "product_id",
                    format!(
                        "product '{}' is priced in {}, the order in {}",
                        product.id, product.currency, order.currency
                    ),
                ));
            }
            let item_id = ItemId(order.next_item_id);
            order.next_item_id += 1;
            order.items.push(Item {
                id: item_id,
                product_id: product.id,
                quantity: new.quantity,
                unit_price_cents: product.price_cents,
            });
            touch(order);
            Ok(vec![Change::ItemAdded { item_id }])
        })?;
        let Some(Change::ItemAdded { item_id }) = made.first() else {
            return Err(DomainError::Internal("add_item reported no item".into()));
        };
        Ok((order, *item_id))
    }

    /// Cancels a pending or paid order, recording the reason.
    pub fn cancel_order(
        &self,
        who: &Principal,
        id: OrderId,
        reason: Option<String>,
        expect: &Expect,
    ) -> DomainResult<Order> {
        who.may(Action::CancelOrder)?;
        if let Some(reason) = &reason
            && reason.chars().count() > 500
        {
            return Err(DomainError::invalid(
                "reason",
                "must be at most 500 characters",
            ));
        }
        let (order, _) = self.change_order(who, id, expect, &mut |order| {
            let change = transition(order, OrderStatus::Cancelled, reason.clone())?;
            touch(order);
            Ok(vec![change])
        })?;
        Ok(order)
    }

    /// Deletes an order. Its id is never issued again.
    pub fn delete_order(
        &self,
        who: &Principal,
        id: OrderId,
        expect: &Expect,
    ) -> DomainResult<Order> {
        who.may(Action::DeleteOrder)?;
        let events = &self.events;
        self.store.remove_order(
            id,
            &mut |order| {
                visible(who, order)?;
                check_version(order, expect)
            },
            &mut |last| {
                events.append(last, Change::Deleted);
            },
        )
    }

    /// Looks up and prices `items`, reporting problems under `items[i]`. Returns the priced items
    /// (ids from `first_id`) and their shared currency when there were no problems.
    fn price_items(
        &self,
        items: &[NewItem],
        first_id: u64,
        violations: &mut Vec<FieldViolation>,
    ) -> Option<(Vec<Item>, String)> {
        if items.is_empty() || items.len() > Order::MAX_ITEMS {
            violations.push(FieldViolation::new(
                "items",
                format!("an order needs 1 to {} items", Order::MAX_ITEMS),
            ));
            return None;
        }
        let before = violations.len();
        let mut priced = Vec::with_capacity(items.len());
        let mut currency: Option<String> = None;
        for (i, item) in items.iter().enumerate() {
            let Some(product) = self.store.product(item.product_id) else {
                violations.push(FieldViolation::new(
                    format!("items[{i}].product_id"),
                    format!("no product with id '{}'", item.product_id),
                ));
                continue;
            };
            match &currency {
                None => currency = Some(product.currency.clone()),
                Some(c) if *c != product.currency => violations.push(FieldViolation::new(
                    format!("items[{i}].product_id"),
                    format!("is priced in {}, the order in {c}", product.currency),
                )),
                Some(_) => {}
            }
            priced.push(Item {
                id: ItemId(first_id + i as u64),
                product_id: product.id,
                quantity: item.quantity,
                unit_price_cents: product.price_cents,
            });
        }
        (violations.len() == before).then(|| (priced, currency.unwrap_or_default()))
    }
}

fn publish(events: &dyn EventLog, order: &Order, changes: Vec<Change>) {
    for change in changes {
        events.append(order, change);
    }
}

/// `filter` narrowed to what `who` may see; `None` when that is nothing at all (a customer
/// asking for another customer's orders, or a customer this server never issued).
fn scoped(who: &Principal, filter: &OrderFilter) -> Option<OrderFilter> {
    if filter.no_such_customer {
        return None;
    }
    match (who.customer(), filter.customer_id) {
        (None, _) => Some(filter.clone()),
        (Some(own), Some(asked)) if own != asked => None,
        (Some(own), _) => Some(OrderFilter {
            customer_id: Some(own),
            ..filter.clone()
        }),
    }
}

/// Another customer's order is *not found* for a customer principal, exactly like an id that
/// never existed, so order ids cannot be probed.
fn visible(who: &Principal, order: &Order) -> DomainResult<()> {
    if who.sees(order) {
        Ok(())
    } else {
        Err(DomainError::not_found(OrderId::RESOURCE, order.id))
    }
}

fn check_version(order: &Order, expect: &Expect) -> DomainResult<()> {
    match expect {
        Expect::OneOf(versions) if !versions.contains(&order.version) => {
            Err(DomainError::VersionMismatch {
                actual: order.version,
            })
        }
        _ => Ok(()),
    }
}

fn require_pending(order: &Order, what: &str) -> DomainResult<()> {
    if order.status == OrderStatus::Pending {
        Ok(())
    } else {
        Err(DomainError::InvalidState(format!(
            "{what} of an order can only change while it is pending; order {} is {}",
            order.id, order.status
        )))
    }
}

/// Moves `order` to `next` if the life cycle allows it; returns the change to publish.
fn transition(
    order: &mut Order,
    next: OrderStatus,
    reason: Option<String>,
) -> DomainResult<Change> {
    let from = order.status;
    if !from.can_become(next) {
        return Err(DomainError::IllegalTransition {
            from: from.as_str(),
            to: next.as_str(),
        });
    }
    order.status = next;
    Ok(if next == OrderStatus::Cancelled {
        order.cancellation = Some(Cancellation {
            reason,
            cancelled_at: SystemTime::now(),
        });
        Change::Cancelled { from }
    } else {
        Change::StatusChanged { from, to: next }
    })
}

fn touch(order: &mut Order) {
    order.version += 1;
    order.updated_at = SystemTime::now();
}

/// True when `new` holds the same products and quantities in the same order as `current`.
fn same_lines(current: &[Item], new: &[Item]) -> bool {
    current.len() == new.len()
        && current.iter().zip(new).all(|(a, b)| {
            a.product_id == b.product_id
                && a.quantity == b.quantity
                && a.unit_price_cents == b.unit_price_cents
        })
}

fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn order_sort_value(order: &Order, field: &str) -> SortValue {
    SortValue::Int(match field {
        "created_at" => micros(order.created_at),
        "updated_at" => micros(order.updated_at),
        "total_cents" => order.total_cents(),
        "status" => order.status as i64,
        _ => order.id.0 as i64,
    })
}

fn customer_sort_value(customer: &Customer, field: &str) -> SortValue {
    match field {
        "name" => SortValue::Text(customer.name.clone()),
        "email" => SortValue::Text(customer.email.to_lowercase()),
        _ => SortValue::Int(customer.id.0 as i64),
    }
}

fn product_sort_value(product: &Product, field: &str) -> SortValue {
    match field {
        "name" => SortValue::Text(product.name.clone()),
        "price_cents" => SortValue::Int(product.price_cents),
        _ => SortValue::Int(product.id.0 as i64),
    }
}

fn item_sort_value(item: &Item, field: &str) -> SortValue {
    SortValue::Int(match field {
        "product_id" => item.product_id.0 as i64,
        "quantity" => i64::from(item.quantity.get()),
        "unit_price_cents" => item.unit_price_cents,
        _ => item.id.0 as i64,
    })
}

fn row_key<T>(
    row: &T,
    request: &PageRequest,
    id: impl Fn(&T) -> u64,
    value: impl Fn(&T, &str) -> SortValue,
) -> RowKey {
    RowKey {
        values: request
            .sort
            .terms()
            .iter()
            .map(|term| value(row, term.field))
            .collect(),
        id: id(row),
    }
}

/// A page of a small, fully loaded collection (products, customers, items).
fn page_of<T>(
    rows: Vec<T>,
    request: &PageRequest,
    id: impl Fn(&T) -> u64 + Copy,
    value: impl Fn(&T, &str) -> SortValue + Copy,
) -> Page<T> {
    let keys = rows.iter().map(|row| row_key(row, request, id, value));
    let page = select_page(keys, request);
    let mut by_id: std::collections::HashMap<u64, T> =
        rows.into_iter().map(|row| (id(&row), row)).collect();
    Page {
        rows: page.rows.iter().filter_map(|i| by_id.remove(i)).collect(),
        next: page.next,
    }
}
