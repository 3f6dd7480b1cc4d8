//! The gateway: everything between the socket and a protocol adapter.
//!
//! One port ([`serve`], with the per-connection caps and clocks of [`connection`]), optionally over TLS with client certificates ([`tls`]), the
//! cross-cutting HTTP layers ([`trace`], [`gate`]), authentication ([`auth`]), the one error
//! table ([`error`]) with its one rendering per protocol and the refusals written with them
//! ([`refusal`]), and the protocol-neutral idempotency store ([`idempotency`]) and rate
//! limiter ([`ratelimit`]), and random secrets ([`random`]).
//!
//! The gateway stands under the adapters: it imports the domain and the configuration, never
//! `protocols` or `app` (`tests/architecture.rs` checks it).

pub mod auth;
pub mod chaos;
pub mod connection;
pub mod error;
pub mod gate;
pub mod idempotency;
pub mod random;
pub mod ratelimit;
pub mod refusal;
pub mod serve;
pub mod shares;
pub mod tls;
pub mod trace;

pub use error::ApiError;
