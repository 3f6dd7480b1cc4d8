//! Authentication and authorization, black box: the real server with authentication on and
//! three API keys (an admin, a readonly key, and a customer key bound to customer 1), spoken to
//! over real sockets with real clients: reqwest for REST, GraphQL over HTTP, SSE and long
//! polling, tonic (credentials added by an interceptor, as a real client would) for gRPC, and
//! tokio-tungstenite for both WebSocket endpoints.
//!
//! What the tests prove, in order:
//! 1. Every protocol refuses a missing or invalid credential in its own idiom.
//! 2. Credentials work in every place they are documented, and `?access_token=` only where it is.
//! 3. The open routes stay open.
//! 4. A customer sees only its own orders, customer record and events, over every protocol, and
//!    another customer's order is *not found*, never *forbidden*.
//! 5. A customer creates and cancels its own orders and nothing more; readonly writes nothing;
//!    webhook management is for admins; idempotency keys belong to the principal that sent them.
//!
//! Which demo orders belong to customer 1 is asked of the server (with the admin key), not
//! assumed. Each test runs its own server, so the event log starts empty (the demo data is
//! loaded straight into the store) and tests never see each other's writes.
//!
//! Nothing here asserts how long something takes: `auth.first_message_timeout` is short so that
//! the WebSocket deadlines are reached quickly, and every wait is bounded so that a bug fails a
//! test instead of hanging it.

mod common;

use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use common::TestServer;
use futures_util::{SinkExt, Stream, StreamExt};
use hmac::{Hmac, Mac};
use polyport::config::{ApiKeyConfig, Config, DEMO_INBOUND_SECRET};
use polyport::protocols::grpc::pb::orders_client::OrdersClient;
use polyport::protocols::grpc::pb::{
    AddItemRequest, CancelOrderRequest, CreateOrderRequest, DeleteOrderRequest, GetCustomerRequest,
    GetOrderRequest, ListOrdersRequest, NewItem, OrderUpdate, SessionCommand, UpdateOrderRequest,
    WatchOrdersRequest, session_command, session_message, watch_orders_response,
};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tonic_types::StatusExt;

// ---- the keys and the server ----

const ADMIN: &str = "admin-key-of-the-auth-tests";
const READONLY: &str = "readonly-key-of-the-auth-tests";
/// Bound to customer [`CUSTOMER_ID`].
const CUSTOMER: &str = "customer-key-of-the-auth-tests";
const CUSTOMER_ID: &str = "1";
/// A well-formed key that no one configured.
const BOGUS: &str = "a-key-that-nobody-configured";

/// Short, so that the tests of the WebSocket deadlines end quickly.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a test waits for something it expects before failing rather than hanging.
const PATIENCE: Duration = Duration::from_secs(5);
const EVENT_STREAM: &str = "text/event-stream";
const TRACE_ID: &str = "x-trace-id";

fn api_key(name: &str, role: &str, customer_id: Option<&str>, secret: &str) -> ApiKeyConfig {
    ApiKeyConfig {
        name: name.into(),
        role: role.into(),
        customer_id: customer_id.map(Into::into),
        secret: Some(secret.into()),
        sha256: None,
    }
}

/// The demo data, authentication on, the three keys.
fn auth_config() -> Config {
    let mut config = Config::default();
    config.auth.api_keys = vec![
        api_key("root", "admin", None, ADMIN),
        api_key("auditor", "readonly", None, READONLY),
        api_key("ada", "customer", Some(CUSTOMER_ID), CUSTOMER),
    ];
    config.auth.first_message_timeout = FIRST_MESSAGE_TIMEOUT;
    // Rate limits have their own tests (tests/limits.rs); here they would only get in the way.
    config.rate_limit.enabled = false;
    config
}

async fn start() -> TestServer {
    TestServer::with_auth(auth_config()).await
}

/// What a request presents.
#[derive(Debug, Clone, Copy)]
enum Credential {
    Nothing,
    /// `Authorization: Bearer <key>`.
    Bearer(&'static str),
    /// `X-API-Key: <key>`.
    ApiKey(&'static str),
    /// An `Authorization` header exactly as given.
    Authorization(&'static str),
}

impl Credential {
    /// The header it travels in, if any.
    fn header(self) -> Option<(&'static str, String)> {
        match self {
            Credential::Nothing => None,
            Credential::Bearer(key) => Some(("authorization", format!("Bearer {key}"))),
            Credential::ApiKey(key) => Some(("x-api-key", key.to_owned())),
            Credential::Authorization(value) => Some(("authorization", value.to_owned())),
        }
    }

    /// True when something is presented. Among the refused credentials these are the wrong
    /// ones, whose challenge says `error="invalid_token"`.
    fn is_present(self) -> bool {
        !matches!(self, Credential::Nothing)
    }

    fn apply(self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.header() {
            Some((name, value)) => request.header(name, value),
            None => request,
        }
    }
}

/// The credentials every protected endpoint must refuse.
const REFUSED: [Credential; 5] = [
    Credential::Nothing,
    Credential::Bearer(BOGUS),
    Credential::ApiKey(BOGUS),
    Credential::Authorization("Basic cm9vdDpyb290"),
    Credential::Authorization("Bearer"),
];

// ---- REST support ----

/// What the server answered to one HTTP request.
#[derive(Debug)]
struct Reply {
    context: String,
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    async fn of(request: reqwest::RequestBuilder) -> Self {
        let response = request.send().await.expect("request");
        let context = format!("{}", response.url());
        Self {
            context,
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII"))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.context, self.text))
    }

    /// The JSON body, after checking the status.
    fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}: {}", self.context, self.text);
        self.json()
    }

    /// Asserts an RFC 9457 problem with `status` and problem `slug`, whose trace id is the
    /// response's; returns the body.
    fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(self.status, status, "{}: {}", self.context, self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.context
        );
        let body = self.json();
        assert_eq!(body["type"], format!("/problems/{slug}"), "{body}");
        assert_eq!(body["status"], status, "{body}");
        let trace_id = self
            .header(TRACE_ID)
            .unwrap_or_else(|| panic!("{}: no {TRACE_ID}", self.context));
        assert_eq!(body["trace_id"], trace_id, "{body}");
        body
    }

    /// Asserts the 401 the gate answers for `credential`: problem+json, trace id, and an RFC
    /// 6750 challenge that says `invalid_token` when a credential was presented.
    fn unauthenticated(&self, credential: Credential) {
        self.problem(401, "unauthenticated");
        self.bearer_challenge(credential);
    }

    fn bearer_challenge(&self, credential: Credential) {
        let challenge = self
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{} ({credential:?}): no WWW-Authenticate", self.context));
        assert!(
            challenge.starts_with(r#"Bearer realm="polyport""#),
            "{} ({credential:?}): {challenge}",
            self.context
        );
        assert_eq!(
            challenge.contains(r#"error="invalid_token""#),
            credential.is_present(),
            "{} ({credential:?}): {challenge}",
            self.context
        );
    }
}

/// `method path` with `credential` (and a JSON `body` if given).
async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    credential: Credential,
    body: Option<Value>,
) -> Reply {
    let mut request = credential.apply(server.client.request(method, server.url(path)));
    if let Some(body) = body {
        request = request.json(&body);
    }
    Reply::of(request).await
}

async fn get_as(server: &TestServer, key: &'static str, path: &str) -> Reply {
    call(server, Method::GET, path, Credential::Bearer(key), None).await
}

/// The ids and customers of a REST list page that must hold every row.
fn rows(page: &Value) -> Vec<(String, String)> {
    assert_eq!(page["has_more"], false, "{page}");
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array: {page}"))
        .iter()
        .map(|row| {
            let id = row["id"].as_str().expect("a string id").to_owned();
            let customer = row["customer_id"].as_str().unwrap_or_default().to_owned();
            (id, customer)
        })
        .collect()
}

fn ids(rows: &[(String, String)]) -> Vec<String> {
    rows.iter().map(|(id, _)| id.clone()).collect()
}

/// The demo orders, as the admin sees them.
#[derive(Debug)]
struct Demo {
    /// Customer 1's orders, in id order.
    own: Vec<String>,
    /// Customer 1's pending orders (which every role's writes can act on).
    own_pending: Vec<String>,
    /// Every other customer's orders.
    others: Vec<String>,
    /// An order of another customer that can still move on (pending or paid)...
    other: String,
    /// ...its status...
    other_status: String,
    /// ...and its customer.
    other_customer: String,
    /// How many orders there are in all.
    total: usize,
}

async fn demo(server: &TestServer) -> Demo {
    let page = get_as(server, ADMIN, "/v1/orders?limit=100")
        .await
        .expect(200);
    let all = page["data"].as_array().expect("data").clone();
    assert_eq!(page["has_more"], false, "{page}");
    let field = |order: &Value, name: &str| order[name].as_str().expect(name).to_owned();
    let own: Vec<&Value> = all
        .iter()
        .filter(|o| o["customer_id"] == CUSTOMER_ID)
        .collect();
    let others: Vec<&Value> = all
        .iter()
        .filter(|o| o["customer_id"] != CUSTOMER_ID)
        .collect();
    let movable = others
        .iter()
        .find(|o| o["status"] == "pending" || o["status"] == "paid")
        .expect("another customer has a pending or paid order");
    let demo = Demo {
        own: own.iter().map(|o| field(o, "id")).collect(),
        own_pending: own
            .iter()
            .filter(|o| o["status"] == "pending")
            .map(|o| field(o, "id"))
            .collect(),
        others: others.iter().map(|o| field(o, "id")).collect(),
        other: field(movable, "id"),
        other_status: field(movable, "status"),
        other_customer: field(movable, "customer_id"),
        total: all.len(),
    };
    assert!(
        demo.own_pending.len() >= 3,
        "the demo gives customer 1 three pending orders: {demo:?}"
    );
    demo
}

/// The status an order moves on to next (for the admin's changes).
fn next_status(status: &str) -> &'static str {
    match status {
        "pending" => "paid",
        "paid" => "shipped",
        other => panic!("{other} is not a status the tests move on from"),
    }
}

/// The admin moves `id` on from `status`, over REST.
async fn admin_moves_on(server: &TestServer, id: &str, status: &str) {
    call(
        server,
        Method::PATCH,
        &format!("/v1/orders/{id}"),
        Credential::Bearer(ADMIN),
        Some(json!({ "status": next_status(status) })),
    )
    .await
    .expect(200);
}

/// The admin changes another customer's order first, then one of customer 1's; returns the id
/// of customer 1's. A customer's stream must deliver that one and never the first.
async fn admin_changes_another_customers_order_then_its_own(
    server: &TestServer,
    demo: &Demo,
) -> String {
    admin_moves_on(server, &demo.other, &demo.other_status).await;
    let own = demo.own_pending[0].clone();
    admin_moves_on(server, &own, "pending").await;
    own
}

/// `/readyz`: (orders in the store, last event seq).
async fn store_state(server: &TestServer) -> (u64, u64) {
    let ready = Reply::of(server.get("/readyz").bearer_auth(ADMIN))
        .await
        .expect(200);
    (
        ready["orders"].as_u64().expect("orders"),
        ready["last_event_seq"].as_u64().expect("last_event_seq"),
    )
}

fn one_item() -> Value {
    json!([{ "product_id": "1", "quantity": 1 }])
}

// ---- gRPC support ----

/// Adds a credential to every call's metadata, as a real client's interceptor does.
#[derive(Debug, Clone, Copy)]
struct WithCredential(Credential);

impl Interceptor for WithCredential {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some((name, value)) = self.0.header() {
            let value = value.parse().map_err(|_| Status::internal("metadata"))?;
            request.metadata_mut().insert(name, value);
        }
        Ok(request)
    }
}

type Client = OrdersClient<InterceptedService<Channel, WithCredential>>;

async fn grpc(server: &TestServer, credential: Credential) -> Client {
    OrdersClient::with_interceptor(server.grpc_channel().await, WithCredential(credential))
}

async fn grpc_as(server: &TestServer, key: &'static str) -> Client {
    grpc(server, Credential::Bearer(key)).await
}

fn new_order(customer_id: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        customer_id: customer_id.to_owned(),
        items: vec![NewItem {
            product_id: "1".into(),
            quantity: 1,
        }],
    }
}

fn get_order(id: &str) -> GetOrderRequest {
    GetOrderRequest { id: id.to_owned() }
}

/// The status of a call that must fail.
fn failed<T: std::fmt::Debug>(result: Result<tonic::Response<T>, Status>, context: &str) -> Status {
    match result {
        Ok(response) => panic!(
            "{context}: expected a failure, got {:?}",
            response.get_ref()
        ),
        Err(status) => status,
    }
}

/// The status a streaming call fails with, whether at the call or on its first message.
async fn failed_stream<T: std::fmt::Debug>(
    result: Result<tonic::Response<Streaming<T>>, Status>,
    context: &str,
) -> Status {
    let mut stream = match result {
        Err(status) => return status,
        Ok(response) => response.into_inner(),
    };
    match tokio::time::timeout(PATIENCE, stream.message()).await {
        Ok(Err(status)) => status,
        other => panic!("{context}: expected the stream to fail, got {other:?}"),
    }
}

/// Every message of a stream that must end cleanly.
async fn collect<T>(
    result: Result<tonic::Response<Streaming<T>>, Status>,
    context: &str,
) -> Vec<T> {
    let mut stream = result
        .unwrap_or_else(|status| panic!("{context}: {status:?}"))
        .into_inner();
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

/// The next message of a stream, which must come.
async fn next_message<T>(stream: &mut Streaming<T>, context: &str) -> T {
    match tokio::time::timeout(PATIENCE, stream.message()).await {
        Err(_) => panic!("{context}: no message within {PATIENCE:?}"),
        Ok(Err(status)) => panic!("{context}: the stream failed: {status:?}"),
        Ok(Ok(None)) => panic!("{context}: the stream ended"),
        Ok(Ok(Some(message))) => message,
    }
}

/// Asserts `status` is the table's answer for problem `slug` with gRPC `code`: an ErrorInfo
/// naming the slug and a trace id in the metadata.
fn assert_grpc_error(status: &Status, code: Code, slug: &str, context: &str) {
    assert_eq!(status.code(), code, "{context}: {status:?}");
    assert!(
        status.metadata().get(TRACE_ID).is_some(),
        "{context}: no {TRACE_ID}: {status:?}"
    );
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("{context}: no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, slug, "{context}: {status:?}");
}

// ---- GraphQL support ----

/// POSTs a GraphQL request with `credential`.
async fn graphql(
    server: &TestServer,
    credential: Credential,
    query: &str,
    variables: Value,
) -> Reply {
    Reply::of(
        credential.apply(
            server
                .post("/graphql")
                .header(ACCEPT, "application/json")
                .json(&json!({ "query": query, "variables": variables })),
        ),
    )
    .await
}

/// Runs `query` as `key`; returns its `data`, asserting there were no errors.
async fn graphql_data(
    server: &TestServer,
    key: &'static str,
    query: &str,
    variables: Value,
) -> Value {
    let body = graphql(server, Credential::Bearer(key), query, variables)
        .await
        .expect(200);
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

/// Runs `query` as `key`, which must fail with `code`; returns the body.
async fn graphql_error(
    server: &TestServer,
    key: &'static str,
    query: &str,
    variables: Value,
    code: &str,
) -> Value {
    let body = graphql(server, Credential::Bearer(key), query, variables)
        .await
        .expect(200);
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: no errors: {body}"));
    assert_eq!(
        errors[0]["extensions"]["code"], code,
        "{query} as {key}: {body}"
    );
    body
}

fn node_ids(connection: &Value) -> Vec<String> {
    connection["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes: {connection}"))
        .iter()
        .map(|n| n["id"].as_str().expect("string id").to_owned())
        .collect()
}

const CREATE_ORDER: &str = "mutation($input: CreateOrderInput!) {
    createOrder(input: $input) { order { id customerId } }
}";
const CANCEL_ORDER: &str = r#"mutation($id: ID!) {
    cancelOrder(input: { id: $id, reason: "changed my mind" }) { order { id status } }
}"#;
const UPDATE_ORDER: &str = "mutation($id: ID!) {
    updateOrder(input: { id: $id, status: PAID }) { order { id } }
}";
const ADD_ITEM: &str = r#"mutation($id: ID!) {
    addItem(input: { orderId: $id, productId: "1", quantity: 1 }) { item { id } }
}"#;
const DELETE_ORDER: &str = "mutation($id: ID!) { deleteOrder(input: { id: $id }) { deletedId } }";

fn create_input(customer_id: &str) -> Value {
    json!({ "input": { "customerId": customer_id, "items": [{ "productId": "1", "quantity": 1 }] } })
}

// ---- SSE support ----

/// Reads Server-Sent Events as they arrive and returns the data of each event frame (frames
/// without an `event:` line, the hello and keep-alives, are skipped).
struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    unread: Vec<u8>,
    context: String,
}

impl Sse {
    /// Sends `request` as `EventSource` does; `Err` says what came back instead of a stream.
    async fn try_open(request: reqwest::RequestBuilder) -> Result<Self, String> {
        let response = request
            .header(ACCEPT, EVENT_STREAM)
            .send()
            .await
            .expect("request");
        let context = response.url().to_string();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().expect("ASCII").to_owned())
            .unwrap_or_default();
        if status != 200 || !content_type.starts_with(EVENT_STREAM) {
            let text = response.text().await.unwrap_or_default();
            return Err(format!("{status} {content_type}: {text}"));
        }
        Ok(Self {
            body: Box::pin(response.bytes_stream()),
            unread: Vec::new(),
            context,
        })
    }

    async fn open(request: reqwest::RequestBuilder) -> Self {
        Self::try_open(request)
            .await
            .unwrap_or_else(|why| panic!("expected an event stream, got {why}"))
    }

    async fn next_event(&mut self) -> Value {
        loop {
            if let Some(end) = self.unread.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.unread.drain(..end + 2).collect();
                let frame = String::from_utf8(frame).expect("SSE is UTF-8");
                let mut named = false;
                let mut data = String::new();
                for line in frame.lines() {
                    if line.starts_with("event:") {
                        named = true;
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if named {
                    return serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {data}", self.context));
                }
                continue;
            }
            match tokio::time::timeout(PATIENCE, self.body.next()).await {
                Err(_) => panic!("{}: no event within {PATIENCE:?}", self.context),
                Ok(None) => panic!("{}: the stream ended", self.context),
                Ok(Some(Err(error))) => panic!("{}: {error}", self.context),
                Ok(Some(Ok(chunk))) => self.unread.extend_from_slice(&chunk),
            }
        }
    }
}

// ---- WebSocket support ----

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The subprotocol of `/graphql/ws` these tests speak.
const TRANSPORT_WS: &str = "graphql-transport-ws";

/// Opens `ws://…{path}` with `credential` in the upgrade request (and `subprotocol`, if any).
/// `Err` holds the HTTP status of a refused upgrade.
async fn ws_open(
    server: &TestServer,
    path: &str,
    credential: Credential,
    subprotocol: Option<&str>,
) -> Result<Ws, u16> {
    let mut request = format!("ws://{}{path}", server.addr)
        .into_client_request()
        .expect("a WebSocket request");
    if let Some((name, value)) = credential.header() {
        request
            .headers_mut()
            .insert(name, value.parse().expect("a header value"));
    }
    if let Some(subprotocol) = subprotocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            subprotocol.parse().expect("a header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(error) => panic!("{path}: the handshake failed: {error}"),
    }
}

async fn ws_connect(server: &TestServer, path: &str, credential: Credential) -> Ws {
    ws_open(server, path, credential, None)
        .await
        .unwrap_or_else(|status| panic!("{path}: the upgrade was refused with {status}"))
}

async fn gql_connect(server: &TestServer, path: &str, credential: Credential) -> Ws {
    ws_open(server, path, credential, Some(TRANSPORT_WS))
        .await
        .unwrap_or_else(|status| panic!("{path}: the upgrade was refused with {status}"))
}

async fn ws_send(ws: &mut Ws, message: Value) {
    ws.send(Message::text(message.to_string()))
        .await
        .expect("send");
}

/// The next JSON message, skipping pings; a close or an end fails the test.
async fn ws_next(ws: &mut Ws, context: &str) -> Value {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Err(_) => panic!("{context}: no message within {PATIENCE:?}"),
            Ok(None) => panic!("{context}: the connection ended"),
            Ok(Some(Err(error))) => panic!("{context}: the connection failed: {error}"),
            Ok(Some(Ok(Message::Text(text)))) => {
                return serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("{context}: not JSON ({e}): {text}"));
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(other))) => panic!("{context}: expected a JSON message, got {other:?}"),
        }
    }
}

/// Reads until the server's close frame; returns its code and reason, and the JSON messages
/// that came before it.
async fn ws_close(ws: &mut Ws, context: &str) -> (u16, String, Vec<Value>) {
    let mut messages = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Err(_) => panic!("{context}: no close within {PATIENCE:?}"),
            Ok(None) => panic!("{context}: the connection ended without a close frame"),
            Ok(Some(Err(error))) => panic!("{context}: the connection failed: {error}"),
            Ok(Some(Ok(Message::Close(frame)))) => {
                let frame = frame.unwrap_or_else(|| panic!("{context}: a close without a code"));
                return (frame.code.into(), frame.reason.to_string(), messages);
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                messages.push(serde_json::from_str(text.as_str()).expect("JSON"));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Asserts the `/v1/ws` connection answers a ping (so it is authenticated).
async fn assert_ws_usable(ws: &mut Ws, context: &str) {
    ws_send(ws, json!({ "op": "ping", "id": "p" })).await;
    assert_eq!(
        ws_next(ws, context).await,
        json!({ "op": "pong", "id": "p" }),
        "{context}"
    );
}

/// Sends `message` on `/v1/ws` and returns the answer.
async fn ws_ask(ws: &mut Ws, message: Value) -> Value {
    let context = message.to_string();
    ws_send(ws, message).await;
    ws_next(ws, &context).await
}

/// Asserts a `/v1/ws` answer is an `error` for command `id` with HTTP `status` and `slug`.
fn assert_ws_error(reply: &Value, id: &str, status: u16, slug: &str) {
    assert_eq!(reply["op"], "error", "{reply}");
    assert_eq!(reply["id"], id, "{reply}");
    assert_eq!(reply["status"], status, "{reply}");
    assert_eq!(reply["type"], format!("/problems/{slug}"), "{reply}");
}

/// Sends `connection_init` with `payload` on `/graphql/ws` and returns the server's answer.
async fn gql_init(ws: &mut Ws, payload: Value) -> Value {
    ws_send(ws, json!({ "type": "connection_init", "payload": payload })).await;
    ws_next(ws, "connection_init").await
}

// ---- inbound webhook signatures ----

/// Standard Webhooks: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
fn sign(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

// ======== 1. every protocol refuses missing and invalid credentials ========

#[tokio::test]
async fn rest_refuses_missing_and_invalid_credentials_with_a_401_problem_and_a_bearer_challenge() {
    let server = start().await;
    let requests = [
        (Method::GET, "/v1/orders"),
        (Method::GET, "/v1/orders/1"),
        (Method::POST, "/v1/orders"),
        (Method::PATCH, "/v1/orders/1"),
        (Method::DELETE, "/v1/orders/1"),
        (Method::POST, "/v1/orders/1/cancellations"),
        (Method::GET, "/v1/customers"),
        (Method::GET, "/v1/products"),
        (Method::GET, "/v1/webhook-endpoints"),
        (Method::GET, "/v1/nothing-here"),
    ];
    for (method, path) in requests {
        for credential in REFUSED {
            let reply = call(&server, method.clone(), path, credential, None).await;
            reply.unauthenticated(credential);
        }
    }
    assert_eq!(store_state(&server).await.1, 0, "nothing was written");
}

#[tokio::test]
async fn grpc_refuses_missing_and_invalid_credentials_with_unauthenticated_on_every_call_kind() {
    let server = start().await;
    for credential in REFUSED {
        let mut client = grpc(&server, credential).await;
        let context = |call: &str| format!("{call} with {credential:?}");

        let unary = failed(client.get_order(get_order("1")).await, &context("GetOrder"));
        assert_grpc_error(
            &unary,
            Code::Unauthenticated,
            "unauthenticated",
            &context("GetOrder"),
        );

        let listed = failed_stream(
            client.list_orders(ListOrdersRequest::default()).await,
            &context("ListOrders"),
        )
        .await;
        assert_grpc_error(
            &listed,
            Code::Unauthenticated,
            "unauthenticated",
            &context("ListOrders"),
        );

        let watched = failed_stream(
            client.watch_orders(WatchOrdersRequest::default()).await,
            &context("WatchOrders"),
        )
        .await;
        assert_grpc_error(
            &watched,
            Code::Unauthenticated,
            "unauthenticated",
            &context("WatchOrders"),
        );

        let bulk = failed(
            client
                .bulk_create_orders(tokio_stream::iter(vec![new_order(CUSTOMER_ID)]))
                .await,
            &context("BulkCreateOrders"),
        );
        assert_grpc_error(
            &bulk,
            Code::Unauthenticated,
            "unauthenticated",
            &context("BulkCreateOrders"),
        );

        let session = failed_stream(
            client
                .order_session(tokio_stream::iter(vec![SessionCommand {
                    id: "c1".into(),
                    command: Some(session_command::Command::GetOrder(get_order("1"))),
                }]))
                .await,
            &context("OrderSession"),
        )
        .await;
        assert_grpc_error(
            &session,
            Code::Unauthenticated,
            "unauthenticated",
            &context("OrderSession"),
        );
    }
    assert_eq!(store_state(&server).await, (24, 0), "nothing was written");
}

#[tokio::test]
async fn graphql_over_http_refuses_missing_and_invalid_credentials_with_401_and_unauthenticated() {
    let server = start().await;
    for credential in REFUSED {
        // A query over POST, a mutation over POST, and a query over GET.
        let requests = [
            server
                .post("/graphql")
                .header(ACCEPT, "application/json")
                .json(&json!({ "query": "{ orders(first: 1) { totalCount } }" })),
            server
                .post("/graphql")
                .header(ACCEPT, "application/json")
                .json(&json!({ "query": CREATE_ORDER, "variables": create_input(CUSTOMER_ID) })),
            server
                .get("/graphql?query=%7B%20order(id%3A%20%221%22)%20%7B%20id%20%7D%20%7D")
                .header(ACCEPT, "application/json"),
        ];
        for request in requests {
            let reply = Reply::of(credential.apply(request)).await;
            let body = reply.expect(401);
            let error = &body["errors"][0];
            assert_eq!(
                error["extensions"]["code"], "UNAUTHENTICATED",
                "{credential:?}: {body}"
            );
            assert_eq!(
                error["extensions"]["trace_id"].as_str(),
                reply.header(TRACE_ID),
                "{credential:?}: {body}"
            );
            assert!(body.get("data").is_none_or(Value::is_null), "{body}");
            reply.bearer_challenge(credential);
        }
    }
    assert_eq!(store_state(&server).await.1, 0, "nothing was written");
}

#[tokio::test]
async fn sse_and_long_polling_refuse_missing_and_invalid_credentials_with_401() {
    let server = start().await;
    for path in [
        "/v1/events",
        "/v1/orders/1/events",
        "/v1/events/poll?timeout=1s",
    ] {
        for credential in REFUSED {
            let request = credential.apply(server.get(path).header(ACCEPT, EVENT_STREAM));
            Reply::of(request).await.unauthenticated(credential);
        }
        // A wrong key in the query parameter these endpoints take is refused the same way.
        let separator = if path.contains('?') { '&' } else { '?' };
        let with_token = format!("{path}{separator}access_token={BOGUS}");
        let reply = Reply::of(server.get(&with_token).header(ACCEPT, EVENT_STREAM)).await;
        reply.unauthenticated(Credential::Bearer(BOGUS));
    }
    server
        .wait_for_streams(0, "no refused request holds a stream")
        .await;
}

#[tokio::test]
async fn a_v1_websocket_without_credentials_is_closed_with_4401_at_its_first_other_message() {
    let first_messages = [
        json!({ "op": "ping", "id": "p1" }),
        json!({ "op": "subscribe", "id": "s1", "topic": "orders" }),
        json!({ "op": "get_order", "id": "g1", "order_id": "1" }),
        json!({ "op": "create_order", "id": "c1", "customer_id": "1", "items": one_item() }),
    ];
    let server = start().await;
    for message in first_messages {
        let mut ws = ws_connect(&server, "/v1/ws", Credential::Nothing).await;
        ws_send(&mut ws, message.clone()).await;
        let (code, reason, answers) = ws_close(&mut ws, &message.to_string()).await;
        assert_eq!(code, 4401, "{message}: {reason}");
        assert!(
            answers.is_empty(),
            "{message}: nothing is answered first: {answers:?}"
        );
    }
    assert_eq!(store_state(&server).await.1, 0, "nothing was written");
}

#[tokio::test]
async fn a_v1_websocket_auth_op_with_a_bad_token_is_closed_with_4401() {
    let server = start().await;
    for token in [BOGUS, "", "Bearer"] {
        let mut ws = ws_connect(&server, "/v1/ws", Credential::Nothing).await;
        ws_send(&mut ws, json!({ "op": "auth", "token": token })).await;
        let (code, reason, answers) = ws_close(&mut ws, token).await;
        assert_eq!(code, 4401, "{token:?}: {reason}");
        assert!(answers.is_empty(), "{token:?}: {answers:?}");
    }
}

#[tokio::test]
async fn a_silent_v1_websocket_is_closed_with_4401_after_the_first_message_timeout() {
    let server = start().await;
    let mut ws = ws_connect(&server, "/v1/ws", Credential::Nothing).await;
    let (code, reason, answers) = ws_close(&mut ws, "silence").await;
    assert_eq!(code, 4401, "{reason}");
    assert!(reason.contains("timeout"), "{reason}");
    assert!(answers.is_empty(), "{answers:?}");
    server
        .wait_for_streams(0, "the closed session let go of its place")
        .await;
}

#[tokio::test]
async fn a_websocket_upgrade_with_wrong_credentials_is_refused_with_401_before_upgrading() {
    let server = start().await;
    let wrong = [Credential::Bearer(BOGUS), Credential::ApiKey(BOGUS)];
    for path in ["/v1/ws", "/graphql/ws"] {
        for credential in wrong {
            let result = ws_open(&server, path, credential, Some(TRANSPORT_WS)).await;
            assert_eq!(result.err(), Some(401), "{path} with {credential:?}");
        }
        let with_token = format!("{path}?access_token={BOGUS}");
        let result = ws_open(
            &server,
            &with_token,
            Credential::Nothing,
            Some(TRANSPORT_WS),
        )
        .await;
        assert_eq!(result.err(), Some(401), "{with_token}");
    }
}

#[tokio::test]
async fn graphql_ws_with_a_bad_connection_init_token_is_closed_with_4401() {
    let server = start().await;
    let payloads = [
        json!({ "authorization": format!("Bearer {BOGUS}") }),
        json!({ "authorization": BOGUS }),
        json!({ "token": BOGUS }),
        json!({}),
    ];
    // The current subprotocol, and the legacy one (which reports the refusal in a
    // `connection_error` message before the close).
    for subprotocol in [TRANSPORT_WS, "graphql-ws"] {
        for payload in &payloads {
            let context = format!("{subprotocol} {payload}");
            let mut ws = ws_open(
                &server,
                "/graphql/ws",
                Credential::Nothing,
                Some(subprotocol),
            )
            .await
            .unwrap_or_else(|status| panic!("{context}: refused with {status}"));
            ws_send(
                &mut ws,
                json!({ "type": "connection_init", "payload": payload }),
            )
            .await;
            let (code, reason, answers) = ws_close(&mut ws, &context).await;
            assert_eq!(code, 4401, "{context}: {reason}");
            assert!(
                answers.iter().all(|a| a["type"] != "connection_ack"),
                "{context}: {answers:?}"
            );
        }
    }
}

#[tokio::test]
async fn graphql_ws_without_a_connection_init_in_time_is_closed_with_4408() {
    let server = start().await;
    let mut ws = gql_connect(&server, "/graphql/ws", Credential::Nothing).await;
    let (code, reason, answers) = ws_close(&mut ws, "silence").await;
    assert_eq!(code, 4408, "{reason}");
    assert!(answers.is_empty(), "{answers:?}");
}

#[tokio::test]
async fn graphql_ws_refuses_a_subscribe_before_an_authenticated_connection_init() {
    let server = start().await;
    let mut ws = gql_connect(&server, "/graphql/ws", Credential::Nothing).await;
    ws_send(
        &mut ws,
        json!({ "type": "subscribe", "id": "s1", "payload": { "query": "subscription { orderEvents { __typename } }" } }),
    )
    .await;
    let (code, reason, answers) = ws_close(&mut ws, "subscribe first").await;
    // graphql-transport-ws: 4401 Unauthorized for a subscribe before the ack.
    assert_eq!(code, 4401, "{reason}");
    assert!(
        answers.iter().all(|a| a["type"] != "next"),
        "no result before authentication: {answers:?}"
    );
}

// ======== 2. credentials work wherever they are documented ========

#[tokio::test]
async fn rest_takes_a_key_as_a_bearer_token_or_in_x_api_key() {
    let server = start().await;
    let accepted = [
        Credential::Bearer(ADMIN),
        Credential::Authorization("bearer admin-key-of-the-auth-tests"),
        Credential::ApiKey(ADMIN),
        Credential::ApiKey(CUSTOMER),
        Credential::Bearer(READONLY),
    ];
    for credential in accepted {
        let order = call(&server, Method::GET, "/v1/orders/1", credential, None).await;
        assert_eq!(order.expect(200)["id"], "1", "{credential:?}");
    }
}

#[tokio::test]
async fn access_token_in_the_query_is_not_accepted_on_plain_rest_requests() {
    let server = start().await;
    for (method, path) in [
        (Method::GET, "/v1/orders"),
        (Method::GET, "/v1/orders/1"),
        (Method::GET, "/v1/customers"),
        (Method::POST, "/v1/orders"),
    ] {
        let url = format!("{path}?access_token={ADMIN}");
        let reply = Reply::of(
            server
                .client
                .request(method.clone(), server.url(&url))
                .json(&json!({ "customer_id": CUSTOMER_ID, "items": one_item() })),
        )
        .await;
        reply.unauthenticated(Credential::Nothing);
    }
    // Nor on GraphQL over HTTP.
    let reply = Reply::of(
        server
            .post(&format!("/graphql?access_token={ADMIN}"))
            .header(ACCEPT, "application/json")
            .json(&json!({ "query": "{ order(id: \"1\") { id } }" })),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(store_state(&server).await.1, 0, "nothing was written");
}

#[tokio::test]
async fn grpc_takes_a_key_in_authorization_metadata() {
    let server = start().await;
    for credential in [
        Credential::Bearer(ADMIN),
        Credential::Bearer(READONLY),
        Credential::Bearer(CUSTOMER),
        Credential::ApiKey(ADMIN),
    ] {
        let mut client = grpc(&server, credential).await;
        let order = client
            .get_order(get_order("1"))
            .await
            .unwrap_or_else(|s| panic!("{credential:?}: {s:?}"))
            .into_inner();
        assert_eq!(order.id, "1");
        let listed = collect(
            client.list_orders(ListOrdersRequest::default()).await,
            "ListOrders",
        )
        .await;
        assert!(!listed.is_empty(), "{credential:?}");
    }
    // Per request too, without an interceptor.
    let mut plain = OrdersClient::new(server.grpc_channel().await);
    let mut request = tonic::Request::new(get_order("1"));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN}").parse().expect("metadata"),
    );
    assert_eq!(
        plain
            .get_order(request)
            .await
            .expect("GetOrder")
            .into_inner()
            .id,
        "1"
    );
}

#[tokio::test]
async fn sse_and_long_polling_take_a_key_in_the_access_token_query_parameter() {
    let server = start().await;
    let demo = demo(&server).await;
    let own = demo.own_pending[0].clone();
    // One event in the log; each request replays from seq 0, so each answers at once.
    admin_moves_on(&server, &own, "pending").await;
    let mut refused = Vec::new();
    for path in [
        format!("/v1/events?last_event_id=0&access_token={ADMIN}"),
        format!("/v1/orders/{own}/events?last_event_id=0&access_token={CUSTOMER}"),
    ] {
        match Sse::try_open(server.get(&path)).await {
            Ok(mut stream) => {
                assert_eq!(
                    stream.next_event().await["order_id"],
                    own.as_str(),
                    "{path}"
                );
            }
            Err(why) => refused.push(format!("{path}: {why}")),
        }
    }
    let path = format!("/v1/events/poll?since=0&timeout=1s&access_token={CUSTOMER}");
    let poll = Reply::of(server.get(&path)).await;
    if poll.status == 200 {
        assert_eq!(
            poll.json()["events"][0]["order_id"],
            own.as_str(),
            "{}",
            poll.text
        );
    } else {
        refused.push(format!("{path}: {} {}", poll.status, poll.text));
    }
    assert!(
        refused.is_empty(),
        "?access_token= is refused where it is documented:\n{}",
        refused.join("\n")
    );
}

/// Trades `key` for a stream ticket at `POST /v1/stream-tickets`.
async fn stream_ticket(server: &TestServer, key: &str) -> String {
    let issued = Reply::of(server.post("/v1/stream-tickets").bearer_auth(key)).await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    assert_eq!(issued.headers["cache-control"], "no-store");
    issued.json()["ticket"]
        .as_str()
        .expect("a ticket")
        .to_owned()
}

#[tokio::test]
async fn a_stream_ticket_opens_one_stream_once_as_its_principal_and_nothing_else() {
    let server = start().await;
    let demo = demo(&server).await;
    // Only a caller with credentials gets one.
    Reply::of(server.post("/v1/stream-tickets"))
        .await
        .problem(401, "unauthenticated");

    let ticket = stream_ticket(&server, CUSTOMER).await;
    let mut stream = Sse::open(server.get(&format!("/v1/events?ticket={ticket}"))).await;
    server
        .wait_for_streams(1, "the ticket's stream is open")
        .await;
    // Bound to the customer who asked: the admin's change to another customer's order is not
    // in it, the change to its own is.
    let own = admin_changes_another_customers_order_then_its_own(&server, &demo).await;
    assert_eq!(stream.next_event().await["order_id"], own.as_str());

    // Single use: the same ticket opens nothing a second time, on any stream endpoint.
    for path in [
        format!("/v1/events?ticket={ticket}"),
        format!("/v1/events/poll?since=0&timeout=1s&ticket={ticket}"),
    ] {
        Reply::of(server.get(&path).header(ACCEPT, EVENT_STREAM))
            .await
            .problem(401, "unauthenticated");
    }
    // Only where the gate reads a query credential: a ticket is no key for the rest of the API,
    // neither in the query nor as a bearer token.
    let fresh = stream_ticket(&server, ADMIN).await;
    Reply::of(server.get(&format!("/v1/orders?ticket={fresh}")))
        .await
        .problem(401, "unauthenticated");
    Reply::of(server.get("/v1/orders").bearer_auth(&fresh))
        .await
        .problem(401, "unauthenticated");
}

#[tokio::test]
async fn the_v1_websocket_takes_a_key_in_the_upgrade_the_query_or_an_auth_op() {
    let server = start().await;
    // In the upgrade request's headers, or its query: no auth op needed.
    for (path, credential) in [
        ("/v1/ws".to_owned(), Credential::Bearer(ADMIN)),
        ("/v1/ws".to_owned(), Credential::ApiKey(READONLY)),
        (
            format!("/v1/ws?access_token={CUSTOMER}"),
            Credential::Nothing,
        ),
    ] {
        let mut ws = ws_connect(&server, &path, credential).await;
        assert_ws_usable(&mut ws, &format!("{path} with {credential:?}")).await;
        let order = ws_ask(
            &mut ws,
            json!({ "op": "get_order", "id": "g", "order_id": "1" }),
        )
        .await;
        assert_eq!(order["order"]["id"], "1", "{order}");
    }
    // In an auth op, which is answered with who the connection is.
    for (key, name, role) in [
        (ADMIN, "key:root", "admin"),
        (READONLY, "key:auditor", "readonly"),
        (CUSTOMER, "key:ada", "customer"),
    ] {
        let mut ws = ws_connect(&server, "/v1/ws", Credential::Nothing).await;
        let reply = ws_ask(&mut ws, json!({ "op": "auth", "id": "a1", "token": key })).await;
        assert_eq!(reply["op"], "result", "{reply}");
        assert_eq!(reply["id"], "a1", "{reply}");
        assert_eq!(reply["authenticated"]["principal"], name, "{reply}");
        assert_eq!(reply["authenticated"]["role"], role, "{reply}");
        assert_ws_usable(&mut ws, key).await;
    }
}

#[tokio::test]
async fn a_v1_websocket_connection_keeps_its_principal_and_a_second_auth_op_is_refused() {
    let server = start().await;
    let demo = demo(&server).await;
    let mut ws = ws_connect(&server, "/v1/ws", Credential::Bearer(CUSTOMER)).await;
    let again = ws_ask(&mut ws, json!({ "op": "auth", "id": "a2", "token": ADMIN })).await;
    assert_eq!(again["op"], "error", "{again}");
    assert_eq!(again["id"], "a2", "{again}");
    // Still the customer: another customer's order is still not found.
    let other = ws_ask(
        &mut ws,
        json!({ "op": "get_order", "id": "g", "order_id": demo.other }),
    )
    .await;
    assert_ws_error(&other, "g", 404, "not-found");
}

#[tokio::test]
async fn graphql_ws_takes_a_key_in_connection_init_the_upgrade_or_the_query() {
    let server = start().await;
    let cases = [
        (
            "/graphql/ws".to_owned(),
            Credential::Nothing,
            json!({ "authorization": format!("Bearer {ADMIN}") }),
        ),
        (
            "/graphql/ws".to_owned(),
            Credential::Nothing,
            json!({ "Authorization": format!("Bearer {CUSTOMER}") }),
        ),
        (
            "/graphql/ws".to_owned(),
            Credential::Bearer(READONLY),
            json!({}),
        ),
        (
            format!("/graphql/ws?access_token={CUSTOMER}"),
            Credential::Nothing,
            json!({}),
        ),
    ];
    for (path, credential, payload) in cases {
        let mut ws = gql_connect(&server, &path, credential).await;
        let ack = gql_init(&mut ws, payload.clone()).await;
        assert_eq!(
            ack["type"], "connection_ack",
            "{path} {credential:?} {payload}: {ack}"
        );
        // The connection is open and answers.
        ws_send(&mut ws, json!({ "type": "ping" })).await;
        let pong = ws_next(&mut ws, "ping").await;
        assert_eq!(pong["type"], "pong", "{pong}");
    }
}

// ======== 3. the open routes stay open ========

#[tokio::test]
async fn probes_problem_docs_and_the_graphiql_page_need_no_credentials() {
    let server = start().await;
    for path in [
        "/healthz",
        "/readyz",
        "/problems",
        "/problems/unauthenticated",
    ] {
        let reply = Reply::of(server.get(path)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    let page = Reply::of(server.get("/graphql").header(ACCEPT, "text/html")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    // The page is open; a query on the same path is not.
    let query = Reply::of(
        server
            .get("/graphql?query=%7B__typename%7D")
            .header(ACCEPT, "text/html"),
    )
    .await;
    assert_eq!(query.status, 401, "{}", query.text);
}

#[tokio::test]
async fn grpc_health_checks_need_no_credentials() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let server = start().await;
    let mut health = HealthClient::new(server.grpc_channel().await);
    for service in ["", "polyport.orders.v1.Orders"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("{service:?}: {s:?}"))
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn signed_inbound_webhooks_need_no_bearer_credentials() {
    let server = start().await;
    let body = r#"{"type":"payment.succeeded","data":{"order_id":"1"}}"#;
    // Unsigned: refused by the signature check, not by the gate: another challenge and detail.
    let unsigned = Reply::of(
        server
            .post("/v1/webhooks/inbound/demo")
            .header(CONTENT_TYPE, "application/json")
            .body(body),
    )
    .await;
    let problem = unsigned.problem(401, "unauthenticated");
    assert_eq!(
        unsigned.header("www-authenticate"),
        Some("Webhook-Signature")
    );
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not signed")),
        "{problem}"
    );
    // Signed: accepted with no bearer credential at all.
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    let signed = Reply::of(
        server
            .post("/v1/webhooks/inbound/demo")
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", "msg_auth_1")
            .header("webhook-timestamp", &timestamp)
            .header(
                "webhook-signature",
                sign(DEMO_INBOUND_SECRET, "msg_auth_1", &timestamp, body),
            )
            .body(body),
    )
    .await;
    assert_eq!(signed.status, 202, "{}", signed.text);
}

#[tokio::test]
async fn a_grpc_web_preflight_from_a_browser_needs_no_credentials() {
    // A browser sends the CORS preflight without the Authorization header it asks to send.
    let server = start().await;
    let reply = Reply::of(
        server
            .client
            .request(
                Method::OPTIONS,
                server.url("/polyport.orders.v1.Orders/GetOrder"),
            )
            .header("origin", "http://localhost:5173")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-grpc-web",
            ),
    )
    .await;
    assert!(
        (200..300).contains(&reply.status),
        "{} {:?}: {}",
        reply.status,
        reply.headers,
        reply.text
    );
    assert!(
        reply.header("access-control-allow-origin").is_some(),
        "{:?}",
        reply.headers
    );
    let allowed = reply
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
}

#[tokio::test]
async fn a_grpc_web_call_without_credentials_is_unauthenticated_and_readable_cross_origin() {
    let server = start().await;
    let h1 = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    let message = prost::Message::encode_to_vec(&get_order("1"));
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(&message);
    let reply = Reply::of(
        h1.post(server.url("/polyport.orders.v1.Orders/GetOrder"))
            .header(CONTENT_TYPE, "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("origin", "http://localhost:5173")
            .body(framed),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.headers);
    assert_eq!(
        reply.header("grpc-status"),
        Some("16"),
        "{:?}",
        reply.headers
    );
    // A page on another origin can read the status only if CORS lets it.
    assert!(
        reply.header("access-control-allow-origin").is_some(),
        "a cross-origin gRPC-Web client cannot read this refusal: {:?}",
        reply.headers
    );
    let exposed = reply
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("grpc-status"), "{:?}", reply.headers);
}

// ======== 4. a customer sees only its own ========

#[tokio::test]
async fn over_rest_a_customer_sees_only_its_own_orders_and_record_and_others_are_not_found() {
    let server = start().await;
    let demo = demo(&server).await;
    let shared = &server;
    let as_customer = move |path: String| async move { get_as(shared, CUSTOMER, &path).await };

    // Its own orders read; every other order is 404, like an id that never existed.
    for own in &demo.own {
        assert_eq!(
            as_customer(format!("/v1/orders/{own}")).await.expect(200)["id"],
            own.as_str()
        );
    }
    for other in &demo.others {
        as_customer(format!("/v1/orders/{other}"))
            .await
            .problem(404, "not-found");
    }
    let never = as_customer("/v1/orders/999999".into())
        .await
        .problem(404, "not-found");
    let hidden = as_customer(format!("/v1/orders/{}", demo.other))
        .await
        .problem(404, "not-found");
    assert_eq!(
        hidden["detail"]
            .as_str()
            .map(|d| d.replace(&demo.other, "ID")),
        never["detail"].as_str().map(|d| d.replace("999999", "ID")),
        "another customer's order and a missing one are told apart by nothing"
    );
    for path in [
        format!("/v1/orders/{}/items", demo.other),
        format!("/v1/orders/{}/items/1", demo.other),
        format!("/v1/orders/{}/cancellation", demo.other),
        format!("/v1/customers/{}", demo.other_customer),
        format!("/v1/customers/{}/orders", demo.other_customer),
    ] {
        as_customer(path).await.problem(404, "not-found");
    }

    // Lists hold only its own.
    let listed = rows(&as_customer("/v1/orders?limit=100".into()).await.expect(200));
    assert_eq!(ids(&listed), demo.own);
    assert!(listed.iter().all(|(_, c)| c == CUSTOMER_ID), "{listed:?}");
    let asked_for_other = as_customer(format!(
        "/v1/orders?limit=100&customer_id={}",
        demo.other_customer
    ))
    .await
    .expect(200);
    assert!(rows(&asked_for_other).is_empty(), "{asked_for_other}");
    let via_customer = as_customer(format!("/v1/customers/{CUSTOMER_ID}/orders?limit=100"))
        .await
        .expect(200);
    assert_eq!(ids(&rows(&via_customer)), demo.own);
    let customers = rows(
        &as_customer("/v1/customers?limit=100".into())
            .await
            .expect(200),
    );
    assert_eq!(ids(&customers), [CUSTOMER_ID]);
    assert_eq!(
        as_customer(format!("/v1/customers/{CUSTOMER_ID}"))
            .await
            .expect(200)["id"],
        CUSTOMER_ID
    );

    // Cancelling another customer's order (a thing customers may do) is not found, not forbidden.
    call(
        &server,
        Method::POST,
        &format!("/v1/orders/{}/cancellations", demo.other),
        Credential::Bearer(CUSTOMER),
        Some(json!({ "reason": "probing" })),
    )
    .await
    .problem(404, "not-found");
    assert_eq!(store_state(&server).await.1, 0, "nothing was written");
}

#[tokio::test]
async fn over_grpc_a_customer_sees_only_its_own_orders_and_record_and_others_are_not_found() {
    use session_command::Command;
    use session_message::Kind;

    let server = start().await;
    let demo = demo(&server).await;
    let mut client = grpc_as(&server, CUSTOMER).await;

    let own = client
        .get_order(get_order(&demo.own[0]))
        .await
        .expect("own order");
    assert_eq!(own.into_inner().customer_id, CUSTOMER_ID);
    for other in &demo.others {
        let status = failed(client.get_order(get_order(other)).await, other);
        assert_grpc_error(&status, Code::NotFound, "not-found", other);
    }
    let status = failed(
        client
            .get_customer(GetCustomerRequest {
                id: demo.other_customer.clone(),
            })
            .await,
        "GetCustomer",
    );
    assert_grpc_error(&status, Code::NotFound, "not-found", "GetCustomer");
    let status = failed(
        client
            .cancel_order(CancelOrderRequest {
                id: demo.other.clone(),
                ..CancelOrderRequest::default()
            })
            .await,
        "CancelOrder",
    );
    assert_grpc_error(
        &status,
        Code::NotFound,
        "not-found",
        "CancelOrder of another's",
    );

    let listed = collect(
        client.list_orders(ListOrdersRequest::default()).await,
        "ListOrders",
    )
    .await;
    let listed: Vec<String> = listed.iter().map(|o| o.id.clone()).collect();
    assert_eq!(listed, demo.own);
    let asked_for_other = collect(
        client
            .list_orders(ListOrdersRequest {
                customer_id: demo.other_customer.clone(),
                ..ListOrdersRequest::default()
            })
            .await,
        "ListOrders of another customer",
    )
    .await;
    assert!(asked_for_other.is_empty(), "{asked_for_other:?}");

    // In a session too.
    let mut session = client
        .order_session(tokio_stream::iter(vec![SessionCommand {
            id: "g".into(),
            command: Some(Command::GetOrder(get_order(&demo.other))),
        }]))
        .await
        .expect("a session")
        .into_inner();
    let answer = next_message(&mut session, "session get_order").await;
    assert_eq!(answer.id, "g");
    match answer.kind {
        Some(Kind::Error(error)) => assert_eq!(error.code, "NOT_FOUND", "{error:?}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn over_graphql_a_customer_sees_only_its_own_orders_and_record_and_others_are_not_found() {
    let server = start().await;
    let demo = demo(&server).await;

    let one = "query($id: ID!) { order(id: $id) { id customerId } }";
    let own = graphql_data(&server, CUSTOMER, one, json!({ "id": demo.own[0] })).await;
    assert_eq!(own["order"]["customerId"], CUSTOMER_ID);
    let hidden = graphql_error(
        &server,
        CUSTOMER,
        one,
        json!({ "id": demo.other }),
        "NOT_FOUND",
    )
    .await;
    assert!(hidden["data"]["order"].is_null(), "{hidden}");

    let all = "{ orders(first: 100) { totalCount nodes { id customerId customer { id } } } }";
    let listed = graphql_data(&server, CUSTOMER, all, json!({})).await["orders"].clone();
    assert_eq!(node_ids(&listed), demo.own);
    assert_eq!(listed["totalCount"], demo.own.len(), "{listed}");
    for node in listed["nodes"].as_array().expect("nodes") {
        assert_eq!(node["customer"]["id"], CUSTOMER_ID, "{node}");
    }

    let filtered = "query($c: ID!) { orders(first: 100, filter: { customerId: $c }) { totalCount nodes { id } } }";
    let other = graphql_data(
        &server,
        CUSTOMER,
        filtered,
        json!({ "c": demo.other_customer }),
    )
    .await["orders"]
        .clone();
    assert!(node_ids(&other).is_empty(), "{other}");
    assert_eq!(other["totalCount"], 0, "{other}");

    let customer = "query($id: ID!) { customer(id: $id) { id orders(first: 100) { totalCount nodes { id } } } }";
    let itself = graphql_data(&server, CUSTOMER, customer, json!({ "id": CUSTOMER_ID })).await;
    assert_eq!(node_ids(&itself["customer"]["orders"]), demo.own);
    let stranger = graphql_error(
        &server,
        CUSTOMER,
        customer,
        json!({ "id": demo.other_customer }),
        "NOT_FOUND",
    )
    .await;
    assert!(stranger["data"]["customer"].is_null(), "{stranger}");

    // The admin, asking the same, sees everything: the difference is the principal.
    let everything = graphql_data(&server, ADMIN, all, json!({})).await;
    assert_eq!(everything["orders"]["totalCount"], demo.total);
}

#[tokio::test]
async fn over_the_v1_websocket_a_customer_cannot_read_another_customers_order() {
    let server = start().await;
    let demo = demo(&server).await;
    let mut ws = ws_connect(&server, "/v1/ws", Credential::Bearer(CUSTOMER)).await;
    let own = ws_ask(
        &mut ws,
        json!({ "op": "get_order", "id": "g1", "order_id": demo.own[0] }),
    )
    .await;
    assert_eq!(own["order"]["customer_id"], CUSTOMER_ID, "{own}");
    let other = ws_ask(
        &mut ws,
        json!({ "op": "get_order", "id": "g2", "order_id": demo.other }),
    )
    .await;
    assert_ws_error(&other, "g2", 404, "not-found");
    let cancel = ws_ask(
        &mut ws,
        json!({ "op": "cancel_order", "id": "c1", "order_id": demo.other }),
    )
    .await;
    assert_ws_error(&cancel, "c1", 404, "not-found");
    assert_ws_usable(&mut ws, "after the refusals").await;
}

#[tokio::test]
async fn a_customers_sse_streams_carry_only_its_own_orders_events() {
    let server = start().await;
    let demo = demo(&server).await;
    let mut stream = Sse::open(server.get("/v1/events").bearer_auth(CUSTOMER)).await;
    // Another customer's order has no event stream, as far as this customer knows.
    Reply::of(
        server
            .get(&format!("/v1/orders/{}/events", demo.other))
            .bearer_auth(CUSTOMER)
            .header(ACCEPT, EVENT_STREAM),
    )
    .await
    .problem(404, "not-found");
    let mut one = Sse::open(
        server
            .get(&format!("/v1/orders/{}/events", demo.own_pending[0]))
            .bearer_auth(CUSTOMER),
    )
    .await;
    let mut admin = Sse::open(server.get("/v1/events").bearer_auth(ADMIN)).await;
    server
        .wait_for_streams(3, "the event streams are open")
        .await;

    let own = admin_changes_another_customers_order_then_its_own(&server, &demo).await;
    assert_eq!(admin.next_event().await["order_id"], demo.other.as_str());
    assert_eq!(stream.next_event().await["order_id"], own.as_str());
    assert_eq!(one.next_event().await["order_id"], own.as_str());
}

#[tokio::test]
async fn a_customers_long_poll_returns_only_its_own_orders_events() {
    let server = start().await;
    let demo = demo(&server).await;
    let poll = {
        let client = server.client.clone();
        let url = server.url("/v1/events/poll?since=0&timeout=5s");
        tokio::spawn(async move { Reply::of(client.get(url).bearer_auth(CUSTOMER)).await })
    };
    server.wait_for_streams(1, "the poll is waiting").await;
    let own = admin_changes_another_customers_order_then_its_own(&server, &demo).await;
    let answer = poll.await.expect("the poll task").expect(200);
    let events = answer["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{answer}");
    assert_eq!(events[0]["order_id"], own.as_str(), "{answer}");
    // Polling the whole log again shows the same: one event of two.
    let again = get_as(&server, CUSTOMER, "/v1/events/poll?since=0&timeout=1s")
        .await
        .expect(200);
    let order_ids: Vec<&Value> = again["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["order_id"])
        .collect();
    assert_eq!(order_ids, [&json!(own)], "{again}");
}

#[tokio::test]
async fn a_customers_v1_websocket_subscription_carries_only_its_own_orders_events() {
    let server = start().await;
    let demo = demo(&server).await;
    let mut ws = ws_connect(&server, "/v1/ws", Credential::Nothing).await;
    let authenticated = ws_ask(&mut ws, json!({ "op": "auth", "token": CUSTOMER })).await;
    assert_eq!(authenticated["op"], "result", "{authenticated}");
    let subscribed = ws_ask(
        &mut ws,
        json!({ "op": "subscribe", "id": "s1", "topic": "orders", "after_seq": 0 }),
    )
    .await;
    assert_eq!(subscribed["op"], "result", "{subscribed}");
    let own = admin_changes_another_customers_order_then_its_own(&server, &demo).await;
    let event = ws_next(&mut ws, "the first event").await;
    assert_eq!(event["op"], "event", "{event}");
    assert_eq!(event["subscription"], "s1", "{event}");
    assert_eq!(event["order_id"], own.as_str(), "{event}");
}

#[tokio::test]
async fn a_customers_grpc_watch_carries_only_its_own_orders_events() {
    let server = start().await;
    let demo = demo(&server).await;
    let mut client = grpc_as(&server, CUSTOMER).await;
    let mut watch = client
        .watch_orders(WatchOrdersRequest {
            after_seq: Some(0),
            ..WatchOrdersRequest::default()
        })
        .await
        .expect("watch")
        .into_inner();
    server.wait_for_streams(1, "the watch is open").await;
    let own = admin_changes_another_customers_order_then_its_own(&server, &demo).await;
    match next_message(&mut watch, "the first event").await.kind {
        Some(watch_orders_response::Kind::Event(event)) => assert_eq!(event.order_id, own),
        other => panic!("expected an event, got {other:?}"),
    }

    // A session's subscription is filtered the same way.
    let (commands, outbound) = tokio::sync::mpsc::channel(4);
    let mut session = client
        .order_session(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .expect("a session")
        .into_inner();
    commands
        .send(SessionCommand {
            id: "s".into(),
            command: Some(session_command::Command::Subscribe(WatchOrdersRequest {
                after_seq: Some(0),
                ..WatchOrdersRequest::default()
            })),
        })
        .await
        .expect("send");
    let mut first_event = None;
    while first_event.is_none() {
        match next_message(&mut session, "the session's first event")
            .await
            .kind
        {
            Some(session_message::Kind::Event(event)) => first_event = Some(event),
            Some(session_message::Kind::Subscribed(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(first_event.map(|e| e.order_id), Some(own));
}

#[tokio::test]
async fn a_customers_graphql_subscription_carries_only_its_own_orders_events() {
    let server = start().await;
    let demo = demo(&server).await;
    let mut ws = gql_connect(&server, "/graphql/ws", Credential::Nothing).await;
    let ack = gql_init(
        &mut ws,
        json!({ "authorization": format!("Bearer {CUSTOMER}") }),
    )
    .await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws_send(
        &mut ws,
        json!({
            "type": "subscribe",
            "id": "s1",
            "payload": { "query": "subscription { orderEvents(afterSeq: 0) { ... on OrderEvent { seq orderId order { customerId } } } }" },
        }),
    )
    .await;
    server
        .wait_for_streams(1, "the subscription is running")
        .await;
    let own = admin_changes_another_customers_order_then_its_own(&server, &demo).await;
    let next = ws_next(&mut ws, "the first event").await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(
        next["payload"]["data"]["orderEvents"]["orderId"],
        own.as_str(),
        "{next}"
    );
    assert_eq!(
        next["payload"]["data"]["orderEvents"]["order"]["customerId"], CUSTOMER_ID,
        "{next}"
    );
}

// ======== 5. what each role may write ========

#[tokio::test]
async fn over_rest_a_customer_creates_and_cancels_its_own_orders_and_nothing_more() {
    let server = start().await;
    let demo = demo(&server).await;
    let customer = Credential::Bearer(CUSTOMER);
    let create = |customer_id: &str| json!({ "customer_id": customer_id, "items": one_item() });

    let created = call(
        &server,
        Method::POST,
        "/v1/orders",
        customer,
        Some(create(CUSTOMER_ID)),
    )
    .await;
    assert_eq!(created.expect(201)["customer_id"], CUSTOMER_ID);
    call(
        &server,
        Method::POST,
        "/v1/orders",
        customer,
        Some(create(&demo.other_customer)),
    )
    .await
    .problem(403, "forbidden");
    let bulk = call(
        &server,
        Method::POST,
        "/v1/orders/bulk",
        customer,
        Some(json!({ "orders": [create(CUSTOMER_ID), create(&demo.other_customer)] })),
    )
    .await
    .expect(200);
    let statuses: Vec<&Value> = bulk["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [&json!(201), &json!(403)], "{bulk}");

    let [cancelled, changed, ..] = demo.own_pending.as_slice() else {
        unreachable!("demo() checks there are three")
    };
    let cancel = call(
        &server,
        Method::POST,
        &format!("/v1/orders/{cancelled}/cancellations"),
        customer,
        Some(json!({ "reason": "changed my mind" })),
    )
    .await;
    assert_eq!(cancel.expect(201)["order"]["status"], "cancelled");

    let order_path = format!("/v1/orders/{changed}");
    let forbidden = [
        (
            Method::PATCH,
            order_path.clone(),
            json!({ "status": "paid" }),
        ),
        (
            Method::PUT,
            order_path.clone(),
            json!({ "customer_id": CUSTOMER_ID, "status": "pending", "items": one_item() }),
        ),
        (Method::DELETE, order_path.clone(), Value::Null),
        (
            Method::POST,
            format!("{order_path}/items"),
            json!({ "product_id": "1", "quantity": 1 }),
        ),
        (
            Method::POST,
            "/v1/customers".to_owned(),
            json!({ "name": "Eve", "email": "eve@example.com" }),
        ),
    ];
    for (method, path, body) in forbidden {
        let body = (!body.is_null()).then_some(body);
        call(&server, method.clone(), &path, customer, body)
            .await
            .problem(403, "forbidden");
    }
    let order = get_as(&server, CUSTOMER, &order_path).await.expect(200);
    assert_eq!(
        (order["status"].as_str(), order["version"].as_u64()),
        (Some("pending"), Some(1))
    );
}

#[tokio::test]
async fn over_grpc_a_customer_creates_and_cancels_its_own_orders_and_nothing_more() {
    let server = start().await;
    let demo = demo(&server).await;
    let mut client = grpc_as(&server, CUSTOMER).await;
    let [cancelled, changed, ..] = demo.own_pending.as_slice() else {
        unreachable!("demo() checks there are three")
    };

    let created = client
        .create_order(new_order(CUSTOMER_ID))
        .await
        .expect("create own");
    assert_eq!(created.into_inner().customer_id, CUSTOMER_ID);
    let status = failed(
        client.create_order(new_order(&demo.other_customer)).await,
        "create other",
    );
    assert_grpc_error(
        &status,
        Code::PermissionDenied,
        "forbidden",
        "create for another",
    );
    let cancel = client
        .cancel_order(CancelOrderRequest {
            id: cancelled.clone(),
            ..CancelOrderRequest::default()
        })
        .await
        .expect("cancel own");
    assert_eq!(cancel.into_inner().status, "cancelled");

    let update = client
        .update_order(UpdateOrderRequest {
            id: changed.clone(),
            order: Some(OrderUpdate {
                status: "paid".into(),
                ..OrderUpdate::default()
            }),
            ..UpdateOrderRequest::default()
        })
        .await;
    assert_grpc_error(
        &failed(update, "update"),
        Code::PermissionDenied,
        "forbidden",
        "UpdateOrder",
    );
    let delete = client
        .delete_order(DeleteOrderRequest {
            id: changed.clone(),
            expected_version: None,
        })
        .await;
    assert_grpc_error(
        &failed(delete, "delete"),
        Code::PermissionDenied,
        "forbidden",
        "DeleteOrder",
    );
    let add = client
        .add_item(AddItemRequest {
            order_id: changed.clone(),
            product_id: "1".into(),
            quantity: 1,
            expected_version: None,
        })
        .await;
    assert_grpc_error(
        &failed(add, "add item"),
        Code::PermissionDenied,
        "forbidden",
        "AddItem",
    );
    let order = client
        .get_order(get_order(changed))
        .await
        .expect("read")
        .into_inner();
    assert_eq!((order.status.as_str(), order.version), ("pending", 1));
}

#[tokio::test]
async fn over_graphql_a_customer_creates_and_cancels_its_own_orders_and_nothing_more() {
    let server = start().await;
    let demo = demo(&server).await;
    let [cancelled, changed, ..] = demo.own_pending.as_slice() else {
        unreachable!("demo() checks there are three")
    };

    let created = graphql_data(&server, CUSTOMER, CREATE_ORDER, create_input(CUSTOMER_ID)).await;
    assert_eq!(created["createOrder"]["order"]["customerId"], CUSTOMER_ID);
    graphql_error(
        &server,
        CUSTOMER,
        CREATE_ORDER,
        create_input(&demo.other_customer),
        "FORBIDDEN",
    )
    .await;
    let cancel = graphql_data(&server, CUSTOMER, CANCEL_ORDER, json!({ "id": cancelled })).await;
    assert_eq!(cancel["cancelOrder"]["order"]["status"], "CANCELLED");
    for mutation in [UPDATE_ORDER, ADD_ITEM, DELETE_ORDER] {
        graphql_error(
            &server,
            CUSTOMER,
            mutation,
            json!({ "id": changed }),
            "FORBIDDEN",
        )
        .await;
    }
    let order = graphql_data(
        &server,
        CUSTOMER,
        "query($id: ID!) { order(id: $id) { status version } }",
        json!({ "id": changed }),
    )
    .await;
    assert_eq!(order["order"], json!({ "status": "PENDING", "version": 1 }));
}

#[tokio::test]
async fn over_the_v1_websocket_a_customer_gets_an_error_op_with_403_for_another_customers_order() {
    let server = start().await;
    let demo = demo(&server).await;
    let mut ws = ws_connect(&server, "/v1/ws", Credential::Bearer(CUSTOMER)).await;
    let create = |id: &str, customer_id: &str| json!({ "op": "create_order", "id": id, "customer_id": customer_id, "items": one_item() });
    let own = ws_ask(&mut ws, create("c1", CUSTOMER_ID)).await;
    assert_eq!(own["op"], "result", "{own}");
    assert_eq!(own["order"]["customer_id"], CUSTOMER_ID, "{own}");
    let other = ws_ask(&mut ws, create("c2", &demo.other_customer)).await;
    assert_ws_error(&other, "c2", 403, "forbidden");
    let cancel = ws_ask(
        &mut ws,
        json!({ "op": "cancel_order", "id": "c3", "order_id": demo.own_pending[0] }),
    )
    .await;
    assert_eq!(cancel["order"]["status"], "cancelled", "{cancel}");
    assert_ws_usable(&mut ws, "after a refusal the connection stays open").await;
}

#[tokio::test]
async fn readonly_reads_everything_over_every_protocol() {
    let server = start().await;
    let demo = demo(&server).await;
    let listed = rows(
        &get_as(&server, READONLY, "/v1/orders?limit=100")
            .await
            .expect(200),
    );
    assert_eq!(listed.len(), demo.total);
    get_as(&server, READONLY, &format!("/v1/orders/{}", demo.other))
        .await
        .expect(200);
    let customers = rows(
        &get_as(&server, READONLY, "/v1/customers?limit=100")
            .await
            .expect(200),
    );
    assert!(customers.len() > 1, "{customers:?}");

    let mut client = grpc_as(&server, READONLY).await;
    let all = collect(
        client.list_orders(ListOrdersRequest::default()).await,
        "ListOrders",
    )
    .await;
    assert_eq!(all.len(), demo.total);

    let count = graphql_data(
        &server,
        READONLY,
        "{ orders(first: 1) { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(count["orders"]["totalCount"], demo.total);

    let mut ws = ws_connect(&server, "/v1/ws", Credential::Bearer(READONLY)).await;
    let other = ws_ask(
        &mut ws,
        json!({ "op": "get_order", "id": "g", "order_id": demo.other }),
    )
    .await;
    assert_eq!(other["order"]["id"], demo.other.as_str(), "{other}");
}

#[tokio::test]
async fn readonly_writes_nothing_over_any_protocol() {
    use session_command::Command;

    let server = start().await;
    let demo = demo(&server).await;
    let id = demo.own_pending[0].clone();
    let readonly = Credential::Bearer(READONLY);

    // REST
    let order_path = format!("/v1/orders/{id}");
    let create = json!({ "customer_id": CUSTOMER_ID, "items": one_item() });
    let writes = [
        (Method::POST, "/v1/orders".to_owned(), create.clone()),
        (
            Method::PATCH,
            order_path.clone(),
            json!({ "status": "paid" }),
        ),
        (
            Method::PUT,
            order_path.clone(),
            json!({ "customer_id": CUSTOMER_ID, "status": "pending", "items": one_item() }),
        ),
        (Method::DELETE, order_path.clone(), Value::Null),
        (
            Method::POST,
            format!("{order_path}/cancellations"),
            json!({ "reason": "no" }),
        ),
        (
            Method::POST,
            format!("{order_path}/items"),
            json!({ "product_id": "1", "quantity": 1 }),
        ),
        (
            Method::POST,
            "/v1/customers".to_owned(),
            json!({ "name": "Eve", "email": "eve@example.com" }),
        ),
    ];
    for (method, path, body) in writes {
        let body = (!body.is_null()).then_some(body);
        call(&server, method.clone(), &path, readonly, body)
            .await
            .problem(403, "forbidden");
    }
    let bulk = call(
        &server,
        Method::POST,
        "/v1/orders/bulk",
        readonly,
        Some(json!({ "orders": [create] })),
    )
    .await
    .expect(200);
    assert_eq!(bulk["results"][0]["status"], 403, "{bulk}");

    // gRPC
    let mut client = grpc_as(&server, READONLY).await;
    let denied = |status: Status, call: &str| {
        assert_grpc_error(&status, Code::PermissionDenied, "forbidden", call);
    };
    denied(
        failed(client.create_order(new_order(CUSTOMER_ID)).await, "create"),
        "CreateOrder",
    );
    denied(
        failed(
            client
                .update_order(UpdateOrderRequest {
                    id: id.clone(),
                    order: Some(OrderUpdate {
                        status: "paid".into(),
                        ..OrderUpdate::default()
                    }),
                    ..UpdateOrderRequest::default()
                })
                .await,
            "update",
        ),
        "UpdateOrder",
    );
    denied(
        failed(
            client
                .cancel_order(CancelOrderRequest {
                    id: id.clone(),
                    ..CancelOrderRequest::default()
                })
                .await,
            "cancel",
        ),
        "CancelOrder",
    );
    denied(
        failed(
            client
                .delete_order(DeleteOrderRequest {
                    id: id.clone(),
                    expected_version: None,
                })
                .await,
            "delete",
        ),
        "DeleteOrder",
    );
    denied(
        failed(
            client
                .add_item(AddItemRequest {
                    order_id: id.clone(),
                    product_id: "1".into(),
                    quantity: 1,
                    expected_version: None,
                })
                .await,
            "add item",
        ),
        "AddItem",
    );
    let bulk = client
        .bulk_create_orders(tokio_stream::iter(vec![new_order(CUSTOMER_ID)]))
        .await
        .expect("a bulk summary")
        .into_inner();
    assert_eq!((bulk.created, bulk.failed), (0, 1), "{bulk:?}");
    let mut session = client
        .order_session(tokio_stream::iter(vec![SessionCommand {
            id: "c".into(),
            command: Some(Command::CreateOrder(new_order(CUSTOMER_ID))),
        }]))
        .await
        .expect("a session")
        .into_inner();
    match next_message(&mut session, "session create").await.kind {
        Some(session_message::Kind::Error(error)) => {
            assert_eq!(error.code, "PERMISSION_DENIED", "{error:?}")
        }
        other => panic!("expected an error, got {other:?}"),
    }

    // GraphQL
    graphql_error(
        &server,
        READONLY,
        CREATE_ORDER,
        create_input(CUSTOMER_ID),
        "FORBIDDEN",
    )
    .await;
    for mutation in [UPDATE_ORDER, CANCEL_ORDER, ADD_ITEM, DELETE_ORDER] {
        graphql_error(
            &server,
            READONLY,
            mutation,
            json!({ "id": id }),
            "FORBIDDEN",
        )
        .await;
    }

    // WebSocket
    let mut ws = ws_connect(&server, "/v1/ws", Credential::Bearer(READONLY)).await;
    let created = ws_ask(
        &mut ws,
        json!({ "op": "create_order", "id": "c1", "customer_id": CUSTOMER_ID, "items": one_item() }),
    )
    .await;
    assert_ws_error(&created, "c1", 403, "forbidden");
    let cancelled = ws_ask(
        &mut ws,
        json!({ "op": "cancel_order", "id": "c2", "order_id": id }),
    )
    .await;
    assert_ws_error(&cancelled, "c2", 403, "forbidden");

    assert_eq!(
        store_state(&server).await,
        (demo.total as u64, 0),
        "no order and no event was written"
    );
}

#[tokio::test]
async fn webhook_management_is_for_admins_only() {
    let server = start().await;
    let endpoint = json!({ "url": "http://127.0.0.1:9/hooks", "event_types": ["order.created"] });
    let requests = [
        (Method::GET, "/v1/webhook-endpoints", None),
        (
            Method::POST,
            "/v1/webhook-endpoints",
            Some(endpoint.clone()),
        ),
        (Method::GET, "/v1/webhook-endpoints/we_1", None),
        (
            Method::PATCH,
            "/v1/webhook-endpoints/we_1",
            Some(json!({ "description": "x" })),
        ),
        (Method::DELETE, "/v1/webhook-endpoints/we_1", None),
        (
            Method::POST,
            "/v1/webhook-endpoints/we_1/rotate-secret",
            None,
        ),
        (Method::POST, "/v1/webhook-endpoints/we_1/test", None),
        (Method::GET, "/v1/webhook-endpoints/we_1/deliveries", None),
        (Method::GET, "/v1/webhook-deliveries/wd_1", None),
        (Method::POST, "/v1/webhook-deliveries/wd_1/retry", None),
        (Method::GET, "/v1/webhooks/inbound", None),
    ];
    for key in [READONLY, CUSTOMER] {
        for (method, path, body) in &requests {
            call(
                &server,
                method.clone(),
                path,
                Credential::Bearer(key),
                body.clone(),
            )
            .await
            .problem(403, "forbidden");
        }
    }
    // The admin manages them.
    let admin = Credential::Bearer(ADMIN);
    call(&server, Method::GET, "/v1/webhook-endpoints", admin, None)
        .await
        .expect(200);
    call(&server, Method::GET, "/v1/webhooks/inbound", admin, None)
        .await
        .expect(200);
    let created = call(
        &server,
        Method::POST,
        "/v1/webhook-endpoints",
        admin,
        Some(endpoint),
    )
    .await
    .expect(201);
    let id = created["id"].as_str().expect("an id");
    // Even an endpoint that exists is forbidden to the others, not merely not found.
    for key in [READONLY, CUSTOMER] {
        get_as(&server, key, &format!("/v1/webhook-endpoints/{id}"))
            .await
            .problem(403, "forbidden");
    }
}

#[tokio::test]
async fn idempotency_keys_belong_to_the_principal_that_sent_them() {
    let server = start().await;
    let body = json!({ "customer_id": CUSTOMER_ID, "items": one_item() });
    let create = |key: &'static str| {
        Reply::of(
            server
                .post("/v1/orders")
                .bearer_auth(key)
                .header("idempotency-key", "shared-key-1")
                .json(&body),
        )
    };
    let by_admin = create(ADMIN).await;
    let by_customer = create(CUSTOMER).await;
    let (admin_order, customer_order) = (by_admin.expect(201), by_customer.expect(201));
    assert_ne!(
        admin_order["id"], customer_order["id"],
        "two principals, two orders"
    );
    assert_eq!(by_customer.header("idempotent-replayed"), None);
    // The same principal with the same key gets its own order back.
    let replay = create(CUSTOMER).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.expect(201)["id"], customer_order["id"]);
    // A principal's key is not another's, over another protocol either.
    let mut client = grpc_as(&server, READONLY).await;
    let mut request = tonic::Request::new(new_order(CUSTOMER_ID));
    request
        .metadata_mut()
        .insert("idempotency-key", "shared-key-1".parse().expect("metadata"));
    let status = failed(
        client.create_order(request).await,
        "readonly with a used key",
    );
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "readonly is refused, not handed someone else's order: {status:?}"
    );
    assert_eq!(
        store_state(&server).await.0,
        26,
        "exactly two orders were created"
    );
}

#[tokio::test]
async fn readyz_tells_anyone_whether_it_is_ready_and_only_readers_of_everything_what_it_holds() {
    let server = start().await;
    let bare = Reply::of(server.get("/readyz")).await.expect(200);
    assert_eq!(bare, json!({ "status": "ready" }));
    for key in [CUSTOMER, BOGUS] {
        let reply = Reply::of(server.get("/readyz").bearer_auth(key))
            .await
            .expect(200);
        assert_eq!(reply, json!({ "status": "ready" }), "{key}");
    }
    for key in [ADMIN, READONLY] {
        let reply = Reply::of(server.get("/readyz").bearer_auth(key))
            .await
            .expect(200);
        assert_eq!(reply["status"], "ready");
        assert!(reply["orders"].is_u64(), "{key}: {reply}");
        assert!(reply["last_event_seq"].is_u64(), "{key}: {reply}");
    }
}
