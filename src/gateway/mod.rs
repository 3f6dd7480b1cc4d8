//! The gateway: everything between the socket and a protocol adapter.
//!
//! One port ([`serve`]), optionally over TLS with client certificates ([`tls`]), the
//! cross-cutting HTTP layers ([`trace`], [`gate`]), authentication ([`auth`]), the one error
//! table ([`error`]), and the protocol-neutral idempotency store ([`idempotency`]) and rate
//! limiter ([`ratelimit`]).

pub mod auth;
pub mod error;
pub mod gate;
pub mod idempotency;
pub mod ratelimit;
pub mod serve;
pub mod tls;
pub mod trace;

pub use error::ApiError;
