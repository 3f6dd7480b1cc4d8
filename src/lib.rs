//! polyport: one order domain served over many protocols on one port.
//!
//! A tour, following a request:
//! - [`gateway`] accepts connections on one port (HTTP/1.1 and HTTP/2 told apart per
//!   connection), runs the shared layers (trace ids, problem rendering, idempotency) and holds
//!   the one table that maps domain errors to every protocol's status codes.
//! - [`protocols`] holds one adapter per protocol; each only translates its wire format to calls
//!   on the core and back.
//! - [`domain`] is the core: entities, rules, the store and the event log, with no protocol types.
//! - [`config`] is the configuration file format and its defaults; [`app`] wires it all together.
//! - [`bench`] is `polyport bench`, the side-by-side load generator and its reports.
//! - [`devcerts`] makes demo certificates for HTTPS and mutual TLS (`polyport dev-certs`).

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod devcerts;
pub mod domain;
pub mod gateway;
pub mod logline;
pub mod protocols;
pub mod webhooks;
pub mod wire;
