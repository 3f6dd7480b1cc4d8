//! The core's writes as values: each a parsed command that knows how to run itself and what it
//! gives back. They are what an idempotency key is bound to (`gateway::idempotency` takes any
//! [`Command`]), so every protocol that parses the same request builds the same value, and a
//! key first used over REST replays over gRPC or GraphQL.
//!
//! A trait over the command types, rather than one enum of commands with one enum of
//! outcomes: each command names its own output type, so no caller ever matches an outcome it
//! could not have got (no "unexpected outcome" branch anywhere).

use std::fmt;

use super::core::{BulkElement, Core, Expect, NewCustomer, NewItem, NewOrder, OrderChanges};
use super::model::{Customer, ItemId, Order, OrderId};
use super::{DomainResult, Principal};

/// A write of the core, parsed: what it changes and what it gives back.
pub trait Command: fmt::Debug + Send + Sync {
    /// What the core returns when the command succeeds (recorded and replayed by keys).
    type Output: Clone + Send + Sync + 'static;

    /// Runs the command as `who`.
    fn run(&self, core: &Core, who: &Principal) -> DomainResult<Self::Output>;
}

/// Place an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrder(pub NewOrder);

/// Place many orders at once; each element succeeds or fails alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrders(pub Vec<BulkElement>);

/// Change an order's status or items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOrder {
    /// Which order.
    pub id: OrderId,
    /// What changes.
    pub changes: OrderChanges,
    /// The version the client expects it at.
    pub expect: Expect,
}

/// Add a line to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddItem {
    /// Which order.
    pub order: OrderId,
    /// The new line.
    pub item: NewItem,
    /// The version the client expects it at.
    pub expect: Expect,
}

/// Cancel an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelOrder {
    /// Which order.
    pub id: OrderId,
    /// Why, as the customer said it.
    pub reason: Option<String>,
    /// The version the client expects it at.
    pub expect: Expect,
}

/// Register a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCustomer(pub NewCustomer);

impl Command for CreateOrder {
    type Output = Order;
    fn run(&self, core: &Core, who: &Principal) -> DomainResult<Order> {
        core.create_order(who, self.0.clone())
    }
}

impl Command for CreateOrders {
    type Output = Vec<DomainResult<Order>>;
    fn run(&self, core: &Core, who: &Principal) -> DomainResult<Self::Output> {
        core.create_orders(who, &self.0)
    }
}

impl Command for UpdateOrder {
    type Output = Order;
    fn run(&self, core: &Core, who: &Principal) -> DomainResult<Order> {
        core.update_order(who, self.id, self.changes.clone(), &self.expect)
    }
}

impl Command for AddItem {
    /// The order after the change, and the new line's id.
    type Output = (Order, ItemId);
    fn run(&self, core: &Core, who: &Principal) -> DomainResult<Self::Output> {
        core.add_item(who, self.order, self.item.clone(), &self.expect)
    }
}

impl Command for CancelOrder {
    type Output = Order;
    fn run(&self, core: &Core, who: &Principal) -> DomainResult<Order> {
        core.cancel_order(who, self.id, self.reason.clone(), &self.expect)
    }
}

impl Command for CreateCustomer {
    type Output = Customer;
    fn run(&self, core: &Core, who: &Principal) -> DomainResult<Customer> {
        core.create_customer(who, self.0.clone())
    }
}
