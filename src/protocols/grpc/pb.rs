//! The Rust types generated from `proto/polyport/orders/v1/orders.proto` by `build.rs`.
#![allow(missing_docs, unreachable_pub, clippy::all)]

tonic::include_proto!("polyport.orders.v1");

/// The encoded file descriptor set, served by the reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("polyport_descriptor");
