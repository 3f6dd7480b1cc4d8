//! Where entities live: the `Store` seam and its in-memory implementation.
//!
//! The store knows nothing of order rules; it offers atomic operations and the core decides.
//! Each order write runs a closure under that order's lock (a dashmap shard write lock), so
//! "read, check version, change, commit, publish the event" is one step and no update is lost.
//! An ordered index of order ids (a `BTreeSet`) serves keyset pages in id order without a scan.
//!
//! Simplification: the trait is synchronous because memory never waits. A durable or shared
//! store (PostgreSQL, Redis) would make these methods async; the core's calls are few and in one
//! file, so that change stays local.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::error::{DomainError, DomainResult};
use super::events::Change;
use super::model::{Customer, CustomerId, Order, OrderId, Product, ProductId};

/// A closure that checks and changes a draft of an order and says what it changed; returning an
/// error discards the draft.
pub type Edit<'a> = &'a mut dyn FnMut(&mut Order) -> DomainResult<Vec<Change>>;
/// A closure run after a write is committed, still under the order's lock, so that events are
/// published in commit order.
pub type OnCommit<'a> = &'a mut dyn FnMut(&Order);
/// Like [`OnCommit`], with the changes the edit reported.
pub type OnUpdate<'a> = &'a mut dyn FnMut(&Order, Vec<Change>);

/// The operations the core needs from storage.
pub trait Store: Send + Sync + 'static {
    /// A fresh order id, never issued before.
    fn next_order_id(&self) -> OrderId;
    /// A fresh customer id, never issued before.
    fn next_customer_id(&self) -> CustomerId;

    /// Adds or replaces a product (catalog loading).
    fn put_product(&self, product: Product);
    /// One product.
    fn product(&self, id: ProductId) -> Option<Product>;
    /// Every product, in id order.
    fn products(&self) -> Vec<Product>;

    /// Adds a customer; fails with `AlreadyExists` when the email (case-insensitive) is taken.
    fn insert_customer(&self, customer: Customer) -> DomainResult<()>;
    /// One customer.
    fn customer(&self, id: CustomerId) -> Option<Customer>;
    /// Every customer, in id order.
    fn customers(&self) -> Vec<Customer>;

    /// Adds a new order, then runs `on_commit` before any other writer can touch it.
    fn insert_order(&self, order: Order, on_commit: OnCommit<'_>);
    /// One order.
    fn order(&self, id: OrderId) -> Option<Order>;
    /// Runs `edit` on a draft of the order under its lock; on `Ok` the draft replaces the order
    /// and `on_commit` runs with the reported changes, still under the lock. Returns the
    /// committed order and its changes.
    fn update_order(
        &self,
        id: OrderId,
        edit: Edit<'_>,
        on_commit: OnUpdate<'_>,
    ) -> DomainResult<(Order, Vec<Change>)>;
    /// Removes the order if `check` allows it, then runs `on_commit` with its last state.
    fn remove_order(
        &self,
        id: OrderId,
        check: &mut dyn FnMut(&Order) -> DomainResult<()>,
        on_commit: OnCommit<'_>,
    ) -> DomainResult<Order>;
    /// Visits orders in id order, starting after `after` (or at the first), until `visit` breaks.
    fn scan_orders(&self, after: Option<OrderId>, visit: &mut dyn FnMut(&Order) -> ControlFlow<()>);
    /// How many orders exist.
    fn order_count(&self) -> usize;
}

/// The embedded default: everything in memory, gone at exit.
#[derive(Default)]
pub struct MemoryStore {
    order_ids: AtomicU64,
    customer_ids: AtomicU64,
    products: DashMap<ProductId, Product>,
    customers: DashMap<CustomerId, Customer>,
    customer_emails: DashMap<String, CustomerId>,
    orders: DashMap<OrderId, Order>,
    /// Ids of live orders, in order: the index keyset pages walk.
    order_index: RwLock<BTreeSet<OrderId>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<OrderId>> {
        // Every index mutation is a single insert or remove, so a poisoned lock holds a whole set.
        self.order_index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeSet<OrderId>> {
        self.order_index.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn next_order_id(&self) -> OrderId {
        OrderId(self.order_ids.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn next_customer_id(&self) -> CustomerId {
        CustomerId(self.customer_ids.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn put_product(&self, product: Product) {
        self.products.insert(product.id, product);
    }

    fn product(&self, id: ProductId) -> Option<Product> {
        self.products.get(&id).map(|p| p.clone())
    }

    fn products(&self) -> Vec<Product> {
        let mut all: Vec<Product> = self.products.iter().map(|p| p.clone()).collect();
        all.sort_by_key(|p| p.id);
        all
    }

    fn insert_customer(&self, customer: Customer) -> DomainResult<()> {
        match self.customer_emails.entry(customer.email.to_lowercase()) {
            Entry::Occupied(_) => Err(DomainError::AlreadyExists(format!(
                "a customer with email '{}' already exists",
                customer.email
            ))),
            Entry::Vacant(slot) => {
                // The email slot stays locked until the customer is visible.
                self.customers.insert(customer.id, customer.clone());
                slot.insert(customer.id);
                Ok(())
            }
        }
    }

    fn customer(&self, id: CustomerId) -> Option<Customer> {
        self.customers.get(&id).map(|c| c.clone())
    }

    fn customers(&self) -> Vec<Customer> {
        let mut all: Vec<Customer> = self.customers.iter().map(|c| c.clone()).collect();
        all.sort_by_key(|c| c.id);
        all
    }

    fn insert_order(&self, order: Order, on_commit: OnCommit<'_>) {
        let id = order.id;
        let entry = self.orders.entry(id).insert(order);
        self.index_mut().insert(id);
        on_commit(&entry);
    }

    fn order(&self, id: OrderId) -> Option<Order> {
        self.orders.get(&id).map(|o| o.clone())
    }

    fn update_order(
        &self,
        id: OrderId,
        edit: Edit<'_>,
        on_commit: OnUpdate<'_>,
    ) -> DomainResult<(Order, Vec<Change>)> {
        let mut current = self
            .orders
            .get_mut(&id)
            .ok_or_else(|| DomainError::not_found(OrderId::RESOURCE, id))?;
        let mut draft = current.clone();
        let changes = edit(&mut draft)?;
        *current = draft;
        on_commit(&current, changes.clone());
        Ok((current.clone(), changes))
    }

    fn remove_order(
        &self,
        id: OrderId,
        check: &mut dyn FnMut(&Order) -> DomainResult<()>,
        on_commit: OnCommit<'_>,
    ) -> DomainResult<Order> {
        match self.orders.entry(id) {
            Entry::Vacant(_) => Err(DomainError::not_found(OrderId::RESOURCE, id)),
            Entry::Occupied(entry) => {
                check(entry.get())?;
                self.index_mut().remove(&id);
                let order = entry.remove();
                on_commit(&order);
                Ok(order)
            }
        }
    }

    fn scan_orders(
        &self,
        after: Option<OrderId>,
        visit: &mut dyn FnMut(&Order) -> ControlFlow<()>,
    ) {
        // Walk the index in chunks so the index lock is never held while visiting orders.
        const CHUNK: usize = 256;
        let mut cursor = after;
        loop {
            let ids: Vec<OrderId> = {
                let index = self.index();
                let range = match cursor {
                    Some(after) => {
                        index.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                    }
                    None => index.range(..),
                };
                range.take(CHUNK).copied().collect()
            };
            let Some(last) = ids.last().copied() else {
                return;
            };
            for id in ids {
                // An order removed since the chunk was read is simply gone.
                if let Some(order) = self.orders.get(&id)
                    && visit(&order).is_break()
                {
                    return;
                }
            }
            cursor = Some(last);
        }
    }

    fn order_count(&self) -> usize {
        self.orders.len()
    }
}
