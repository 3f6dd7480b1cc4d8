//! Protocol adapters: each translates one wire format to calls on the domain core and back.
//!
//! An adapter owns its wire types and converts by hand; it holds no order rules.

pub mod graphql;
pub mod grpc;
pub mod health;
pub mod push;
pub mod rest;
pub mod state;
pub mod workshop;

pub use state::AppState;
