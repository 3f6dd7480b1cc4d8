//! The gateway: everything between the socket and a protocol adapter.
//!
//! One port ([`serve`]), the cross-cutting HTTP layers ([`trace`], [`gate`]), authentication
//! ([`auth`]), the one error table ([`error`]) and the protocol-neutral idempotency store
//! ([`idempotency`]).

pub mod auth;
pub mod error;
pub mod gate;
pub mod idempotency;
pub mod serve;
pub mod trace;

pub use error::ApiError;
