//! gRPC, black box: the real server on a real socket, spoken to with tonic's generated client
//! (and, where a client library would hide what is on the wire, with raw HTTP/2 and HTTP/1.1
//! requests through reqwest).
//!
//! One test per behaviour of the service (the four call kinds, resuming event streams, the error
//! table with its rich details and trace ids, deadlines and cancellation, idempotency keys
//! shared with REST, parity with REST, message limits and bad input, health, reflection and
//! gRPC-Web), each on its own server so that tests never see each other's writes or events.
//! Where cases repeat the test is a table.
//!
//! Nothing here asserts how long something takes. Deadlines appear only as inputs (the test
//! sets one and checks the status code), and waits for a message or for the server's stream
//! count are bounded only so that a bug fails the test instead of hanging it.
//!
//! The demo data (`TestServer::start`) is deterministic: 24 products, 8 customers, and orders
//! whose statuses cycle pending, paid, shipped, delivered, cancelled, paid, pending, delivered
//! (order 1 pending, 2 paid, 3 shipped, 4 delivered, 5 cancelled), owned by customers 1..=8 in
//! turn. Demo data is loaded straight into the store, so the event log starts empty: the first
//! write of a test is event seq 1.

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Buf, Bytes};
use common::TestServer;
use http_body_util::BodyExt;
use polyport::config::Config;
use polyport::protocols::grpc::pb::orders_client::OrdersClient;
use polyport::protocols::grpc::pb::{
    self, AddItemRequest, CancelOrderRequest, CreateOrderRequest, DeleteOrderRequest,
    GetCustomerRequest, GetOrderRequest, GetProductRequest, ListOrdersRequest, NewItem,
    OrderUpdate, SessionCommand, UpdateOrderRequest, WatchOrdersRequest, session_command,
    session_message, watch_orders_response,
};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};
use tonic_types::StatusExt;

// ---- helpers ----

type Client = OrdersClient<Channel>;

const SERVICE: &str = "polyport.orders.v1.Orders";
const TRACE_ID: &str = "x-trace-id";
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";
/// How long a test waits for a message it expects before failing rather than hanging.
const PATIENCE: Duration = Duration::from_secs(10);

async fn orders_client(server: &TestServer) -> Client {
    OrdersClient::new(server.grpc_channel().await)
}

/// A create request: `customer_id` and `(product_id, quantity)` lines.
fn new_order(customer_id: &str, items: &[(&str, i64)]) -> CreateOrderRequest {
    CreateOrderRequest {
        customer_id: customer_id.to_owned(),
        items: new_items(items),
    }
}

fn new_items(items: &[(&str, i64)]) -> Vec<NewItem> {
    items
        .iter()
        .map(|(product_id, quantity)| NewItem {
            product_id: (*product_id).to_owned(),
            quantity: *quantity,
        })
        .collect()
}

async fn create(client: &mut Client, customer_id: &str, items: &[(&str, i64)]) -> pb::Order {
    client
        .create_order(new_order(customer_id, items))
        .await
        .expect("create order")
        .into_inner()
}

async fn get(client: &mut Client, id: &str) -> Result<pb::Order, Status> {
    let request = GetOrderRequest { id: id.to_owned() };
    client.get_order(request).await.map(|r| r.into_inner())
}

/// An update of the order's status only, without a field mask.
fn set_status(id: &str, status: &str) -> UpdateOrderRequest {
    UpdateOrderRequest {
        id: id.to_owned(),
        order: Some(OrderUpdate {
            status: status.to_owned(),
            ..OrderUpdate::default()
        }),
        ..UpdateOrderRequest::default()
    }
}

/// The error of a call that must fail.
fn error<T: std::fmt::Debug>(result: Result<T, Status>) -> Status {
    result.expect_err("the call must fail")
}

/// The next message of a stream, which must come.
async fn next<T>(stream: &mut Streaming<T>, context: &str) -> T {
    match tokio::time::timeout(PATIENCE, stream.message()).await {
        Err(_) => panic!("{context}: no message within {PATIENCE:?}"),
        Ok(Err(status)) => panic!("{context}: the stream failed: {status:?}"),
        Ok(Ok(None)) => panic!("{context}: the stream ended"),
        Ok(Ok(Some(message))) => message,
    }
}

/// Every message of a stream that must end cleanly.
async fn collect<T>(stream: &mut Streaming<T>, context: &str) -> Vec<T> {
    let mut all = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, stream.message()).await {
            Err(_) => panic!("{context}: the stream did not end within {PATIENCE:?}"),
            Ok(Err(status)) => panic!("{context}: the stream failed: {status:?}"),
            Ok(Ok(None)) => return all,
            Ok(Ok(Some(message))) => all.push(message),
        }
    }
}

/// The status a stream ends with, which must be an error; messages before it are returned.
async fn end_status<T>(stream: &mut Streaming<T>, context: &str) -> (Vec<T>, Status) {
    let mut messages = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, stream.message()).await {
            Err(_) => panic!("{context}: the stream did not end within {PATIENCE:?}"),
            Ok(Err(status)) => return (messages, status),
            Ok(Ok(None)) => panic!("{context}: the stream ended without an error"),
            Ok(Ok(Some(message))) => messages.push(message),
        }
    }
}

async fn list(client: &mut Client, request: ListOrdersRequest) -> Vec<pb::Order> {
    let context = format!("ListOrders {request:?}");
    let mut stream = client
        .list_orders(request)
        .await
        .expect("list orders")
        .into_inner();
    collect(&mut stream, &context).await
}

fn ids(orders: &[pb::Order]) -> Vec<String> {
    orders.iter().map(|o| o.id.clone()).collect()
}

async fn watch(
    client: &mut Client,
    request: WatchOrdersRequest,
) -> Streaming<pb::WatchOrdersResponse> {
    client
        .watch_orders(request)
        .await
        .expect("watch orders")
        .into_inner()
}

/// The next message of a watch, which must be an event.
async fn next_event(
    stream: &mut Streaming<pb::WatchOrdersResponse>,
    context: &str,
) -> pb::OrderEvent {
    match next(stream, context).await.kind {
        Some(watch_orders_response::Kind::Event(event)) => event,
        other => panic!("{context}: expected an event, got {other:?}"),
    }
}

/// Asserts a trace id is 32 lowercase hex digits.
fn assert_trace_id_shape(trace_id: &str) {
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    assert!(
        trace_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{trace_id}"
    );
}

/// The `x-trace-id` metadata value, which must be there.
fn trace_id_of(metadata: &tonic::metadata::MetadataMap, context: &str) -> String {
    let value = metadata
        .get(TRACE_ID)
        .unwrap_or_else(|| panic!("{context}: no {TRACE_ID} metadata in {metadata:?}"));
    let trace_id = value.to_str().expect("visible ASCII").to_owned();
    assert_trace_id_shape(&trace_id);
    trace_id
}

/// Asserts `status` is the table's answer for problem `slug`: gRPC `code`, `x-trace-id`
/// metadata, and an ErrorInfo naming the slug, the problem type and the same trace id.
/// Returns the trace id.
fn expect_error(status: &Status, code: Code, slug: &str) -> String {
    assert_eq!(status.code(), code, "{slug}: {status:?}");
    assert!(!status.message().is_empty(), "{status:?}");
    let trace_id = trace_id_of(status.metadata(), slug);
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("{slug}: no google.rpc.ErrorInfo in {status:?}"));
    assert_eq!(info.reason, slug, "{status:?}");
    assert_eq!(info.domain, "polyport", "{status:?}");
    assert_eq!(
        info.metadata.get("type").map(String::as_str),
        Some(format!("/problems/{slug}").as_str()),
        "{status:?}"
    );
    assert_eq!(
        info.metadata.get("trace_id"),
        Some(&trace_id),
        "the ErrorInfo names the same trace id: {status:?}"
    );
    trace_id
}

/// The fields named by the status's google.rpc.BadRequest, checking each has a description.
fn violation_fields(status: &Status) -> Vec<String> {
    let details = status.get_error_details();
    let bad_request = details
        .bad_request()
        .unwrap_or_else(|| panic!("no google.rpc.BadRequest in {status:?}"));
    bad_request
        .field_violations
        .iter()
        .map(|v| {
            assert!(!v.description.is_empty(), "{status:?}");
            v.field.clone()
        })
        .collect()
}

/// The REST view: GET `path`, expecting 200 and JSON.
async fn rest_json(server: &TestServer, path: &str) -> Value {
    let response = server.get(path).send().await.expect("request");
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("JSON")
}

async fn order_count(server: &TestServer) -> u64 {
    rest_json(server, "/readyz").await["orders"]
        .as_u64()
        .expect("orders")
}

fn rfc3339_millis(timestamp: Option<prost_types::Timestamp>) -> String {
    let time = SystemTime::try_from(timestamp.expect("timestamp set")).expect("valid timestamp");
    humantime::format_rfc3339_millis(time).to_string()
}

/// Asserts the REST JSON of an order says what the gRPC message says.
fn assert_same_order(rest: &Value, grpc: &pb::Order) {
    let items: Vec<Value> = grpc
        .items
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "product_id": i.product_id,
                "quantity": i.quantity,
                "unit_price_cents": i.unit_price_cents,
            })
        })
        .collect();
    let expected = json!({
        "id": grpc.id,
        "customer_id": grpc.customer_id,
        "status": grpc.status,
        "items": items,
        "total_cents": grpc.total_cents,
        "currency": grpc.currency,
        "created_at": rfc3339_millis(grpc.created_at),
        "updated_at": rfc3339_millis(grpc.updated_at),
        "version": grpc.version,
        "cancellation": null,
    });
    assert_eq!(rest, &expected);
}

/// A gRPC length-prefixed message: flag 0 (not compressed), big-endian length, the bytes.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(payload);
    framed
}

/// Splits a gRPC(-Web) body into its (flag, payload) frames.
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut all = Vec::new();
    while !body.is_empty() {
        assert!(body.len() >= 5, "a truncated frame header: {body:?}");
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        assert!(
            body.len() >= len,
            "a truncated frame: {len} > {}",
            body.len()
        );
        all.push((flag, body[..len].to_vec()));
        body = &body[len..];
    }
    all
}

/// What a raw gRPC call got back.
struct RawReply {
    http_status: u16,
    headers: http::HeaderMap,
    trailers: Option<http::HeaderMap>,
    body: Bytes,
}

impl RawReply {
    /// The gRPC status, from the trailers or (trailers-only responses) the headers.
    fn grpc_status(&self) -> Status {
        self.trailers
            .as_ref()
            .and_then(Status::from_header_map)
            .or_else(|| Status::from_header_map(&self.headers))
            .unwrap_or_else(|| panic!("no grpc-status in {:?} / {:?}", self.headers, self.trailers))
    }
}

/// POSTs `body` to `url` with `client` and reads the whole reply, trailers included (a
/// streamed body need not have ended: the reply is read once the server answers).
async fn raw_call(
    client: &reqwest::Client,
    url: String,
    content_type: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> RawReply {
    let mut request = client
        .post(url)
        .header("content-type", content_type)
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response: http::Response<reqwest::Body> = request.body(body).send().await.unwrap().into();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("the whole body");
    RawReply {
        http_status: parts.status.as_u16(),
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    }
}

/// A raw gRPC call over HTTP/2 (prior knowledge, as gRPC clients do).
async fn raw_grpc(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> RawReply {
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    raw_call(&h2, server.url(path), "application/grpc", headers, body).await
}

// ---- 1. the four call kinds ----

#[tokio::test]
async fn unary_reads_return_orders_customers_and_products() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;

    for (id, status) in [
        ("1", "pending"),
        ("2", "paid"),
        ("3", "shipped"),
        ("4", "delivered"),
        ("5", "cancelled"),
    ] {
        let order = get(&mut client, id).await.unwrap();
        assert_eq!((order.id.as_str(), order.status.as_str()), (id, status));
        assert_eq!(
            order.customer_id, id,
            "orders 1..=8 belong to customers 1..=8"
        );
        assert!(!order.items.is_empty(), "{order:?}");
        let sum: i64 = order
            .items
            .iter()
            .map(|i| i64::from(i.quantity) * i.unit_price_cents)
            .sum();
        assert_eq!(order.total_cents, sum, "{order:?}");
        assert_eq!(order.currency, "USD");
        assert!(order.created_at.is_some() && order.updated_at.is_some());
        assert_eq!(
            order.cancellation.is_some(),
            status == "cancelled",
            "{order:?}"
        );
    }

    let customer = client
        .get_customer(GetCustomerRequest { id: "1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        customer,
        pb::Customer {
            id: "1".into(),
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
        }
    );
    let product = client
        .get_product(GetProductRequest { id: "3".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        product,
        pb::Product {
            id: "3".into(),
            name: "Burr grinder".into(),
            price_cents: 12_900,
            currency: "USD".into(),
        }
    );
}

#[tokio::test]
async fn unary_writes_create_extend_pay_cancel_and_delete_an_order() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;

    // Products 1 and 3 cost 24.50 and 129.00; product 5 costs 6.50.
    let order = create(&mut client, "2", &[("1", 2), ("3", 1)]).await;
    assert_eq!(order.customer_id, "2");
    assert_eq!(order.status, "pending");
    assert_eq!(order.version, 1);
    assert_eq!(order.total_cents, 2 * 2_450 + 12_900);
    let lines: Vec<_> = order
        .items
        .iter()
        .map(|i| {
            (
                i.id.as_str(),
                i.product_id.as_str(),
                i.quantity,
                i.unit_price_cents,
            )
        })
        .collect();
    assert_eq!(lines, [("1", "1", 2, 2_450), ("2", "3", 1, 12_900)]);
    assert_eq!(get(&mut client, &order.id).await.unwrap(), order);

    let added = client
        .add_item(AddItemRequest {
            order_id: order.id.clone(),
            product_id: "5".into(),
            quantity: 3,
            expected_version: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    let item = added.item.expect("the new item");
    assert_eq!(
        (
            item.id.as_str(),
            item.product_id.as_str(),
            item.quantity,
            item.unit_price_cents
        ),
        ("3", "5", 3, 650)
    );
    let extended = added.order.expect("the order");
    assert_eq!(extended.items.len(), 3);
    assert_eq!(extended.total_cents, order.total_cents + 3 * 650);
    assert_eq!(extended.version, 2);

    let paid = client
        .update_order(set_status(&order.id, "paid"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((paid.status.as_str(), paid.version), ("paid", 3));

    let cancelled = client
        .cancel_order(CancelOrderRequest {
            id: order.id.clone(),
            reason: "ordered twice".into(),
            expected_version: Some(3),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (cancelled.status.as_str(), cancelled.version),
        ("cancelled", 4)
    );
    let cancellation = cancelled.cancellation.clone().expect("cancellation");
    assert_eq!(cancellation.reason, "ordered twice");
    assert!(cancellation.cancelled_at.is_some());

    let deleted = client
        .delete_order(DeleteOrderRequest {
            id: order.id.clone(),
            expected_version: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        deleted.order.as_ref(),
        Some(&cancelled),
        "the order as it was"
    );
    expect_error(
        &error(get(&mut client, &order.id).await),
        Code::NotFound,
        "not-found",
    );
}

#[tokio::test]
async fn an_update_mask_applies_the_fields_it_names_and_no_mask_applies_the_set_ones() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let update = |id: &str, order: OrderUpdate, mask: &[&str]| UpdateOrderRequest {
        id: id.to_owned(),
        order: Some(order),
        update_mask: (!mask.is_empty()).then(|| prost_types::FieldMask {
            paths: mask.iter().map(|p| (*p).to_owned()).collect(),
        }),
        expected_version: None,
    };
    let everything = || OrderUpdate {
        customer_id: "2".into(),
        status: "paid".into(),
        items: new_items(&[("2", 1)]),
    };
    let before = get(&mut client, "1").await.unwrap();

    // A mask naming status changes the status only, though customer and items are set too.
    let order = client
        .update_order(update("1", everything(), &["status"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.status, "paid");
    assert_eq!(order.customer_id, before.customer_id);
    assert_eq!(order.items, before.items);

    // Order 7 is pending, customer 7. A mask naming customer and items leaves the status.
    let order = client
        .update_order(update("7", everything(), &["customer_id", "items"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (order.status.as_str(), order.customer_id.as_str()),
        ("pending", "2")
    );
    let lines: Vec<_> = order
        .items
        .iter()
        .map(|i| (i.product_id.as_str(), i.quantity))
        .collect();
    assert_eq!(lines, [("2", 1)]);

    // Order 9 is pending, customer 1. Without a mask, the fields set in `order` apply and the
    // empty ones are left alone.
    let before = get(&mut client, "9").await.unwrap();
    let order = client
        .update_order(update(
            "9",
            OrderUpdate {
                customer_id: "3".into(),
                ..OrderUpdate::default()
            },
            &[],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.customer_id, "3");
    assert_eq!(order.status, "pending");
    assert_eq!(order.items, before.items);
    assert_eq!(order.version, before.version + 1);
}

#[tokio::test]
async fn list_orders_streams_the_matching_orders_in_the_requested_order() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let all = list(&mut client, ListOrdersRequest::default()).await;
    let expected: Vec<String> = (1..=24).map(|n| n.to_string()).collect();
    assert_eq!(ids(&all), expected, "every order, by id");

    let matching = |keep: &dyn Fn(&pb::Order) -> bool| {
        all.iter()
            .filter(|o| keep(o))
            .map(|o| o.id.clone())
            .collect::<Vec<_>>()
    };
    let mut by_total = all.clone();
    // Stable: ties stay in id order, the server's tie-breaker.
    by_total.sort_by_key(|o| std::cmp::Reverse(o.total_cents));
    let request = |status: &str, customer_id: &str, sort: &str, limit: u32| ListOrdersRequest {
        status: status.into(),
        customer_id: customer_id.into(),
        sort: sort.into(),
        limit,
    };
    let cases = [
        (
            request("pending", "", "", 0),
            matching(&|o| o.status == "pending"),
        ),
        (request("", "3", "", 0), matching(&|o| o.customer_id == "3")),
        (
            request("paid", "2", "", 0),
            matching(&|o| o.status == "paid" && o.customer_id == "2"),
        ),
        (request("", "", "-total_cents", 0), ids(&by_total)),
        (request("", "", "-total_cents", 3), ids(&by_total[..3])),
        (request("", "", "", 5), expected[..5].to_vec()),
        (request("", "nobody", "", 0), vec![]),
    ];
    for (request, expected) in cases {
        let context = format!("{request:?}");
        assert_eq!(
            ids(&list(&mut client, request).await),
            expected,
            "{context}"
        );
    }
}

#[tokio::test]
async fn list_orders_streams_every_matching_order_when_there_are_more_than_a_page() {
    let mut config = Config::default();
    config.data.demo_orders = 250;
    let server = TestServer::with_config(config).await;
    let mut client = orders_client(&server).await;

    let all = list(&mut client, ListOrdersRequest::default()).await;
    let expected: Vec<String> = (1..=250).map(|n| n.to_string()).collect();
    assert_eq!(ids(&all), expected, "every order once, by id");

    let by_total = list(
        &mut client,
        ListOrdersRequest {
            sort: "-total_cents".into(),
            ..ListOrdersRequest::default()
        },
    )
    .await;
    let mut expected_by_total = all.clone();
    expected_by_total.sort_by_key(|o| std::cmp::Reverse(o.total_cents));
    assert_eq!(ids(&by_total), ids(&expected_by_total));

    let paid = list(
        &mut client,
        ListOrdersRequest {
            status: "paid".into(),
            ..ListOrdersRequest::default()
        },
    )
    .await;
    let expected_paid: Vec<_> = all.iter().filter(|o| o.status == "paid").collect();
    assert!(expected_paid.len() > 50, "{}", expected_paid.len());
    assert_eq!(
        ids(&paid),
        expected_paid
            .iter()
            .map(|o| o.id.clone())
            .collect::<Vec<_>>()
    );

    let first = list(
        &mut client,
        ListOrdersRequest {
            limit: 150,
            ..ListOrdersRequest::default()
        },
    )
    .await;
    assert_eq!(ids(&first), expected[..150]);
}

#[tokio::test]
async fn bulk_create_answers_each_create_by_its_index_and_counts_them() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let before = order_count(&server).await;

    // (the create, None if it succeeds or the fields its error names)
    let cases: [(CreateOrderRequest, Option<&[&str]>); 6] = [
        (new_order("1", &[("1", 1)]), None),
        (new_order("1", &[("1", 0)]), Some(&["items[0].quantity"])),
        (new_order("999", &[("2", 1)]), Some(&["customer_id"])),
        (new_order("2", &[("2", 2), ("3", 1)]), None),
        (new_order("2", &[]), Some(&["items"])),
        (
            new_order("3", &[("4", 1), ("999", 1)]),
            Some(&["items[1].product_id"]),
        ),
    ];
    let creates: Vec<_> = cases.iter().map(|(create, _)| create.clone()).collect();
    let summary = client
        .bulk_create_orders(tokio_stream::iter(creates))
        .await
        .unwrap()
        .into_inner();

    assert_eq!((summary.created, summary.failed), (2, 4));
    assert_eq!(summary.results.len(), cases.len());
    for (i, (result, (create, expected))) in summary.results.iter().zip(&cases).enumerate() {
        assert_eq!(result.index as usize, i);
        match (&result.result, expected) {
            (Some(pb::bulk_create_result::Result::Order(order)), None) => {
                assert_eq!(order.customer_id, create.customer_id);
                assert_eq!(order.items.len(), create.items.len());
                assert_eq!(&get(&mut client, &order.id).await.unwrap(), order);
            }
            (Some(pb::bulk_create_result::Result::Error(error)), Some(fields)) => {
                assert_eq!(error.code, "INVALID_ARGUMENT", "{i}: {error:?}");
                assert_eq!(error.r#type, "/problems/validation", "{i}: {error:?}");
                assert!(!error.message.is_empty());
                let named: Vec<_> = error
                    .field_violations
                    .iter()
                    .map(|v| v.field.as_str())
                    .collect();
                assert_eq!(named, *fields, "{i}: {error:?}");
            }
            (other, _) => panic!("create {i}: expected {expected:?}, got {other:?}"),
        }
    }
    assert_eq!(order_count(&server).await, before + 2);
}

/// A session command.
fn command(id: &str, command: session_command::Command) -> SessionCommand {
    SessionCommand {
        id: id.to_owned(),
        command: Some(command),
    }
}

#[tokio::test]
async fn an_order_session_answers_each_command_under_its_id() {
    use session_command::Command;
    use session_message::Kind;

    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let (commands, outbound) = mpsc::channel(16);
    let mut session = client
        .order_session(ReceiverStream::new(outbound))
        .await
        .unwrap()
        .into_inner();

    let sent = [
        command("create", Command::CreateOrder(new_order("4", &[("6", 2)]))),
        command(
            "read",
            Command::GetOrder(GetOrderRequest { id: "2".into() }),
        ),
        command(
            "cancel",
            Command::CancelOrder(CancelOrderRequest {
                id: "2".into(),
                reason: "found it cheaper".into(),
                expected_version: None,
            }),
        ),
        command(
            "cancel-shipped",
            Command::CancelOrder(CancelOrderRequest {
                id: "3".into(),
                ..CancelOrderRequest::default()
            }),
        ),
        command("pay", Command::UpdateOrder(set_status("1", "paid"))),
        command(
            "missing",
            Command::GetOrder(GetOrderRequest { id: "999".into() }),
        ),
    ];
    for c in sent {
        commands.send(c).await.unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..6 {
        let message = next(&mut session, "session").await;
        answers.push((message.id, message.kind.expect("a kind")));
    }
    let answered: Vec<_> = answers.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        answered,
        [
            "create",
            "read",
            "cancel",
            "cancel-shipped",
            "pay",
            "missing"
        ],
        "one answer per command, in order, under its id"
    );
    let order = |i: usize| match &answers[i].1 {
        Kind::Order(order) => order.clone(),
        other => panic!("{}: expected an order, got {other:?}", answers[i].0),
    };
    let failure = |i: usize| match &answers[i].1 {
        Kind::Error(error) => (error.code.clone(), error.r#type.clone()),
        other => panic!("{}: expected an error, got {other:?}", answers[i].0),
    };
    let created = order(0);
    assert_eq!(
        (created.customer_id.as_str(), created.status.as_str()),
        ("4", "pending")
    );
    assert_eq!(get(&mut client, &created.id).await.unwrap(), created);
    assert_eq!(
        (order(1).id.as_str(), order(1).status.as_str()),
        ("2", "paid")
    );
    let cancelled = order(2);
    assert_eq!(cancelled.status, "cancelled");
    assert_eq!(cancelled.cancellation.unwrap().reason, "found it cheaper");
    assert_eq!(
        failure(3),
        (
            "FAILED_PRECONDITION".into(),
            "/problems/illegal-transition".into()
        )
    );
    assert_eq!(order(4).status, "paid");
    assert_eq!(
        failure(5),
        ("NOT_FOUND".into(), "/problems/not-found".into())
    );

    // Half-closing a session that never subscribed ends it.
    drop(commands);
    assert!(
        collect(&mut session, "session after half-close")
            .await
            .is_empty()
    );
    server.wait_for_streams(0, "a finished session").await;
}

#[tokio::test]
async fn a_subscribed_session_receives_events_for_writes_made_over_rest() {
    use session_command::Command;
    use session_message::Kind;

    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let (commands, outbound) = mpsc::channel(16);
    let mut session = client
        .order_session(ReceiverStream::new(outbound))
        .await
        .unwrap()
        .into_inner();

    commands
        .send(command(
            "sub",
            Command::Subscribe(WatchOrdersRequest::default()),
        ))
        .await
        .unwrap();
    let ack = next(&mut session, "subscribe").await;
    assert_eq!(ack.id, "sub");
    let Some(Kind::Subscribed(pb::Subscribed { last_seq })) = ack.kind else {
        panic!("expected Subscribed, got {ack:?}");
    };

    let response = server
        .post("/v1/orders")
        .json(&json!({ "customer_id": "5", "items": [{ "product_id": "7", "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let message = next(&mut session, "the event of the REST create").await;
    assert_eq!(message.id, "", "events answer no command");
    let Some(Kind::Event(event)) = message.kind else {
        panic!("expected an event, got {message:?}");
    };
    assert_eq!(event.seq, last_seq + 1);
    assert_eq!(event.r#type, "order.created");
    assert_eq!(event.order_id, id);
    assert_eq!(event.order.expect("the order").customer_id, "5");

    // Commands still work on a subscribed session, and their own events follow.
    commands
        .send(command(
            "pay",
            Command::UpdateOrder(set_status(&id, "paid")),
        ))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let message = next(&mut session, "pay and its event").await;
        match message.kind.expect("a kind") {
            Kind::Order(order) => seen.push(format!("{}: order {}", message.id, order.status)),
            Kind::Event(event) => seen.push(format!("event {} {}", event.seq, event.r#type)),
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            format!("event {} order.status_changed", last_seq + 2),
            "pay: order paid".to_owned(),
        ]
    );
}

// ---- 2. WatchOrders ----

#[tokio::test]
async fn watch_orders_resumes_after_a_seq_with_no_gap_and_no_duplicate() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let mut created = Vec::new();
    for customer in ["1", "2", "3"] {
        created.push(create(&mut client, customer, &[("1", 1)]).await.id);
    }

    let mut stream = watch(
        &mut client,
        WatchOrdersRequest {
            after_seq: Some(1),
            ..WatchOrdersRequest::default()
        },
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(next_event(&mut stream, "replay").await);
    }
    // The replay has arrived, so the stream is following the log: these are live.
    created.push(create(&mut client, "4", &[("2", 1)]).await.id);
    client
        .cancel_order(CancelOrderRequest {
            id: created[0].clone(),
            ..CancelOrderRequest::default()
        })
        .await
        .unwrap();
    for _ in 0..2 {
        seen.push(next_event(&mut stream, "live").await);
    }

    let got: Vec<_> = seen
        .iter()
        .map(|e| (e.seq, e.r#type.as_str(), e.order_id.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "order.created", created[1].as_str()),
            (3, "order.created", created[2].as_str()),
            (4, "order.created", created[3].as_str()),
            (5, "order.cancelled", created[0].as_str()),
        ]
    );
    let cancelled = &seen[3];
    assert_eq!(cancelled.from_status, "pending");
    assert_eq!(cancelled.order.as_ref().unwrap().status, "cancelled");
    assert!(cancelled.occurred_at.is_some());
}

#[tokio::test]
async fn watch_orders_filters_by_event_type_order_and_customer() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    // The log: a (customer 1) and b (customer 2) are created, b is paid, a gets an item,
    // b is cancelled, a is paid.
    let a = create(&mut client, "1", &[("1", 1)]).await.id; // 1 created
    let b = create(&mut client, "2", &[("1", 1)]).await.id; // 2 created
    client.update_order(set_status(&b, "paid")).await.unwrap(); // 3 status_changed
    client
        .add_item(AddItemRequest {
            order_id: a.clone(),
            product_id: "2".into(),
            quantity: 1,
            expected_version: None,
        })
        .await
        .unwrap(); // 4 item_added
    client
        .cancel_order(CancelOrderRequest {
            id: b.clone(),
            ..CancelOrderRequest::default()
        })
        .await
        .unwrap(); // 5 cancelled
    client.update_order(set_status(&a, "paid")).await.unwrap(); // 6 status_changed

    let request = |types: &[&str], order_id: &str, customer_id: &str| WatchOrdersRequest {
        after_seq: Some(0),
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        order_id: order_id.to_owned(),
        customer_id: customer_id.to_owned(),
    };
    // Every case also matches event 7 (a shipped), written once every stream is open: when a
    // stream's next event is 7, it has skipped everything else it should.
    let cases = [
        (request(&["order.status_changed"], "", ""), vec![3, 6, 7]),
        (request(&[], &a, ""), vec![1, 4, 6, 7]),
        (request(&[], "", "1"), vec![1, 4, 6, 7]),
        (
            request(&["order.item_added", "order.status_changed"], &a, ""),
            vec![4, 6, 7],
        ),
        (request(&[], "", ""), vec![1, 2, 3, 4, 5, 6, 7]),
    ];
    let mut streams = Vec::new();
    for (request, expected) in cases {
        let context = format!("{request:?}");
        let mut stream = watch(&mut client, request).await;
        let mut seqs = Vec::new();
        for _ in 1..expected.len() {
            seqs.push(next_event(&mut stream, &context).await.seq);
        }
        streams.push((context, stream, seqs, expected));
    }
    client
        .update_order(set_status(&a, "shipped"))
        .await
        .unwrap(); // 7 status_changed
    for (context, mut stream, mut seqs, expected) in streams {
        seqs.push(next_event(&mut stream, &context).await.seq);
        assert_eq!(seqs, expected, "{context}");
    }

    // Ids this server never issued match nothing (the stream then runs until its deadline).
    for (order_id, customer_id) in [("nope", ""), ("", "0"), ("999", "")] {
        let mut request = Request::new(WatchOrdersRequest {
            after_seq: Some(0),
            order_id: order_id.into(),
            customer_id: customer_id.into(),
            ..WatchOrdersRequest::default()
        });
        request.set_timeout(Duration::from_millis(300));
        let mut stream = client.watch_orders(request).await.unwrap().into_inner();
        let (events, status) = end_status(&mut stream, order_id).await;
        assert!(
            events.is_empty(),
            "{order_id:?}/{customer_id:?}: {events:?}"
        );
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }
}

#[tokio::test]
async fn resuming_from_before_the_retained_events_first_reports_what_was_missed() {
    let mut config = Config::default();
    config.events.retain = 2;
    let server = TestServer::with_config(config).await;
    let mut client = orders_client(&server).await;
    for _ in 0..5 {
        create(&mut client, "1", &[("1", 1)]).await; // seqs 1..=5; 4 and 5 are retained
    }

    let mut stream = watch(
        &mut client,
        WatchOrdersRequest {
            after_seq: Some(0),
            ..WatchOrdersRequest::default()
        },
    )
    .await;
    let first = next(&mut stream, "missed").await;
    assert_eq!(
        first.kind,
        Some(watch_orders_response::Kind::Missed(pb::EventsMissed {
            requested_after: 0,
            resumed_after: 3,
        }))
    );
    let mut seqs = Vec::new();
    for _ in 0..2 {
        seqs.push(next_event(&mut stream, "retained").await.seq);
    }
    create(&mut client, "1", &[("1", 1)]).await;
    seqs.push(next_event(&mut stream, "live").await.seq);
    assert_eq!(seqs, [4, 5, 6]);

    // Resuming from within the retained events misses nothing.
    let mut stream = watch(
        &mut client,
        WatchOrdersRequest {
            after_seq: Some(5),
            ..WatchOrdersRequest::default()
        },
    )
    .await;
    assert_eq!(next_event(&mut stream, "retained").await.seq, 6);
}

// ---- 3. errors, from the one table ----

#[tokio::test]
async fn unknown_and_malformed_ids_are_not_found() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let cancel = |id: &str| CancelOrderRequest {
        id: id.into(),
        ..CancelOrderRequest::default()
    };
    let delete = |id: &str| DeleteOrderRequest {
        id: id.into(),
        expected_version: None,
    };
    let add_item = |order_id: &str, product_id: &str| AddItemRequest {
        order_id: order_id.into(),
        product_id: product_id.into(),
        quantity: 1,
        expected_version: None,
    };
    let cases = [
        ("GetOrder 999", error(get(&mut client, "999").await)),
        ("GetOrder abc", error(get(&mut client, "abc").await)),
        ("GetOrder 01", error(get(&mut client, "01").await)),
        (
            "UpdateOrder 999",
            error(client.update_order(set_status("999", "paid")).await),
        ),
        (
            "CancelOrder 999",
            error(client.cancel_order(cancel("999")).await),
        ),
        (
            "DeleteOrder x",
            error(client.delete_order(delete("x")).await),
        ),
        (
            "AddItem 999",
            error(client.add_item(add_item("999", "1")).await),
        ),
        (
            "GetCustomer 999",
            error(
                client
                    .get_customer(GetCustomerRequest { id: "999".into() })
                    .await,
            ),
        ),
        (
            "GetCustomer ada",
            error(
                client
                    .get_customer(GetCustomerRequest { id: "ada".into() })
                    .await,
            ),
        ),
        (
            "GetProduct -1",
            error(
                client
                    .get_product(GetProductRequest { id: "-1".into() })
                    .await,
            ),
        ),
    ];
    let mut trace_ids = HashSet::new();
    for (call, status) in cases {
        let trace_id = expect_error(&status, Code::NotFound, "not-found");
        assert!(trace_ids.insert(trace_id), "{call}: trace ids are per call");
    }
}

#[tokio::test]
async fn invalid_arguments_name_each_bad_field() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let update = |order: OrderUpdate, mask: &[&str]| UpdateOrderRequest {
        id: "1".into(),
        order: Some(order),
        update_mask: Some(prost_types::FieldMask {
            paths: mask.iter().map(|p| (*p).to_owned()).collect(),
        }),
        expected_version: None,
    };
    let add_item = |product_id: &str, quantity: i64| AddItemRequest {
        order_id: "1".into(),
        product_id: product_id.into(),
        quantity,
        expected_version: None,
    };
    let watch_types = |types: &[&str]| WatchOrdersRequest {
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        ..WatchOrdersRequest::default()
    };
    let list = |status: &str, sort: &str| ListOrdersRequest {
        status: status.into(),
        sort: sort.into(),
        ..ListOrdersRequest::default()
    };
    let too_many: Vec<(&str, i64)> = vec![("1", 1); 101];
    let before = order_count(&server).await;

    // (the call, its error, the fields the BadRequest must name)
    let cases: Vec<(&str, Status, &[&str])> = vec![
        (
            "quantity 0",
            error(client.create_order(new_order("1", &[("1", 0)])).await),
            &["items[0].quantity"],
        ),
        (
            "quantity 1001 on the second item",
            error(
                client
                    .create_order(new_order("1", &[("1", 1), ("2", 1001)]))
                    .await,
            ),
            &["items[1].quantity"],
        ),
        (
            "every field wrong",
            error(client.create_order(new_order("", &[("", -1)])).await),
            &["customer_id", "items[0].product_id", "items[0].quantity"],
        ),
        (
            "no items",
            error(client.create_order(new_order("1", &[])).await),
            &["items"],
        ),
        (
            "101 items",
            error(client.create_order(new_order("1", &too_many)).await),
            &["items"],
        ),
        (
            "unknown customer and product",
            error(client.create_order(new_order("999", &[("999", 1)])).await),
            &["customer_id", "items[0].product_id"],
        ),
        (
            "a mask naming a read-only field",
            error(
                client
                    .update_order(update(OrderUpdate::default(), &["total_cents"]))
                    .await,
            ),
            &["update_mask"],
        ),
        (
            "an unknown status",
            error(
                client
                    .update_order(update(
                        OrderUpdate {
                            status: "lost".into(),
                            ..OrderUpdate::default()
                        },
                        &["status"],
                    ))
                    .await,
            ),
            &["order.status"],
        ),
        (
            "an item of quantity -1",
            error(client.add_item(add_item("1", -1)).await),
            &["quantity"],
        ),
        (
            "an item of an unknown product",
            error(client.add_item(add_item("999", 1)).await),
            &["product_id"],
        ),
        (
            "no order id",
            error(client.cancel_order(CancelOrderRequest::default()).await),
            &["id"],
        ),
        (
            "an unknown status filter",
            error(client.list_orders(list("lost", "")).await),
            &["status"],
        ),
        (
            "an unknown sort",
            error(client.list_orders(list("", "colour")).await),
            &["sort"],
        ),
        (
            "an unknown event type",
            error(
                client
                    .watch_orders(watch_types(&["order.created", "order.exploded"]))
                    .await,
            ),
            &["types[1]"],
        ),
    ];
    let mut failures = Vec::new();
    for (call, status, fields) in &cases {
        expect_error(status, Code::InvalidArgument, "validation");
        let named = violation_fields(status);
        if named != *fields {
            failures.push(format!("{call}: expected {fields:?}, named {named:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(order_count(&server).await, before, "nothing was created");
    assert_eq!(
        get(&mut client, "1").await.unwrap().version,
        1,
        "nor changed"
    );
}

#[tokio::test]
async fn update_order_violations_name_the_fields_inside_order() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let update = |order: OrderUpdate, mask: &[&str]| UpdateOrderRequest {
        id: "1".into(),
        order: Some(order),
        update_mask: Some(prost_types::FieldMask {
            paths: mask.iter().map(|p| (*p).to_owned()).collect(),
        }),
        expected_version: None,
    };
    // UpdateOrderRequest carries the new values in `order`, so a BadRequest names them there,
    // whichever layer (the adapter's parsing or the core's checks) finds the fault.
    let cases: Vec<(&str, Status, &[&str])> = vec![
        (
            "a bad quantity in an update",
            error(
                client
                    .update_order(update(
                        OrderUpdate {
                            items: new_items(&[("1", 0)]),
                            ..OrderUpdate::default()
                        },
                        &["items"],
                    ))
                    .await,
            ),
            &["order.items[0].quantity"],
        ),
        (
            "an unknown product in an update",
            error(
                client
                    .update_order(update(
                        OrderUpdate {
                            items: new_items(&[("999", 1)]),
                            ..OrderUpdate::default()
                        },
                        &["items"],
                    ))
                    .await,
            ),
            &["order.items[0].product_id"],
        ),
        (
            "an unknown customer in an update",
            error(
                client
                    .update_order(update(
                        OrderUpdate {
                            customer_id: "999".into(),
                            ..OrderUpdate::default()
                        },
                        &["customer_id"],
                    ))
                    .await,
            ),
            &["order.customer_id"],
        ),
    ];
    let mut failures = Vec::new();
    for (call, status, fields) in &cases {
        expect_error(status, Code::InvalidArgument, "validation");
        let named = violation_fields(status);
        if named != *fields {
            failures.push(format!("{call}: expected {fields:?}, named {named:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn writes_the_order_state_forbids_are_failed_precondition() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let mut before = Vec::new();
    for id in ["2", "3", "4"] {
        before.push(get(&mut client, id).await.unwrap());
    }
    let add_item = |order_id: &str| AddItemRequest {
        order_id: order_id.into(),
        product_id: "1".into(),
        quantity: 1,
        expected_version: None,
    };
    // (the call, its error, the problem slug); order 2 is paid, 3 shipped, 4 delivered.
    let cases = [
        (
            "cancel a shipped order",
            error(
                client
                    .cancel_order(CancelOrderRequest {
                        id: "3".into(),
                        ..CancelOrderRequest::default()
                    })
                    .await,
            ),
            "illegal-transition",
        ),
        (
            "move a delivered order back to pending",
            error(client.update_order(set_status("4", "pending")).await),
            "illegal-transition",
        ),
        (
            "add an item to a paid order",
            error(client.add_item(add_item("2")).await),
            "invalid-state",
        ),
    ];
    for (call, status, slug) in cases {
        expect_error(&status, Code::FailedPrecondition, slug);
        assert!(status.get_error_details().bad_request().is_none(), "{call}");
    }
    for order in before {
        assert_eq!(
            get(&mut client, &order.id).await.unwrap(),
            order,
            "unchanged"
        );
    }
}

#[tokio::test]
async fn a_stale_expected_version_is_aborted_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let stale = Some(7);
    let cases = [
        (
            "UpdateOrder",
            error(
                client
                    .update_order(UpdateOrderRequest {
                        expected_version: stale,
                        ..set_status("1", "paid")
                    })
                    .await,
            ),
        ),
        (
            "CancelOrder",
            error(
                client
                    .cancel_order(CancelOrderRequest {
                        id: "1".into(),
                        reason: String::new(),
                        expected_version: stale,
                    })
                    .await,
            ),
        ),
        (
            "AddItem",
            error(
                client
                    .add_item(AddItemRequest {
                        order_id: "1".into(),
                        product_id: "1".into(),
                        quantity: 1,
                        expected_version: stale,
                    })
                    .await,
            ),
        ),
        (
            "DeleteOrder",
            error(
                client
                    .delete_order(DeleteOrderRequest {
                        id: "1".into(),
                        expected_version: stale,
                    })
                    .await,
            ),
        ),
    ];
    for (call, status) in cases {
        assert_eq!(status.code(), Code::Aborted, "{call}: {status:?}");
        expect_error(&status, Code::Aborted, "version-mismatch");
    }
    let order = get(&mut client, "1").await.unwrap();
    assert_eq!((order.status.as_str(), order.version), ("pending", 1));

    // The current version goes through.
    let paid = client
        .update_order(UpdateOrderRequest {
            expected_version: Some(1),
            ..set_status("1", "paid")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((paid.status.as_str(), paid.version), ("paid", 2));
}

#[tokio::test]
async fn a_traceparent_sets_the_trace_id_of_replies_and_errors() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let traced = |id: &str| {
        let mut request = Request::new(GetOrderRequest { id: id.to_owned() });
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        request
    };

    let reply = client.get_order(traced("1")).await.unwrap();
    assert_eq!(trace_id_of(reply.metadata(), "GetOrder 1"), trace_id);
    let status = error(client.get_order(traced("999")).await);
    assert_eq!(expect_error(&status, Code::NotFound, "not-found"), trace_id);

    // Without one, every call gets a fresh trace id, success or not.
    let first = trace_id_of(get_order_1(&mut client).await.metadata(), "GetOrder");
    let second = trace_id_of(get_order_1(&mut client).await.metadata(), "GetOrder");
    assert_ne!(first, second);
    assert_ne!(first, trace_id);
}

async fn get_order_1(client: &mut Client) -> tonic::Response<pb::Order> {
    client
        .get_order(GetOrderRequest { id: "1".into() })
        .await
        .unwrap()
}

// ---- 4. deadlines and cancellation ----

#[tokio::test]
async fn a_watch_whose_deadline_passes_ends_with_deadline_exceeded_and_stops() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let mut request = Request::new(WatchOrdersRequest::default());
    request.set_timeout(Duration::from_millis(200));
    let mut stream = client.watch_orders(request).await.unwrap().into_inner();

    let (events, status) = end_status(&mut stream, "a watch with a deadline").await;
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // From the table, like every other error: ErrorInfo and the trace id.
    expect_error(&status, Code::DeadlineExceeded, "deadline-exceeded");
    server.wait_for_streams(0, "after the deadline").await;
}

#[tokio::test]
async fn a_stream_dropped_by_the_client_stops_on_the_server() {
    use session_command::Command;

    let mut config = Config::default();
    // Enough orders that a listing cannot finish into the socket buffers on its own: with
    // the small flow-control window below the server must wait for the client to read.
    config.data.demo_orders = 2_000;
    let server = TestServer::with_config(config).await;
    let channel = Endpoint::from_shared(server.url(""))
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .connect()
        .await
        .unwrap();
    let mut client = OrdersClient::new(channel);

    for call in ["WatchOrders", "ListOrders", "OrderSession"] {
        let held: Box<dyn std::any::Any + Send> = match call {
            "WatchOrders" => Box::new(watch(&mut client, WatchOrdersRequest::default()).await),
            "ListOrders" => {
                let mut stream = client
                    .list_orders(ListOrdersRequest::default())
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(next(&mut stream, call).await.id, "1");
                Box::new(stream)
            }
            _ => {
                let (commands, outbound) = mpsc::channel(4);
                let mut session = client
                    .order_session(ReceiverStream::new(outbound))
                    .await
                    .unwrap()
                    .into_inner();
                let subscribe = Command::Subscribe(WatchOrdersRequest::default());
                commands.send(command("sub", subscribe)).await.unwrap();
                next(&mut session, call).await;
                Box::new((commands, session))
            }
        };
        server.wait_for_streams(1, call).await;
        drop(held);
        server
            .wait_for_streams(0, &format!("{call} after the client dropped it"))
            .await;
    }
}

#[tokio::test]
async fn a_unary_call_whose_deadline_already_passed_is_deadline_exceeded_and_does_nothing() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    // tonic's client gives up by itself on a deadline that has passed, so the request is sent
    // by hand: `grpc-timeout: 1n` has expired by the time the server looks at it.
    let message = new_order("1", &[("1", 1)]).encode_to_vec();
    let reply = raw_grpc(
        &server,
        "/polyport.orders.v1.Orders/CreateOrder",
        &[("grpc-timeout", "1n")],
        frame(&message),
    )
    .await;
    assert_eq!(reply.http_status, 200);
    let status = reply.grpc_status();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    expect_error(&status, Code::DeadlineExceeded, "deadline-exceeded");
    assert_eq!(order_count(&server).await, before, "nothing was created");
}

#[tokio::test]
async fn a_bulk_stream_open_when_its_deadline_passes_is_deadline_exceeded_and_creates_nothing() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    // One create, then the client neither sends more nor half-closes, so the deadline passes
    // while the server is still reading the stream. Sent by hand: tonic's client enforces the
    // same deadline itself and would answer its own CANCELLED before the server's status came.
    let first = frame(&new_order("1", &[("1", 1)]).encode_to_vec());
    let stalled = tokio_stream::StreamExt::chain(
        tokio_stream::iter([Ok::<_, std::io::Error>(first)]),
        tokio_stream::pending(),
    );
    let reply = raw_grpc(
        &server,
        "/polyport.orders.v1.Orders/BulkCreateOrders",
        &[("grpc-timeout", "300m")],
        reqwest::Body::wrap_stream(stalled),
    )
    .await;
    assert_eq!(reply.http_status, 200);
    let status = reply.grpc_status();
    expect_error(&status, Code::DeadlineExceeded, "deadline-exceeded");
    assert_eq!(
        status.message(),
        "the deadline passed while reading the stream",
        "{status:?}"
    );
    assert_eq!(order_count(&server).await, before, "nothing was created");
}

#[tokio::test]
async fn a_watch_open_when_the_server_shuts_down_ends_with_unavailable_from_the_table() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let mut stream = watch(&mut client, WatchOrdersRequest::default()).await;
    server.wait_for_streams(1, "the watch").await;

    let (stopped, (events, status)) = tokio::join!(
        tokio::time::timeout(PATIENCE, server.stop()),
        end_status(&mut stream, "a watch at shutdown"),
    );
    stopped.expect("the server stops").expect("cleanly");
    assert!(events.is_empty(), "{events:?}");
    // From the table, like every other error: ErrorInfo and the trace id; UNAVAILABLE says
    // reconnect (resuming after the last seq seen).
    expect_error(&status, Code::Unavailable, "unavailable");
}

#[tokio::test]
async fn a_service_this_server_does_not_have_is_unimplemented_from_the_table() {
    let server = TestServer::start().await;
    let reply = raw_grpc(
        &server,
        "/polyport.nothing.v1.Nothing/Call",
        &[],
        frame(&[]),
    )
    .await;
    assert_eq!(
        reply.http_status, 200,
        "gRPC answers with a status, not an HTTP error"
    );
    let status = reply.grpc_status();
    expect_error(&status, Code::Unimplemented, "route-not-found");
}

// ---- 5. idempotency keys, shared with REST ----

#[tokio::test]
async fn an_idempotency_key_first_used_over_rest_replays_the_same_order_over_grpc() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let response = server
        .post("/v1/orders")
        .header(IDEMPOTENCY_KEY, "cross-protocol-1")
        .json(&json!({
            "customer_id": "3",
            "items": [{ "product_id": "2", "quantity": 2 }, { "product_id": "8", "quantity": 1 }],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let rest: Value = response.json().await.unwrap();
    let count = order_count(&server).await;

    for _ in 0..2 {
        let mut request = Request::new(new_order("3", &[("2", 2), ("8", 1)]));
        request
            .metadata_mut()
            .insert(IDEMPOTENCY_KEY, "cross-protocol-1".parse().unwrap());
        let reply = client.create_order(request).await.unwrap();
        assert_eq!(
            reply.metadata().get(REPLAYED).map(|v| v.to_str().unwrap()),
            Some("true")
        );
        assert_same_order(&rest, reply.get_ref());
    }
    assert_eq!(order_count(&server).await, count, "one order for one key");

    // And the other way round: first over gRPC, then replayed over REST.
    let mut request = Request::new(new_order("4", &[("9", 1)]));
    request
        .metadata_mut()
        .insert(IDEMPOTENCY_KEY, "cross-protocol-2".parse().unwrap());
    let reply = client.create_order(request).await.unwrap();
    assert!(
        reply.metadata().get(REPLAYED).is_none(),
        "a first execution"
    );
    let response = server
        .post("/v1/orders")
        .header(IDEMPOTENCY_KEY, "cross-protocol-2")
        .json(&json!({ "customer_id": "4", "items": [{ "product_id": "9", "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[REPLAYED], "true");
    let rest: Value = response.json().await.unwrap();
    assert_same_order(&rest, reply.get_ref());
    assert_eq!(order_count(&server).await, count + 1);
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_request_is_rejected_over_grpc() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let response = server
        .post("/v1/orders")
        .header(IDEMPOTENCY_KEY, "reused")
        .json(&json!({ "customer_id": "1", "items": [{ "product_id": "1", "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let count = order_count(&server).await;

    let keyed = |create: CreateOrderRequest| {
        let mut request = Request::new(create);
        request
            .metadata_mut()
            .insert(IDEMPOTENCY_KEY, "reused".parse().unwrap());
        request
    };
    for other in [
        new_order("1", &[("1", 2)]),
        new_order("2", &[("1", 1)]),
        new_order("1", &[("1", 1), ("2", 1)]),
    ] {
        let status = error(client.create_order(keyed(other)).await);
        expect_error(&status, Code::InvalidArgument, "idempotency-key-reused");
    }
    // Another operation with the same key is another request too.
    let mut request = Request::new(set_status("1", "paid"));
    request
        .metadata_mut()
        .insert(IDEMPOTENCY_KEY, "reused".parse().unwrap());
    let status = error(client.update_order(request).await);
    expect_error(&status, Code::InvalidArgument, "idempotency-key-reused");

    assert_eq!(order_count(&server).await, count);
    assert_eq!(get(&mut client, "1").await.unwrap().status, "pending");
}

// ---- 6. parity with REST ----

#[tokio::test]
async fn an_order_created_over_grpc_reads_the_same_over_rest() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let order = create(&mut client, "6", &[("4", 3), ("11", 1)]).await;
    let rest = rest_json(&server, &format!("/v1/orders/{}", order.id)).await;
    assert_same_order(&rest, &order);

    let added = client
        .add_item(AddItemRequest {
            order_id: order.id.clone(),
            product_id: "12".into(),
            quantity: 2,
            expected_version: None,
        })
        .await
        .unwrap()
        .into_inner();
    let rest = rest_json(&server, &format!("/v1/orders/{}", order.id)).await;
    assert_same_order(&rest, &added.order.unwrap());
}

#[tokio::test]
async fn an_order_changed_over_rest_reads_the_same_over_grpc() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let response = server
        .patch("/v1/orders/1")
        .json(&json!({ "status": "paid" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rest: Value = response.json().await.unwrap();

    let order = get(&mut client, "1").await.unwrap();
    assert_eq!((order.status.as_str(), order.version), ("paid", 2));
    assert_same_order(&rest, &order);

    let response = server.delete("/v1/orders/1").send().await.unwrap();
    assert_eq!(response.status(), 204);
    expect_error(
        &error(get(&mut client, "1").await),
        Code::NotFound,
        "not-found",
    );
}

// ---- 7. limits and bad input ----

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted_and_the_server_carries_on() {
    let mut config = Config::default();
    config.grpc.max_message_bytes = 1024;
    let server = TestServer::with_config(config).await;
    let mut client = orders_client(&server).await;

    let big = new_order("1", &vec![("1", 1); 300]);
    assert!(big.encoded_len() > 1024, "{}", big.encoded_len());

    // Unary, client streaming (after a good create) and bidirectional calls alike.
    let unary = error(client.create_order(big.clone()).await);
    trace_id_of(unary.metadata(), "an oversized unary message");
    let bulk = error(
        client
            .bulk_create_orders(tokio_stream::iter([
                new_order("1", &[("1", 1)]),
                big.clone(),
            ]))
            .await,
    );
    let (commands, outbound) = mpsc::channel(4);
    let mut session = client
        .order_session(ReceiverStream::new(outbound))
        .await
        .unwrap()
        .into_inner();
    commands
        .send(command("big", session_command::Command::CreateOrder(big)))
        .await
        .unwrap();
    let (answers, session) = end_status(&mut session, "an oversized session command").await;
    assert!(answers.is_empty(), "{answers:?}");
    for (call, status) in [
        ("CreateOrder", unary),
        ("BulkCreateOrders", bulk),
        ("OrderSession", session),
    ] {
        assert_eq!(status.code(), Code::ResourceExhausted, "{call}: {status:?}");
    }

    // The same connection still works, and so does a message under the limit.
    assert_eq!(get(&mut client, "1").await.unwrap().id, "1");
    let before = order_count(&server).await;
    create(&mut client, "1", &[("1", 1)]).await;
    assert_eq!(order_count(&server).await, before + 1);
}

#[tokio::test]
async fn a_bulk_stream_of_more_than_100_creates_is_refused_as_rest_refuses_it() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    let mut client = orders_client(&server).await;
    // One limit for every protocol (the core's MAX_BULK_ORDERS): 101 valid creates are
    // refused as a whole, nothing is created, and the answer is REST's: the `orders` field.
    let creates = vec![new_order("1", &[("1", 1)]); 101];
    let status = error(client.bulk_create_orders(tokio_stream::iter(creates)).await);
    expect_error(&status, Code::InvalidArgument, "validation");
    assert_eq!(violation_fields(&status), ["orders"], "{status:?}");
    assert_eq!(order_count(&server).await, before, "nothing was created");

    let order = json!({ "customer_id": "1", "items": [{ "product_id": "1", "quantity": 1 }] });
    let rest = server
        .post("/v1/orders/bulk")
        .json(&json!({ "orders": vec![order; 101] }))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 400);
    let rest: Value = rest.json().await.unwrap();
    assert_eq!(rest["errors"][0]["field"], "orders", "{rest}");
    assert_eq!(rest["detail"], status.message(), "the same words on both");
}

#[tokio::test]
async fn a_bulk_stream_with_an_idempotency_key_creates_its_orders_once() {
    let server = TestServer::start().await;
    let mut client = orders_client(&server).await;
    let before = order_count(&server).await;
    let mut replies = Vec::new();
    for _ in 0..2 {
        let creates = vec![new_order("1", &[("1", 1)]), new_order("2", &[("2", 2)])];
        let mut request = Request::new(tokio_stream::iter(creates));
        request
            .metadata_mut()
            .insert(IDEMPOTENCY_KEY, "bulk-key-1".parse().unwrap());
        replies.push(client.bulk_create_orders(request).await.unwrap());
    }
    assert_eq!(order_count(&server).await, before + 2, "created once");
    assert_eq!(
        replies[0].get_ref(),
        replies[1].get_ref(),
        "the same summary"
    );
    assert!(replies[0].metadata().get(REPLAYED).is_none());
    assert_eq!(replies[1].metadata().get(REPLAYED).unwrap(), "true");
}

#[tokio::test]
async fn bytes_that_are_not_the_request_message_are_invalid_argument() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    // A well-formed frame around bytes no protobuf parser accepts: field 0 is not a field.
    let reply = raw_grpc(
        &server,
        "/polyport.orders.v1.Orders/CreateOrder",
        &[],
        frame(&[0x00, 0xff, 0xff, 0xff, 0xff]),
    )
    .await;
    assert_eq!(reply.http_status, 200);
    let status = reply.grpc_status();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(order_count(&server).await, before);

    // The server carries on.
    let mut client = orders_client(&server).await;
    assert_eq!(get(&mut client, "1").await.unwrap().id, "1");
}

/// One framing fault: what a client sends and how.
struct FramingFault {
    what: &'static str,
    content_type: &'static str,
    /// Extra request headers.
    headers: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
}

#[tokio::test]
async fn a_badly_framed_request_is_the_clients_fault_invalid_argument_and_creates_nothing() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    let message = new_order("1", &[("1", 1)]).encode_to_vec();
    let framed = frame(&message);
    let with_flag = |flag: u8| {
        let mut framed = framed.clone();
        framed[0] = flag;
        framed
    };
    let grpc = "application/grpc";
    let web_text = "application/grpc-web-text";
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    #[rustfmt::skip]
    let cases = [
        FramingFault { what: "a length prefix promising more bytes than the body has", content_type: grpc, headers: &[], body: framed[..framed.len() - 1].to_vec() },
        FramingFault { what: "a frame header cut short", content_type: grpc, headers: &[], body: framed[..3].to_vec() },
        FramingFault { what: "no message at all", content_type: grpc, headers: &[], body: Vec::new() },
        FramingFault { what: "the compressed flag with no grpc-encoding", content_type: grpc, headers: &[], body: with_flag(1) },
        FramingFault { what: "the compressed flag with grpc-encoding identity", content_type: grpc, headers: &[("grpc-encoding", "identity")], body: with_flag(1) },
        FramingFault { what: "a flag that is neither 0 nor 1", content_type: grpc, headers: &[], body: with_flag(2) },
        FramingFault { what: "grpc-web-text that is not base64", content_type: web_text, headers: &[("x-grpc-web", "1")], body: b"!!!!".to_vec() },
        FramingFault {
            what: "grpc-web-text with a dangling base64 quantum",
            content_type: web_text,
            headers: &[("x-grpc-web", "1")],
            body: format!("{}QUJD=", BASE64.encode(&framed)).into_bytes(),
        },
        FramingFault {
            what: "grpc-web with a truncated frame",
            content_type: "application/grpc-web+proto",
            headers: &[("x-grpc-web", "1")],
            body: framed[..framed.len() - 1].to_vec(),
        },
    ];
    let mut failures = Vec::new();
    for FramingFault {
        what,
        content_type,
        headers,
        body,
    } in cases
    {
        let client = if content_type == grpc { &h2 } else { &h1 };
        let url = server.url("/polyport.orders.v1.Orders/CreateOrder");
        let reply = raw_call(client, url, content_type, headers, body).await;
        let status = reply.grpc_status();
        let reason = status
            .get_error_details()
            .error_info()
            .map(|info| info.reason.clone());
        if reply.http_status != 200
            || status.code() != Code::InvalidArgument
            || reason.as_deref() != Some("malformed-body")
            || status.metadata().get(TRACE_ID).is_none()
        {
            failures.push(format!(
                "{what}: HTTP {}, {:?} {:?}, reason {reason:?}",
                reply.http_status,
                status.code(),
                status.message()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(order_count(&server).await, before, "nothing was created");

    // The server carries on.
    let mut client = orders_client(&server).await;
    assert_eq!(get(&mut client, "1").await.unwrap().id, "1");
}

#[tokio::test]
async fn a_bulk_stream_whose_last_frame_is_truncated_is_invalid_argument_and_creates_nothing() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    let one = frame(&new_order("1", &[("1", 1)]).encode_to_vec());
    let mut body = one.repeat(2);
    body.extend_from_slice(&one[..one.len() - 2]);
    let reply = raw_grpc(
        &server,
        "/polyport.orders.v1.Orders/BulkCreateOrders",
        &[],
        body,
    )
    .await;
    expect_error(
        &reply.grpc_status(),
        Code::InvalidArgument,
        "malformed-body",
    );
    assert_eq!(order_count(&server).await, before);
}

#[tokio::test]
async fn a_message_in_an_encoding_the_server_does_not_take_is_not_called_an_unknown_method() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    let message = frame(&new_order("1", &[("1", 1)]).encode_to_vec());
    let reply = raw_grpc(
        &server,
        "/polyport.orders.v1.Orders/CreateOrder",
        &[("grpc-encoding", "gzip")],
        message,
    )
    .await;
    let status = reply.grpc_status();
    // gRPC's status-code document: compression the server does not support is UNIMPLEMENTED,
    // and grpc-accept-encoding says what it takes.
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("gzip"), "{status:?}");
    assert!(
        status.metadata().get("grpc-accept-encoding").is_some(),
        "{status:?}"
    );
    let reason = status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone());
    assert_ne!(
        reason.as_deref(),
        Some("route-not-found"),
        "the method exists: {status:?}"
    );
    assert_eq!(order_count(&server).await, before);
}

#[tokio::test]
async fn codec_errors_carry_the_trace_id_and_error_info_like_every_other_error() {
    let mut config = Config::default();
    config.grpc.max_message_bytes = 1024;
    let server = TestServer::with_config(config).await;
    let too_big = new_order("1", &vec![("1", 1); 300]).encode_to_vec();
    // (what is sent, the code, the problem slug)
    let cases = [
        (
            frame(&too_big),
            Code::ResourceExhausted,
            "payload-too-large",
        ),
        (
            frame(&[0x00, 0xff, 0xff]),
            Code::InvalidArgument,
            "malformed-body",
        ),
    ];
    let mut failures = Vec::new();
    for (body, code, slug) in cases {
        let reply = raw_grpc(&server, "/polyport.orders.v1.Orders/CreateOrder", &[], body).await;
        let status = reply.grpc_status();
        let details = status.get_error_details();
        let reason = details.error_info().map(|info| info.reason.as_str());
        let trace_id = status.metadata().get(TRACE_ID);
        if status.code() != code || reason != Some(slug) || trace_id.is_none() {
            failures.push(format!(
                "expected {code:?} with ErrorInfo reason {slug:?} and a trace id; got {:?}, \
                 reason {reason:?}, trace id {trace_id:?} ({:?})",
                status.code(),
                status.message()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn an_unknown_method_or_service_is_unimplemented_from_the_error_table() {
    let server = TestServer::start().await;
    for path in [
        "/polyport.orders.v1.Orders/FlyToTheMoon",
        "/polyport.orders.v2.Orders/GetOrder",
        "/nope.Nope/Nope",
    ] {
        let message = GetOrderRequest { id: "1".into() }.encode_to_vec();
        let reply = raw_grpc(&server, path, &[], frame(&message)).await;
        assert_eq!(
            reply.http_status, 200,
            "{path}: gRPC answers in its own form"
        );
        let status = reply.grpc_status();
        expect_error(&status, Code::Unimplemented, "route-not-found");
    }
}

// ---- 8. health and reflection ----

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_orders_service() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.grpc_channel().await);
    for service in ["", SERVICE] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    let status = error(
        health
            .check(HealthCheckRequest {
                service: "polyport.nope.v1.Nope".into(),
            })
            .await,
    );
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    let server = TestServer::start().await;
    let expected = [SERVICE, "grpc.health.v1.Health"];

    let v1 = {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

        let mut client = ServerReflectionClient::new(server.grpc_channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match next(&mut replies, "reflection v1").await.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("v1: {other:?}"),
        }
    };
    let v1alpha = {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

        let mut client = ServerReflectionClient::new(server.grpc_channel().await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match next(&mut replies, "reflection v1alpha")
            .await
            .message_response
        {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("v1alpha: {other:?}"),
        }
    };
    for (version, services) in [("v1", v1), ("v1alpha", v1alpha)] {
        for service in expected {
            assert!(
                services.iter().any(|s| s == service),
                "{version}: {service} not in {services:?}"
            );
        }
    }
}

// ---- 9. gRPC-Web over HTTP/1.1, on the same port ----

/// Decodes a grpc-web-text body: base64 chunks, each padded on its own.
fn decode_web_text(body: &[u8]) -> Vec<u8> {
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    assert_eq!(
        text.len() % 4,
        0,
        "padded base64: {}",
        String::from_utf8_lossy(&text)
    );
    text.chunks(4)
        .flat_map(|quantum| BASE64.decode(quantum).expect("base64"))
        .collect()
}

#[tokio::test]
async fn grpc_web_over_http1_calls_the_same_service() {
    let server = TestServer::start().await;
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let framed = frame(&GetOrderRequest { id: "1".into() }.encode_to_vec());
    let expected = {
        let mut client = orders_client(&server).await;
        get(&mut client, "1").await.unwrap()
    };

    // (content type, whether bodies are base64 text)
    let cases = [
        ("application/grpc-web+proto", false),
        ("application/grpc-web-text", true),
    ];
    for (content_type, text) in cases {
        let body = if text {
            BASE64.encode(&framed).into_bytes()
        } else {
            framed.clone()
        };
        let reply = raw_call(
            &h1,
            server.url("/polyport.orders.v1.Orders/GetOrder"),
            content_type,
            // tonic-web answers in the encoding the client accepts, as grpc-web clients say.
            &[("x-grpc-web", "1"), ("accept", content_type)],
            body,
        )
        .await;
        assert_eq!(reply.http_status, 200, "{content_type}");
        let returned = reply.headers["content-type"].to_str().unwrap();
        assert!(
            returned.starts_with(content_type.trim_end_matches("+proto")),
            "{content_type} -> {returned}"
        );
        trace_id_of(
            &tonic::metadata::MetadataMap::from_headers(reply.headers.clone()),
            content_type,
        );

        let frames = if text {
            frames(&decode_web_text(&reply.body))
        } else {
            frames(&reply.body)
        };
        let [(0x00, message), (0x80, trailers)] = frames.as_slice() else {
            panic!("{content_type}: expected a message and a trailer frame, got {frames:?}");
        };
        let order = pb::Order::decode(message.as_slice()).expect("an Order");
        assert_eq!(order, expected, "{content_type}");
        let trailers = String::from_utf8(trailers.clone()).expect("text trailers");
        let lines: Vec<String> = trailers
            .split("\r\n")
            .map(|l| l.to_ascii_lowercase().replace(": ", ":"))
            .collect();
        assert!(lines.iter().any(|l| l == "grpc-status:0"), "{trailers:?}");
    }
}
