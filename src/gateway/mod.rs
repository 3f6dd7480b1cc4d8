//! The gateway: everything between the socket and a protocol adapter.
//!
//! One port ([`serve`]), the cross-cutting HTTP layers ([`trace`]), the one error table
//! ([`error`]), the protocol-neutral idempotency store ([`idempotency`]) and authentication
//! ([`auth`]).

pub mod auth;
pub mod error;
pub mod idempotency;
pub mod serve;
pub mod trace;

pub use error::ApiError;
