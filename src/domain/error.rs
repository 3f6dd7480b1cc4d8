//! The domain's own error kinds: what can go wrong with an order, said without any protocol.
//!
//! Adapters never invent their own codes for these: `gateway::error` holds the one table that
//! maps each kind to an HTTP status, a gRPC code and a GraphQL `extensions.code`.

use std::fmt;

/// One field that failed validation, named by its path in the request (`items[0].quantity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the offending field, in the snake_case names every protocol shares.
    pub field: String,
    /// What is wrong with it, for a human.
    pub message: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same violation, with its path placed under `prefix` (`quantity` -> `items[2].quantity`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything the order core can refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The named resource does not exist (or never did: ids are opaque).
    #[error("{resource} '{id}' does not exist")]
    NotFound {
        /// `order`, `customer`, `product` or `item`.
        resource: &'static str,
        /// The id as the client sent it.
        id: String,
    },
    /// The request is well-formed but its values break a rule.
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldViolation>),
    /// The order's status cannot move from `from` to `to`.
    #[error("an order cannot go from {from} to {to}")]
    IllegalTransition {
        /// Current status.
        from: &'static str,
        /// Requested status.
        to: &'static str,
    },
    /// The order is in a state where this change is not allowed (e.g. items of a paid order).
    #[error("{0}")]
    InvalidState(String),
    /// The client's expected version (an `If-Match` ETag) is not the current one.
    #[error("the order is at version {actual}, not the one the request expected")]
    VersionMismatch {
        /// The version the order has now.
        actual: u64,
    },
    /// A resource with the same unique key already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller's role does not allow this change (see `domain::access`).
    #[error("{0}")]
    Forbidden(String),
    /// A bug or an unexpected failure; the message is logged, never sent to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    /// A `NotFound` for `resource` with the id as given.
    pub fn not_found(resource: &'static str, id: impl fmt::Display) -> Self {
        Self::NotFound {
            resource,
            id: id.to_string(),
        }
    }

    /// A single-field validation failure.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, message)])
    }
}

/// Results of the core.
pub type DomainResult<T> = Result<T, DomainError>;
