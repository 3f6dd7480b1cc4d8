//! The domain core: orders, customers, products and the event log, with no protocol in sight.
//!
//! Nothing in here imports HTTP, gRPC, GraphQL or wire-format types; adapters in
//! `crate::protocols` convert to and from these types by hand.

pub mod access;
pub mod command;
pub mod core;
pub mod error;
pub mod events;
pub mod feed;
pub mod model;
pub mod pagination;
pub mod seed;
pub mod store;

#[cfg(test)]
mod tests;

pub use self::access::{Action, Lapse, Principal, Revocable, Revocations, Role};
pub use self::core::{Core, Expect, NewCustomer, NewItem, NewOrder, OrderChanges, OrderFilter};
pub use self::error::{DomainError, DomainResult, FieldViolation};
