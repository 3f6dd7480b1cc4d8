//! Codec micro-benchmarks: one order and a page of 100 orders, as REST's JSON (serde_json over
//! the v1 DTOs) and as gRPC's protobuf (prost over the generated messages).
//!
//! Run with `cargo bench --bench codec`. Before timing, it prints each payload's size raw and
//! gzipped (once per run), because bytes on the wire are half of the JSON-vs-protobuf story.
//!
//! What is measured, and what is not:
//! - encode: domain value -> wire DTO -> bytes, the work a server does per response. The
//!   domain-to-DTO conversion is included because both adapters pay it (OrderV1 formats two
//!   timestamps as RFC 3339 text; prost carries them as two integers).
//! - decode: bytes -> typed value, the work a client does. JSON decodes into a mirror of
//!   OrderV1 defined here (the server never decodes an order, so the crate has no such type);
//!   protobuf decodes into the generated `pb::Order`.
//! - a page: REST sends one JSON document `{"data": [...], "next_cursor", "has_more"}`; gRPC's
//!   ListOrders streams one message per order, so the protobuf page is 100 length-delimited
//!   messages (the gRPC frame headers, 5 bytes each, are left out).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression;
use flate2::write::GzEncoder;
use polyport::domain::Core;
use polyport::domain::events::MemoryEventLog;
use polyport::domain::model::{Order, OrderId};
use polyport::domain::pagination::CursorCodec;
use polyport::domain::seed;
use polyport::domain::store::MemoryStore;
use polyport::protocols::grpc::{convert, pb};
use polyport::protocols::rest::v1::dto::OrderV1;
use prost::Message;
use serde::Deserialize;
use serde_json::json;

const PAGE: usize = 100;

/// A client's view of an order on REST v1: OrderV1's fields, decoded.
#[allow(dead_code)] // read only by black_box
#[derive(Deserialize)]
struct OrderIn {
    id: String,
    customer_id: String,
    status: String,
    items: Vec<ItemIn>,
    total_cents: i64,
    currency: String,
    created_at: String,
    updated_at: String,
    version: u64,
    cancellation: Option<CancellationIn>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct ItemIn {
    id: String,
    product_id: String,
    quantity: u32,
    unit_price_cents: i64,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct CancellationIn {
    reason: Option<String>,
    cancelled_at: String,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct PageIn {
    data: Vec<OrderIn>,
    next_cursor: Option<String>,
    has_more: bool,
}

/// The demo store's first orders (seeded orders have one to a few items each).
fn orders() -> Vec<Order> {
    let store = Arc::new(MemoryStore::new());
    seed::load(store.as_ref(), PAGE);
    let core = Core::new(
        store,
        Arc::new(MemoryEventLog::new(16, 16)),
        CursorCodec::new(b"bench"),
    );
    (1..=PAGE as u64)
        .map(|id| {
            core.order(&polyport::domain::Principal::system(), OrderId(id))
                .expect("a seeded order")
        })
        .collect()
}

fn json_page(orders: &[Order]) -> Vec<u8> {
    let page = json!({
        "data": orders.iter().map(OrderV1::from).collect::<Vec<_>>(),
        "next_cursor": "eyJrIjpbXSwiaWQiOjEwMH0.c2lnbmF0dXJlLXBsYWNlaG9sZGVy",
        "has_more": true,
    });
    serde_json::to_vec(&page).expect("JSON of plain data")
}

fn proto_page(orders: &[Order]) -> Vec<u8> {
    let mut buf = Vec::new();
    for order in orders {
        convert::order(order)
            .encode_length_delimited(&mut buf)
            .expect("a Vec grows");
    }
    buf
}

fn gzip_len(bytes: &[u8]) -> usize {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec").len()
}

fn print_sizes(orders: &[Order]) {
    let one_json = serde_json::to_vec(&OrderV1::from(&orders[0])).expect("JSON");
    let one_proto = convert::order(&orders[0]).encode_to_vec();
    let page_json = json_page(orders);
    let page_proto = proto_page(orders);
    println!("payload sizes (bytes)          raw     gzip");
    for (name, bytes) in [
        ("one order, JSON", &one_json),
        ("one order, protobuf", &one_proto),
        ("page of 100, JSON", &page_json),
        ("page of 100, protobuf", &page_proto),
    ] {
        println!("  {name:<24} {:>8} {:>8}", bytes.len(), gzip_len(bytes));
    }
    let items: usize = orders.iter().map(|o| o.items.len()).sum();
    println!("  ({PAGE} seeded orders, {items} items in all)");
}

fn benches(c: &mut Criterion) {
    let orders = orders();
    print_sizes(&orders);

    let mut group = c.benchmark_group("encode");
    group.bench_function(BenchmarkId::new("json", "one"), |b| {
        b.iter(|| black_box(serde_json::to_vec(&OrderV1::from(black_box(&orders[0]))).unwrap()))
    });
    group.bench_function(BenchmarkId::new("protobuf", "one"), |b| {
        b.iter(|| black_box(convert::order(black_box(&orders[0])).encode_to_vec()))
    });
    group.throughput(Throughput::Elements(PAGE as u64));
    group.bench_function(BenchmarkId::new("json", "page100"), |b| {
        b.iter(|| black_box(json_page(black_box(&orders))))
    });
    group.bench_function(BenchmarkId::new("protobuf", "page100"), |b| {
        b.iter(|| black_box(proto_page(black_box(&orders))))
    });
    group.finish();

    let one_json = serde_json::to_vec(&OrderV1::from(&orders[0])).unwrap();
    let one_proto = convert::order(&orders[0]).encode_to_vec();
    let page_json = json_page(&orders);
    let page_proto = proto_page(&orders);
    let mut group = c.benchmark_group("decode");
    group.bench_function(BenchmarkId::new("json", "one"), |b| {
        b.iter(|| black_box(serde_json::from_slice::<OrderIn>(black_box(&one_json)).unwrap()))
    });
    group.bench_function(BenchmarkId::new("protobuf", "one"), |b| {
        b.iter(|| black_box(pb::Order::decode(black_box(one_proto.as_slice())).unwrap()))
    });
    group.throughput(Throughput::Elements(PAGE as u64));
    group.bench_function(BenchmarkId::new("json", "page100"), |b| {
        b.iter(|| black_box(serde_json::from_slice::<PageIn>(black_box(&page_json)).unwrap()))
    });
    group.bench_function(BenchmarkId::new("protobuf", "page100"), |b| {
        b.iter(|| {
            let mut buf = black_box(page_proto.as_slice());
            let mut page = Vec::with_capacity(PAGE);
            while !buf.is_empty() {
                page.push(pb::Order::decode_length_delimited(&mut buf).unwrap());
            }
            black_box(page)
        })
    });
    group.finish();
}

criterion_group!(codec, benches);
criterion_main!(codec);
