//! Server push, black box: Server-Sent Events, WebSocket and long polling on the real server,
//! spoken to over real sockets with real clients: reqwest for SSE (frames parsed as the body
//! arrives, the way `EventSource` does) and for long polls, tokio-tungstenite for WebSocket, and
//! tonic for gRPC's WatchOrders in the test that puts all four side by side.
//!
//! One test per behaviour (frames, filters, resuming, the "too old" notice, keep-alives and
//! heartbeats, slow consumers, limits, shutdown), each on its own server so that tests never see
//! each other's events. Where cases repeat the test is a table.
//!
//! Nothing here asserts how long something takes. Durations appear only as configuration (a
//! keep-alive or ping interval, a poll timeout) and as bounds on waits, so that a bug fails a
//! test instead of hanging it. Where a test must know the server is already following the log
//! before it writes, it waits for something the server does after joining the log (the SSE
//! hello frame, the WebSocket `subscribed` reply, the server's count of open streams).
//!
//! The demo data (`TestServer::start`) is loaded straight into the store, so the event log
//! starts empty: the first write of a test is event seq 1. Orders 1..=24 exist; order 3 is
//! shipped, so it can no longer be cancelled.

mod common;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{TestServer, expect_problem};
use futures_util::{SinkExt, Stream, StreamExt};
use polyport::config::Config;
use polyport::protocols::grpc::pb::orders_client::OrdersClient;
use polyport::protocols::grpc::pb::{WatchOrdersRequest, watch_orders_response};
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

// ---- helpers ----

/// How long a test waits for something it expects before failing rather than hanging.
const PATIENCE: Duration = Duration::from_secs(10);
const EVENT_STREAM: &str = "text/event-stream";
const LAST_EVENT_ID: &str = "last-event-id";

/// Asserts `status` and returns the JSON body.
async fn expect_json(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let url = response.url().clone();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "{url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
}

/// Creates an order over REST (one item of product 1) and returns it.
async fn create_order(server: &TestServer, customer_id: &str) -> Value {
    let body =
        json!({ "customer_id": customer_id, "items": [{ "product_id": "1", "quantity": 1 }] });
    let response = server.post("/v1/orders").json(&body).send().await.unwrap();
    expect_json(response, 201).await
}

/// Creates `n` orders for customer 1 over REST; returns their ids.
async fn create_orders(server: &TestServer, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(id_of(&create_order(server, "1").await));
    }
    ids
}

fn id_of(order: &Value) -> String {
    order["id"].as_str().expect("a string id").to_owned()
}

async fn cancel_order(server: &TestServer, id: &str) {
    let response = server
        .post(&format!("/v1/orders/{id}/cancellations"))
        .json(&json!({ "reason": "changed my mind" }))
        .send()
        .await
        .unwrap();
    expect_json(response, 201).await;
}

async fn set_status(server: &TestServer, id: &str, status: &str) {
    let response = server
        .patch(&format!("/v1/orders/{id}"))
        .json(&json!({ "status": status }))
        .send()
        .await
        .unwrap();
    expect_json(response, 200).await;
}

async fn get_order(server: &TestServer, id: &str) -> Value {
    expect_json(
        server
            .get(&format!("/v1/orders/{id}"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await
}

/// The newest event seq, as `/readyz` reports it.
async fn last_seq(server: &TestServer) -> u64 {
    let ready = expect_json(server.get("/readyz").send().await.unwrap(), 200).await;
    ready["last_event_seq"].as_u64().expect("last_event_seq")
}

/// The `field`s named in a validation problem's `errors`.
fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {problem}"))
        .iter()
        .map(|e| e["field"].as_str().expect("field is a string").to_owned())
        .collect()
}

/// Every object key anywhere in `value` is snake_case.
fn assert_snake_case(value: &Value, context: &str) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                assert!(
                    !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{context}: key {key:?} is not snake_case"
                );
                assert_snake_case(inner, context);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_snake_case(v, context)),
        _ => {}
    }
}

/// Asserts `event` is an event as every push protocol sends it: `seq`, `type`, `order_id`,
/// `occurred_at` (RFC 3339) and the order in its REST v1 form, all snake_case.
fn assert_event(event: &Value, seq: u64, event_type: &str, order_id: &str) {
    let context = event.to_string();
    assert_eq!(event["seq"], seq, "{context}");
    assert_eq!(event["type"], event_type, "{context}");
    assert_eq!(event["order_id"], order_id, "{context}");
    let occurred_at = event["occurred_at"].as_str().expect("occurred_at");
    assert!(
        humantime::parse_rfc3339(occurred_at).is_ok(),
        "{context}: occurred_at is not RFC 3339"
    );
    let order = &event["order"];
    assert_eq!(order["id"], order_id, "{context}");
    for field in [
        "id",
        "customer_id",
        "status",
        "items",
        "total_cents",
        "currency",
        "created_at",
        "updated_at",
        "version",
        "cancellation",
    ] {
        assert!(
            order.get(field).is_some(),
            "{context}: the order has no {field}"
        );
    }
    assert_snake_case(event, &context);
}

/// The seqs of a list of events (a long poll's `events`).
fn seqs(events: &Value) -> Vec<u64> {
    events
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {events}"))
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

/// The log the filter tests read: order `a` belongs to customer 1, `b` to customer 2.
///
/// ```text
/// 1 a created   2 b created   3 b cancelled   4 a paid (status_changed)
/// ```
/// Each filter case also matches event 5 (`a` cancelled, see [`finish_filter_log`]), written
/// once every stream is open: when a stream's next event is 5, it skipped everything it should.
/// Returns `a`'s id.
async fn filter_log(server: &TestServer) -> String {
    let a = id_of(&create_order(server, "1").await);
    let b = id_of(&create_order(server, "2").await);
    cancel_order(server, &b).await;
    set_status(server, &a, "paid").await;
    a
}

async fn finish_filter_log(server: &TestServer, a: &str) {
    cancel_order(server, a).await;
}

/// One filter, and the seqs of [`filter_log`] (plus event 5) it selects.
struct FilterCase {
    types: &'static [&'static str],
    /// Only order `a`'s events.
    order_a: bool,
    customer_id: &'static str,
    expected: &'static [u64],
}

const FILTER_CASES: [FilterCase; 6] = [
    FilterCase {
        types: &[],
        order_a: false,
        customer_id: "",
        expected: &[1, 2, 3, 4, 5],
    },
    FilterCase {
        types: &["order.cancelled"],
        order_a: false,
        customer_id: "",
        expected: &[3, 5],
    },
    FilterCase {
        types: &["order.created", "order.cancelled"],
        order_a: false,
        customer_id: "",
        expected: &[1, 2, 3, 5],
    },
    FilterCase {
        types: &[],
        order_a: false,
        customer_id: "1",
        expected: &[1, 4, 5],
    },
    FilterCase {
        types: &["order.cancelled"],
        order_a: false,
        customer_id: "1",
        expected: &[5],
    },
    FilterCase {
        types: &[],
        order_a: true,
        customer_id: "",
        expected: &[1, 4, 5],
    },
];

impl FilterCase {
    /// The filter as query parameters; the order filter only if `order_id` is given (SSE puts
    /// the order in the path instead).
    fn query(&self, order_id: Option<&str>) -> String {
        let mut params = Vec::new();
        if !self.types.is_empty() {
            params.push(format!("types={}", self.types.join(",")));
        }
        if !self.customer_id.is_empty() {
            params.push(format!("customer_id={}", self.customer_id));
        }
        if let Some(order_id) = order_id.filter(|_| self.order_a) {
            params.push(format!("order_id={order_id}"));
        }
        params.join("&")
    }

    /// The same filter as a WebSocket subscription's `filter` object.
    fn ws_filter(&self, a: &str) -> Value {
        let mut filter = json!({ "types": self.types });
        if !self.customer_id.is_empty() {
            filter["customer_id"] = json!(self.customer_id);
        }
        if self.order_a {
            filter["order_id"] = json!(a);
        }
        filter
    }
}

// ---- SSE support ----

/// One Server-Sent Events frame: the fields a client acts on, and the comments it ignores.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    comments: Vec<String>,
}

impl Frame {
    fn json(&self) -> Value {
        let data = self
            .data
            .as_deref()
            .unwrap_or_else(|| panic!("no data: {self:?}"));
        serde_json::from_str(data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {self:?}"))
    }

    fn seq(&self) -> u64 {
        let id = self
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("no id: {self:?}"));
        id.parse()
            .unwrap_or_else(|_| panic!("id is not a seq: {self:?}"))
    }
}

/// Reads SSE frames from a response body as they arrive. A frame is the lines up to a blank
/// line; `field: value` lines set its fields (`data` lines accumulate) and `:` lines are
/// comments. (A browser's `EventSource` ignores comments; here they are kept for the keep-alive
/// test.)
struct SseStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    unread: Vec<u8>,
    version: reqwest::Version,
    context: String,
}

impl SseStream {
    /// Sends `request`, checks the answer is an event stream, and starts reading it.
    async fn open(request: reqwest::RequestBuilder) -> Self {
        let response = request.send().await.expect("request");
        let version = response.version();
        let context = format!("{} over {version:?}", response.url());
        assert_eq!(response.status(), 200, "{context}");
        let content_type = response.headers()[CONTENT_TYPE].to_str().unwrap();
        assert!(
            content_type.starts_with(EVENT_STREAM),
            "{context}: {content_type}"
        );
        Self {
            body: Box::pin(response.bytes_stream()),
            unread: Vec::new(),
            version,
            context,
        }
    }

    /// The next frame, or `None` once the body has ended.
    async fn next_frame(&mut self) -> Option<Frame> {
        let mut frame = Frame::default();
        let mut started = false;
        loop {
            while let Some(end) = self.unread.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.unread.drain(..=end).collect();
                let line = String::from_utf8(line).expect("SSE is UTF-8");
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if started {
                        return Some(frame);
                    }
                    continue;
                }
                started = true;
                if let Some(comment) = line.strip_prefix(':') {
                    let comment = comment.strip_prefix(' ').unwrap_or(comment);
                    frame.comments.push(comment.to_owned());
                    continue;
                }
                let (name, value) = match line.split_once(':') {
                    Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
                    None => (line, ""),
                };
                match name {
                    "id" => frame.id = Some(value.to_owned()),
                    "event" => frame.event = Some(value.to_owned()),
                    "data" => match &mut frame.data {
                        Some(data) => {
                            data.push('\n');
                            data.push_str(value);
                        }
                        None => frame.data = Some(value.to_owned()),
                    },
                    "retry" => frame.retry = Some(value.parse().expect("retry is an integer")),
                    _ => {} // unknown fields are ignored, as the spec says
                }
            }
            match tokio::time::timeout(PATIENCE, self.body.next()).await {
                Err(_) => panic!("{}: no frame within {PATIENCE:?}", self.context),
                Ok(Some(Err(error))) => panic!("{}: the body failed: {error}", self.context),
                Ok(Some(Ok(chunk))) => self.unread.extend_from_slice(&chunk),
                Ok(None) => {
                    assert!(
                        !started && self.unread.is_empty(),
                        "{}: the body ended inside a frame",
                        self.context
                    );
                    return None;
                }
            }
        }
    }

    /// The next frame that names an event, skipping comments and the `retry:` hello.
    async fn next_event(&mut self) -> Frame {
        loop {
            match self.next_frame().await {
                None => panic!("{}: the stream ended", self.context),
                Some(frame) if frame.event.is_some() => return frame,
                Some(_) => {}
            }
        }
    }

    /// The next `n` event frames.
    async fn events(&mut self, n: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        for _ in 0..n {
            frames.push(self.next_event().await);
        }
        frames
    }
}

/// A GET of an event stream, as `EventSource` sends it.
fn sse(server: &TestServer, path: &str) -> reqwest::RequestBuilder {
    server.get(path).header(ACCEPT, EVENT_STREAM)
}

/// Opens `path` and reads its first frame, the hello with `retry:`. The server sends the hello
/// and joins the log in one step (nothing in between waits), so anything written after this
/// returns reaches the stream.
async fn live_sse(server: &TestServer, path: &str) -> SseStream {
    let mut stream = SseStream::open(sse(server, path)).await;
    let hello = stream.next_frame().await.expect("a hello frame");
    assert!(hello.retry.is_some(), "{hello:?}");
    stream
}

// ---- WebSocket support ----

fn ws_url(server: &TestServer) -> String {
    format!("ws://{}/v1/ws", server.addr)
}

type Ws = WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws_connect(server: &TestServer) -> Ws {
    let (ws, response) = tokio_tungstenite::connect_async(ws_url(server))
        .await
        .expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

async fn ws_send<S>(ws: &mut WebSocketStream<S>, message: Value)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::text(message.to_string()))
        .await
        .expect("send");
}

/// The next JSON message, skipping the server's pings; a close or an end fails the test.
async fn ws_next<S>(ws: &mut WebSocketStream<S>, context: &str) -> Value
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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

/// The next `n` JSON messages.
async fn ws_messages<S>(ws: &mut WebSocketStream<S>, n: usize, context: &str) -> Vec<Value>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut messages = Vec::new();
    for _ in 0..n {
        messages.push(ws_next(ws, context).await);
    }
    messages
}

/// What a connection received up to the server's close frame.
#[derive(Debug)]
struct Closed {
    code: u16,
    reason: String,
    messages: Vec<Value>,
    pings: usize,
}

/// Reads until the server closes; the close must carry a code.
async fn ws_until_close<S>(ws: &mut WebSocketStream<S>, context: &str) -> Closed
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut messages = Vec::new();
    let mut pings = 0;
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Err(_) => panic!("{context}: no close within {PATIENCE:?}"),
            Ok(None) => panic!("{context}: the connection ended without a close frame"),
            Ok(Some(Err(error))) => panic!("{context}: the connection failed: {error}"),
            Ok(Some(Ok(Message::Close(frame)))) => {
                let frame = frame.unwrap_or_else(|| panic!("{context}: a close without a code"));
                return Closed {
                    code: frame.code.into(),
                    reason: frame.reason.to_string(),
                    messages,
                    pings,
                };
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                messages.push(serde_json::from_str(text.as_str()).expect("JSON"));
            }
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(other))) => panic!("{context}: unexpected {other:?}"),
        }
    }
}

/// Subscribes under `id` with the extra fields of `fields` (filter, after_seq); returns the
/// `last_seq` the server reports. Once this returns the subscription follows the log.
async fn ws_subscribe<S>(ws: &mut WebSocketStream<S>, id: &str, fields: Value) -> u64
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut message = json!({ "op": "subscribe", "id": id, "topic": "orders" });
    message
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().expect("an object").clone());
    ws_send(ws, message.clone()).await;
    let reply = ws_next(ws, &format!("subscribe {message}")).await;
    assert_eq!(reply["op"], "result", "{message} -> {reply}");
    assert_eq!(reply["id"], id, "{reply}");
    reply["subscribed"]["last_seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no subscribed.last_seq: {reply}"))
}

/// Asserts the connection still answers: a ping gets its pong, and nothing comes before it.
async fn assert_ws_usable<S>(ws: &mut WebSocketStream<S>, context: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws_send(ws, json!({ "op": "ping", "id": "still-there" })).await;
    assert_eq!(
        ws_next(ws, context).await,
        json!({ "op": "pong", "id": "still-there" }),
        "{context}"
    );
}

/// A TCP stream that reports a failed write as done. Once a server has closed a connection,
/// tungstenite's automatic replies (the pong it queued for a ping it read, its answer to the
/// close frame) hit a reset socket and turn the next read into an I/O error; with this stream
/// the client still reads every frame the server sent before it closed, close code included.
struct ForgivingSocket(TcpStream);

impl AsyncRead for ForgivingSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ForgivingSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.0).poll_write(cx, buf) {
            Poll::Ready(Err(_)) => Poll::Ready(Ok(buf.len())),
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_flush(cx) {
            Poll::Ready(Err(_)) => Poll::Ready(Ok(())),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_shutdown(cx) {
            Poll::Ready(Err(_)) => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

// ---- long polling support ----

/// `GET /v1/events/poll?{query}`: must answer 200 with JSON, uncached.
async fn poll(server: &TestServer, query: &str) -> Value {
    let response = server
        .get(&format!("/v1/events/poll?{query}"))
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap_or_else(|e| panic!("poll ?{query}: {e}"));
    assert_eq!(
        response
            .headers()
            .get(CACHE_CONTROL)
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "?{query}"
    );
    expect_json(response, 200).await
}

// ---- 1. SSE ----

#[tokio::test]
async fn sse_frames_carry_the_seq_as_id_the_type_as_event_and_the_event_as_json_data() {
    let mut config = Config::default();
    config.push.sse_retry = Duration::from_millis(2_500);
    let server = TestServer::with_config(config).await;
    let mut stream = SseStream::open(sse(&server, "/v1/events")).await;
    let hello = stream.next_frame().await.expect("a first frame");
    assert_eq!(hello.retry, Some(2_500), "the configured retry: {hello:?}");
    assert_eq!((hello.id, hello.event, hello.data), (None, None, None));

    // Writes made over REST after the hello show up as frames.
    let created = create_order(&server, "2").await;
    let id = id_of(&created);
    cancel_order(&server, &id).await;
    let frames = stream.events(2).await;
    for (frame, seq, event_type) in [
        (&frames[0], 1, "order.created"),
        (&frames[1], 2, "order.cancelled"),
    ] {
        assert_eq!(frame.seq(), seq, "{frame:?}");
        assert_eq!(frame.event.as_deref(), Some(event_type), "{frame:?}");
        assert_eq!(frame.retry, None, "{frame:?}");
        assert_event(&frame.json(), seq, event_type, &id);
    }
    // The order is the REST v1 representation as it was right after the change.
    assert_eq!(frames[0].json()["order"], created);
    let cancelled = frames[1].json();
    assert_eq!(cancelled["order"], get_order(&server, &id).await);
    assert_eq!(cancelled["order"]["status"], "cancelled");
    assert_eq!(cancelled["from_status"], "pending");
}

#[tokio::test]
async fn sse_filters_select_events_by_type_customer_and_order() {
    let server = TestServer::start().await;
    let a = filter_log(&server).await;
    let mut streams = Vec::new();
    for case in &FILTER_CASES {
        let path = if case.order_a {
            format!("/v1/orders/{a}/events?{}", case.query(None))
        } else {
            format!("/v1/events?{}", case.query(None))
        };
        // Resuming after 0 replays the log written so far, then goes live.
        let mut stream = SseStream::open(sse(&server, &path).header(LAST_EVENT_ID, "0")).await;
        let replayed = stream.events(case.expected.len() - 1).await;
        streams.push((path, stream, replayed, case.expected));
    }
    finish_filter_log(&server, &a).await;
    for (path, mut stream, mut frames, expected) in streams {
        frames.push(stream.next_event().await);
        let got: Vec<u64> = frames.iter().map(Frame::seq).collect();
        assert_eq!(got, expected, "{path}");
    }
}

#[tokio::test]
async fn an_event_stream_is_served_to_clients_that_accept_it_or_send_no_accept() {
    let server = TestServer::start().await;
    for accept in [
        EVENT_STREAM,
        "text/*",
        "*/*",
        "application/json;q=0.5, text/event-stream",
    ] {
        let mut stream = SseStream::open(server.get("/v1/events").header(ACCEPT, accept)).await;
        let hello = stream.next_frame().await.expect(accept);
        assert_eq!(hello.retry, Some(3_000), "{accept}: {hello:?}");
    }

    // reqwest always sends an Accept header, so "no Accept" takes a hand-written request.
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let request = format!("GET /v1/events HTTP/1.1\r\nhost: {}\r\n\r\n", server.addr);
    tokio::io::AsyncWriteExt::write_all(&mut socket, request.as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0; 1];
        let read = tokio::time::timeout(
            PATIENCE,
            tokio::io::AsyncReadExt::read(&mut socket, &mut byte),
        )
        .await
        .expect("a response head")
        .unwrap();
        assert_eq!(read, 1, "the connection ended inside the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
}

#[tokio::test]
async fn bad_stream_requests_are_refused_with_a_problem() {
    let server = TestServer::start().await;
    let send = |path: &str, header: Option<(&str, &str)>| {
        let mut request = server.get(path);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.send()
    };
    // (what, path, header, the field named in the validation problem's `errors`)
    let invalid = [
        (
            "an unknown event type",
            "/v1/events?types=order.created,order.exploded",
            None,
            "types[1]",
        ),
        (
            "an unknown query parameter",
            "/v1/events?colour=blue",
            None,
            "colour",
        ),
        (
            "a repeated query parameter",
            "/v1/events?customer_id=1&customer_id=2",
            None,
            "customer_id",
        ),
        (
            "a customer filter on one order's stream",
            "/v1/orders/1/events?customer_id=1",
            None,
            "customer_id",
        ),
        (
            "a non-numeric Last-Event-ID",
            "/v1/events",
            Some((LAST_EVENT_ID, "seven")),
            "Last-Event-ID",
        ),
        (
            "a negative last_event_id",
            "/v1/events?last_event_id=-1",
            None,
            "last_event_id",
        ),
    ];
    for (what, path, header, field) in invalid {
        let problem = expect_problem(send(path, header).await.unwrap(), 400, "validation").await;
        assert_eq!(error_fields(&problem), [field], "{what}: {problem}");
    }
    // (what, path, header, status, problem slug)
    let refused = [
        (
            "an Accept without event streams",
            "/v1/events",
            Some(("accept", "application/json")),
            406,
            "not-acceptable",
        ),
        (
            "an order that does not exist",
            "/v1/orders/999/events",
            None,
            404,
            "not-found",
        ),
        (
            "an order id that is not one",
            "/v1/orders/abc/events",
            None,
            404,
            "not-found",
        ),
    ];
    for (what, path, header, status, slug) in refused {
        let response = send(path, header).await.unwrap();
        let problem = expect_problem(response, status, slug).await;
        assert!(problem.get("errors").is_none(), "{what}: {problem}");
    }
    server
        .wait_for_streams(0, "no refused request left a stream open")
        .await;
}

#[tokio::test]
async fn last_event_id_replays_the_events_after_it_then_continues_live_with_no_gap_or_duplicate() {
    const WRITES: u64 = 200;
    let server = TestServer::start().await;
    let writer = {
        let client = server.client.clone();
        let url = server.url("/v1/orders");
        tokio::spawn(async move {
            for i in 0..WRITES {
                let customer = (i % 8 + 1).to_string();
                let body = json!({ "customer_id": customer, "items": [{ "product_id": "2", "quantity": 1 }] });
                let response = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 201);
            }
        })
    };
    // Join in the middle of the writes: the replay is taken while they go on.
    tokio::time::timeout(PATIENCE, async { while last_seq(&server).await < 20 {} })
        .await
        .expect("the writes begin");
    let mut stream = SseStream::open(sse(&server, "/v1/events").header(LAST_EVENT_ID, "10")).await;
    let mut seen = Vec::new();
    while seen.last() != Some(&WRITES) {
        let frame = stream.next_event().await;
        assert_eq!(frame.event.as_deref(), Some("order.created"), "{frame:?}");
        seen.push(frame.seq());
    }
    writer.await.expect("writer");
    assert_eq!(seen, (11..=WRITES).collect::<Vec<_>>());
}

#[tokio::test]
async fn last_event_id_works_as_a_query_parameter_and_the_header_wins() {
    let server = TestServer::start().await;
    create_orders(&server, 5).await;
    // (query, header, the seqs that follow)
    let cases = [
        ("?last_event_id=2", None, vec![3, 4, 5]),
        ("?last_event_id=1", Some("3"), vec![4, 5]),
        ("", Some("4"), vec![5]),
    ];
    for (query, header, expected) in cases {
        let mut request = sse(&server, &format!("/v1/events{query}"));
        if let Some(header) = header {
            request = request.header(LAST_EVENT_ID, header);
        }
        let mut stream = SseStream::open(request).await;
        let got: Vec<u64> = stream
            .events(expected.len())
            .await
            .iter()
            .map(Frame::seq)
            .collect();
        assert_eq!(got, expected, "{query} / {header:?}");
    }
}

#[tokio::test]
async fn resuming_from_before_the_retained_events_first_sends_a_reset_frame() {
    let mut config = Config::default();
    config.events.retain = 3;
    let server = TestServer::with_config(config).await;
    create_orders(&server, 10).await; // seqs 1..=10; 8, 9 and 10 are retained

    let mut stream = SseStream::open(sse(&server, "/v1/events").header(LAST_EVENT_ID, "1")).await;
    let reset = stream.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("reset"), "{reset:?}");
    // Its id is where the stream resumed, so a reconnect after it does not ask for 2..=7 again.
    assert_eq!(reset.seq(), 7, "{reset:?}");
    assert_eq!(
        reset.json(),
        json!({ "requested_after": 1, "resumed_after": 7 })
    );
    let seqs: Vec<u64> = stream.events(3).await.iter().map(Frame::seq).collect();
    assert_eq!(seqs, [8, 9, 10]);

    // A seq this server never reached (the client saw it before a restart; the log is in
    // memory): the reset says where the log is now, and live events follow from there.
    let mut stream = SseStream::open(sse(&server, "/v1/events").header(LAST_EVENT_ID, "50")).await;
    let reset = stream.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("reset"), "{reset:?}");
    assert_eq!(reset.seq(), 10, "{reset:?}");
    assert_eq!(
        reset.json(),
        json!({ "requested_after": 50, "resumed_after": 10 })
    );
    create_orders(&server, 1).await;
    assert_eq!(stream.next_event().await.seq(), 11);
}

#[tokio::test]
async fn an_idle_event_stream_receives_ping_comments() {
    let mut config = Config::default();
    config.push.sse_keepalive = Duration::from_millis(100);
    let server = TestServer::with_config(config).await;
    let mut stream = live_sse(&server, "/v1/events").await;
    let frame = stream.next_frame().await.expect("a keep-alive");
    assert_eq!(frame.comments, ["ping"], "{frame:?}");
    assert_eq!((frame.id, frame.event, frame.data), (None, None, None));
}

#[tokio::test]
async fn an_event_stream_works_over_http2() {
    let server = TestServer::start().await;
    let first = id_of(&create_order(&server, "1").await);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let request = client
        .get(server.url("/v1/events"))
        .header(ACCEPT, EVENT_STREAM)
        .header(LAST_EVENT_ID, "0");
    let mut stream = SseStream::open(request).await;
    assert_eq!(stream.version, reqwest::Version::HTTP_2);
    let replayed = stream.next_event().await;
    assert_event(&replayed.json(), 1, "order.created", &first);
    let second = id_of(&create_order(&server, "2").await);
    let live = stream.next_event().await;
    assert_event(&live.json(), 2, "order.created", &second);
}

#[tokio::test]
async fn shutdown_ends_an_event_stream() {
    let server = TestServer::start().await;
    let mut stream = live_sse(&server, "/v1/events").await;
    let (stopped, rest) = tokio::join!(tokio::time::timeout(PATIENCE, server.stop()), async {
        let mut rest = Vec::new();
        while let Some(frame) = stream.next_frame().await {
            rest.push(frame);
        }
        rest
    });
    stopped.expect("the server stops").expect("cleanly");
    assert!(rest.iter().all(|f| f.event.is_none()), "{rest:?}");
}

// ---- 2. WebSocket ----

#[tokio::test]
async fn a_websocket_ping_is_answered_with_a_pong_carrying_its_id() {
    let server = TestServer::start().await;
    let mut ws = ws_connect(&server).await;
    for (ping, pong) in [
        (
            json!({ "op": "ping", "id": "p1" }),
            json!({ "op": "pong", "id": "p1" }),
        ),
        (
            json!({ "op": "ping", "id": "p2" }),
            json!({ "op": "pong", "id": "p2" }),
        ),
        (json!({ "op": "ping" }), json!({ "op": "pong", "id": null })),
    ] {
        ws_send(&mut ws, ping.clone()).await;
        assert_eq!(ws_next(&mut ws, &ping.to_string()).await, pong);
    }
}

#[tokio::test]
async fn a_websocket_subscription_with_after_seq_replays_then_continues_live() {
    let server = TestServer::start().await;
    let mut ids = create_orders(&server, 3).await;
    let mut ws = ws_connect(&server).await;
    assert_eq!(
        ws_subscribe(&mut ws, "s1", json!({ "after_seq": 1 })).await,
        3
    );
    let mut events = ws_messages(&mut ws, 2, "replay").await;
    ids.push(id_of(&create_order(&server, "4").await));
    events.push(ws_next(&mut ws, "live").await);
    for (event, seq) in events.iter().zip(2..) {
        assert_eq!(event["op"], "event", "{event}");
        assert_eq!(event["subscription"], "s1", "{event}");
        assert_event(event, seq, "order.created", &ids[seq as usize - 1]);
    }
}

#[tokio::test]
async fn websocket_subscriptions_filter_by_type_customer_and_order() {
    let server = TestServer::start().await;
    let a = filter_log(&server).await;
    let mut connections = Vec::new();
    for case in &FILTER_CASES {
        let filter = case.ws_filter(&a);
        let mut ws = ws_connect(&server).await;
        ws_subscribe(&mut ws, "s1", json!({ "filter": filter, "after_seq": 0 })).await;
        let context = filter.to_string();
        let replayed = ws_messages(&mut ws, case.expected.len() - 1, &context).await;
        connections.push((context, ws, replayed, case.expected));
    }
    finish_filter_log(&server, &a).await;
    for (context, mut ws, mut events, expected) in connections {
        events.push(ws_next(&mut ws, &context).await);
        let got: Vec<u64> = events
            .iter()
            .map(|e| e["seq"].as_u64().expect("seq"))
            .collect();
        assert_eq!(got, expected, "{context}");
    }
}

#[tokio::test]
async fn a_websocket_create_order_command_answers_with_the_order_and_its_event_follows() {
    let server = TestServer::start().await;
    let mut ws = ws_connect(&server).await;
    assert_eq!(ws_subscribe(&mut ws, "s1", json!({})).await, 0);
    ws_send(
        &mut ws,
        json!({
            "op": "create_order", "id": "c1", "customer_id": "2",
            "items": [{ "product_id": "3", "quantity": 2 }],
        }),
    )
    .await;
    // The command's answer and the event it caused travel separately: take them in any order.
    let mut messages = ws_messages(&mut ws, 2, "create_order").await;
    messages.sort_by_key(|m| m["op"].as_str().map(str::to_owned));
    let (event, result) = (&messages[0], &messages[1]);
    assert_eq!(result["op"], "result", "{result}");
    assert_eq!(result["id"], "c1", "{result}");
    let order = &result["order"];
    let id = id_of(order);
    assert_eq!(order["customer_id"], "2");
    assert_eq!(order["status"], "pending");
    assert_eq!(order["items"][0]["product_id"], "3");
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(*order, get_order(&server, &id).await, "the REST v1 form");

    assert_eq!(event["op"], "event", "{event}");
    assert_eq!(event["subscription"], "s1", "{event}");
    assert_event(event, 1, "order.created", &id);
    assert_eq!(event["order"], *order);

    ws_send(
        &mut ws,
        json!({ "op": "get_order", "id": "g1", "order_id": id }),
    )
    .await;
    assert_eq!(
        ws_next(&mut ws, "get_order").await,
        json!({ "op": "result", "id": "g1", "order": order })
    );
}

#[tokio::test]
async fn bad_websocket_messages_get_an_error_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let mut ws = ws_connect(&server).await;
    let text = |value: Value| Message::text(value.to_string());
    // (what, message, the id echoed, status, problem type)
    let cases = [
        (
            "cancelling a shipped order",
            text(json!({ "op": "cancel_order", "id": "c1", "order_id": "3", "reason": "late" })),
            json!("c1"),
            409,
            "/problems/illegal-transition",
        ),
        (
            "reading an order that does not exist",
            text(json!({ "op": "get_order", "id": "g1", "order_id": "999" })),
            json!("g1"),
            404,
            "/problems/not-found",
        ),
        (
            "creating an order of an unknown product",
            text(json!({
                "op": "create_order", "id": "c2", "customer_id": "1",
                "items": [{ "product_id": "999", "quantity": 1 }],
            })),
            json!("c2"),
            400,
            "/problems/validation",
        ),
        (
            "malformed JSON",
            Message::text(r#"{"op":"ping","id":"p1""#),
            Value::Null,
            400,
            "/problems/malformed-body",
        ),
        (
            "an unknown op",
            text(json!({ "op": "explode", "id": "x1" })),
            json!("x1"),
            400,
            "/problems/validation",
        ),
        (
            "no op at all",
            text(json!({ "id": "x2" })),
            json!("x2"),
            400,
            "/problems/validation",
        ),
        (
            "an unknown field",
            text(json!({ "op": "ping", "id": "x3", "colour": "blue" })),
            json!("x3"),
            400,
            "/problems/validation",
        ),
        (
            "an unknown event type in a filter",
            text(
                json!({ "op": "subscribe", "id": "s1", "filter": { "types": ["order.exploded"] } }),
            ),
            json!("s1"),
            400,
            "/problems/validation",
        ),
        (
            "a topic other than orders",
            text(json!({ "op": "subscribe", "id": "s2", "topic": "customers" })),
            json!("s2"),
            400,
            "/problems/validation",
        ),
        (
            "unsubscribing what was never subscribed",
            text(json!({ "op": "unsubscribe", "id": "s3" })),
            json!("s3"),
            400,
            "/problems/validation",
        ),
        (
            "a binary frame",
            Message::binary(b"{}".to_vec()),
            Value::Null,
            400,
            "/problems/validation",
        ),
    ];
    for (what, message, id, status, problem_type) in cases {
        ws.send(message).await.expect("send");
        let reply = ws_next(&mut ws, what).await;
        assert_eq!(reply["op"], "error", "{what}: {reply}");
        assert_eq!(reply["id"], id, "{what}: {reply}");
        assert_eq!(reply["status"], status, "{what}: {reply}");
        assert_eq!(reply["type"], problem_type, "{what}: {reply}");
        assert!(reply["detail"].is_string(), "{what}: {reply}");
        assert!(reply["trace_id"].is_string(), "{what}: {reply}");
        assert_ws_usable(&mut ws, what).await;
    }
    assert_eq!(get_order(&server, "3").await["status"], "shipped");
}

#[tokio::test]
async fn unsubscribing_stops_a_subscriptions_events() {
    let server = TestServer::start().await;
    let mut ws = ws_connect(&server).await;
    ws_subscribe(&mut ws, "gone", json!({})).await;
    ws_subscribe(&mut ws, "kept", json!({})).await;
    ws_send(&mut ws, json!({ "op": "unsubscribe", "id": "gone" })).await;
    assert_eq!(
        ws_next(&mut ws, "unsubscribe").await,
        json!({ "op": "result", "id": "gone", "unsubscribed": true })
    );
    let id = id_of(&create_order(&server, "1").await);
    let event = ws_next(&mut ws, "the kept subscription's event").await;
    assert_eq!(event["subscription"], "kept", "{event}");
    assert_event(&event, 1, "order.created", &id);
    // Had "gone" still been following, its copy of event 1 would have come before this pong.
    assert_ws_usable(&mut ws, "after the event").await;
}

#[tokio::test]
async fn resubscribing_an_id_replaces_its_subscription_and_a_connection_holds_at_most_32() {
    let server = TestServer::start().await;
    let mut ws = ws_connect(&server).await;
    ws_subscribe(&mut ws, "s0", json!({})).await;
    ws_subscribe(&mut ws, "s0", json!({})).await;
    let id = id_of(&create_order(&server, "1").await);
    let event = ws_next(&mut ws, "one event for s0").await;
    assert_event(&event, 1, "order.created", &id);
    // Had the first "s0" still been following, its copy of event 1 would come before this pong.
    assert_ws_usable(&mut ws, "after the event").await;

    for i in 1..32 {
        ws_subscribe(&mut ws, &format!("s{i}"), json!({})).await;
    }
    ws_send(&mut ws, json!({ "op": "subscribe", "id": "s32" })).await;
    let error = ws_next(&mut ws, "a 33rd subscription").await;
    assert_eq!(error["op"], "error", "{error}");
    assert_eq!(error["id"], "s32", "{error}");
    assert_eq!(error["status"], 400, "{error}");
    assert_eq!(error_fields(&error), ["id"]);
    // Replacing one of the 32 is still allowed.
    ws_subscribe(&mut ws, "s7", json!({ "after_seq": 0 })).await;
    assert_eq!(
        ws_next(&mut ws, "the replay of s7").await["subscription"],
        "s7"
    );
}

#[tokio::test]
async fn resubscribing_after_a_reconnect_with_after_seq_gets_exactly_the_missed_events() {
    let server = TestServer::start().await;
    let mut ws = ws_connect(&server).await;
    ws_subscribe(&mut ws, "s1", json!({})).await;
    create_orders(&server, 3).await;
    let mut seen: Vec<u64> = ws_messages(&mut ws, 3, "before the reconnect")
        .await
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    ws.close(None).await.expect("close");
    drop(ws);

    create_orders(&server, 3).await; // 4..=6, while disconnected
    let mut ws = ws_connect(&server).await;
    let after_seq = *seen.last().unwrap();
    assert_eq!(
        ws_subscribe(&mut ws, "s1", json!({ "after_seq": after_seq })).await,
        6
    );
    create_orders(&server, 1).await; // 7, live
    seen.extend(
        ws_messages(&mut ws, 4, "after the reconnect")
            .await
            .iter()
            .map(|e| e["seq"].as_u64().unwrap()),
    );
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_websocket_subscription_from_before_the_retained_events_first_gets_a_reset() {
    let mut config = Config::default();
    config.events.retain = 3;
    let server = TestServer::with_config(config).await;
    create_orders(&server, 10).await;
    let mut ws = ws_connect(&server).await;
    assert_eq!(
        ws_subscribe(&mut ws, "s1", json!({ "after_seq": 1 })).await,
        10
    );
    let messages = ws_messages(&mut ws, 4, "reset, then the retained events").await;
    assert_eq!(
        messages[0],
        json!({ "op": "reset", "subscription": "s1", "requested_after": 1, "resumed_after": 7 })
    );
    let seqs: Vec<u64> = messages[1..]
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [8, 9, 10]);
}

#[tokio::test]
async fn a_websocket_that_is_not_read_is_closed_as_a_slow_consumer_while_others_carry_on() {
    let mut config = Config::default();
    config.push.ws_queue = 4;
    config.push.ws_send_timeout = Duration::from_millis(200);
    config.events.subscriber_buffer = 10_000;
    let server = TestServer::with_config(config).await;
    let mut witness = SseStream::open(sse(&server, "/v1/events").header(LAST_EVENT_ID, "0")).await;
    // A small receive window, so that the unread events back up into the server's queue
    // instead of vanishing into socket buffers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let socket = socket.connect(server.addr).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(ws_url(&server), socket)
        .await
        .expect("WebSocket handshake");
    ws_subscribe(&mut slow, "s1", json!({})).await;

    // 1 000 large events (some 7 MB, more than the sockets' buffers hold) in ten bursts, while
    // the slow client reads nothing.
    let items: Vec<Value> = (0..100)
        .map(|i| json!({ "product_id": (i % 24 + 1).to_string(), "quantity": 1 }))
        .collect();
    let order = json!({ "customer_id": "1", "items": items });
    for _ in 0..10 {
        let bulk = json!({ "orders": vec![order.clone(); 100] });
        let response = server
            .post("/v1/orders/bulk")
            .json(&bulk)
            .send()
            .await
            .unwrap();
        expect_json(response, 200).await;
    }
    let seen: Vec<u64> = witness.events(1000).await.iter().map(Frame::seq).collect();
    assert_eq!(
        seen,
        (1..=1000).collect::<Vec<_>>(),
        "the SSE client got every event"
    );
    // The server lets the slow client go (only the SSE witness's stream remains).
    server
        .wait_for_streams(1, "the server let go of the slow consumer")
        .await;

    // What the slow client gets when it finally reads: a gap-free prefix of the events, then
    // the 4008 close frame if it still fitted into the socket, or the end of the connection.
    let mut delivered: Vec<u64> = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, slow.next()).await {
            Err(_) => panic!("the slow client: neither a close nor the end within {PATIENCE:?}"),
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(Message::Close(frame)))) => {
                let frame = frame.expect("a close with a code");
                assert_eq!(u16::from(frame.code), 4008, "{frame:?}");
                assert!(frame.reason.contains("slow consumer"), "{frame:?}");
                break;
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                let message: Value = serde_json::from_str(text.as_str()).expect("JSON");
                delivered.push(message["seq"].as_u64().unwrap());
            }
            Ok(Some(Ok(_))) => {}
        }
    }
    assert!(delivered.len() < 1000, "the slow client got everything");
    assert_eq!(delivered, (1..=delivered.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_websocket_message_over_the_limit_closes_with_1009_and_the_server_carries_on() {
    let mut config = Config::default();
    config.push.ws_max_message_bytes = 1024;
    let server = TestServer::with_config(config).await;
    let mut ws = ws_connect(&server).await;
    assert_ws_usable(&mut ws, "a small message").await;
    ws_send(&mut ws, json!({ "op": "ping", "id": "x".repeat(2_000) })).await;
    let closed = ws_until_close(&mut ws, "an oversized message").await;
    assert_eq!(closed.code, 1009, "{closed:?}");
    assert!(closed.messages.is_empty(), "{closed:?}");

    let mut again = ws_connect(&server).await;
    assert_ws_usable(&mut again, "a new connection").await;
}

#[tokio::test]
async fn a_websocket_client_that_never_answers_pings_is_closed_with_4000() {
    let mut config = Config::default();
    config.push.ws_ping_interval = Duration::from_millis(100);
    config.push.ws_idle_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    let socket = TcpStream::connect(server.addr).await.unwrap();
    let (mut silent, _) = tokio_tungstenite::client_async(ws_url(&server), ForgivingSocket(socket))
        .await
        .expect("WebSocket handshake");
    // tungstenite answers a ping only when the application reads (or writes) next: it queues
    // the pong as it reads the ping. So a client that neither reads nor writes never answers.
    server.wait_for_streams(1, "the session started").await;
    server
        .wait_for_streams(0, "the server closed the silent client")
        .await;
    let closed = ws_until_close(&mut silent, "the silent client").await;
    assert_eq!(closed.code, 4000, "{closed:?}");
    assert!(!closed.reason.is_empty(), "{closed:?}");
    assert!(
        closed.pings >= 1,
        "the server pinged before giving up: {closed:?}"
    );
    assert!(closed.messages.is_empty(), "{closed:?}");
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_even_when_its_socket_is_full() {
    // The default heartbeat (pings every 15 s) and queue (256 messages): here only the queue
    // overflowing can end the session. Once it has, the module docs say the client is closed
    // (4008); a client that reads nothing can only see that as the server letting go of it, as
    // no close frame fits into its full socket.
    let server = TestServer::start().await;
    // A small receive window, so that what the server writes backs up sooner.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let socket = socket.connect(server.addr).await.unwrap();
    let (mut stalled, _) = tokio_tungstenite::client_async(ws_url(&server), socket)
        .await
        .expect("WebSocket handshake");
    ws_subscribe(&mut stalled, "s1", json!({})).await;
    // Some 9 MB of events (orders of 100 items), none of which the client reads: far more than
    // the sockets' buffers hold, and then more than the 256 messages the queue holds.
    let items: Vec<Value> = (0..100)
        .map(|i| json!({ "product_id": (i % 24 + 1).to_string(), "quantity": 1 }))
        .collect();
    let order = json!({ "customer_id": "1", "items": items });
    for _ in 0..10 {
        let bulk = json!({ "orders": vec![order.clone(); 100] });
        let response = server
            .post("/v1/orders/bulk")
            .json(&bulk)
            .send()
            .await
            .unwrap();
        expect_json(response, 200).await;
    }
    server
        .wait_for_streams(0, "the server let go of the slow consumer")
        .await;
    drop(stalled);
}

#[tokio::test]
async fn a_websocket_client_that_keeps_reading_answers_pings_and_stays_open() {
    let mut config = Config::default();
    config.push.ws_ping_interval = Duration::from_millis(100);
    config.push.ws_idle_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    let mut ws = ws_connect(&server).await;
    // The client sends nothing of its own: only the pongs tungstenite queues as it reads.
    // Ten pings span more than three idle timeouts.
    let mut pings = 0;
    while pings < 10 {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            other => panic!("after {pings} pings, expected another, got {other:?}"),
        }
    }
    assert_ws_usable(&mut ws, "after ten pings").await;
}

#[tokio::test]
async fn shutdown_closes_a_websocket_with_1001() {
    let server = TestServer::start().await;
    let mut ws = ws_connect(&server).await;
    ws_subscribe(&mut ws, "s1", json!({})).await;
    let (stopped, closed) = tokio::join!(
        tokio::time::timeout(PATIENCE, server.stop()),
        ws_until_close(&mut ws, "at shutdown")
    );
    stopped.expect("the server stops").expect("cleanly");
    assert_eq!(closed.code, 1001, "{closed:?}");
}

/// Asserts that a new stream of every kind is refused with a 503 problem.
async fn assert_new_streams_refused(server: &TestServer, context: &str) {
    let response = sse(server, "/v1/events").send().await.unwrap();
    expect_problem(response, 503, "unavailable").await;
    let response = server
        .get("/v1/events/poll?timeout=1s")
        .send()
        .await
        .unwrap();
    expect_problem(response, 503, "unavailable").await;
    match tokio_tungstenite::connect_async(ws_url(server)).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503, "{context}");
            assert_eq!(
                response.headers()[CONTENT_TYPE.as_str()],
                "application/problem+json",
                "{context}"
            );
            let body: Value =
                serde_json::from_slice(response.body().as_deref().expect("a body")).unwrap();
            assert_eq!(body["type"], "/problems/unavailable", "{context}: {body}");
        }
        Err(other) => panic!("{context}: expected a 503, got {other}"),
        Ok(_) => panic!("{context}: a WebSocket was admitted"),
    }
}

#[tokio::test]
async fn a_stream_over_push_max_streams_is_refused_with_503() {
    let mut config = Config::default();
    config.push.max_streams = 1;
    let server = TestServer::with_config(config).await;

    let held = live_sse(&server, "/v1/events").await;
    server
        .wait_for_streams(1, "an SSE stream holds the slot")
        .await;
    assert_new_streams_refused(&server, "an SSE stream holds the slot").await;
    drop(held);
    server.wait_for_streams(0, "the SSE stream let go").await;

    let mut held = ws_connect(&server).await;
    assert_ws_usable(&mut held, "the one WebSocket").await;
    server
        .wait_for_streams(1, "a WebSocket holds the slot")
        .await;
    assert_new_streams_refused(&server, "a WebSocket holds the slot").await;
    held.close(None).await.expect("close");
    server.wait_for_streams(0, "the WebSocket let go").await;

    let mut ws = ws_connect(&server).await;
    assert_ws_usable(&mut ws, "once the slot is free").await;
}

// ---- 3. long polling ----

#[tokio::test]
async fn a_poll_returns_the_events_after_since_at_once() {
    let server = TestServer::start().await;
    let ids = create_orders(&server, 3).await;
    // A long timeout: the answer does not wait for it, as events are already there.
    let body = poll(&server, "since=1&timeout=60s").await;
    assert_eq!(seqs(&body["events"]), [2, 3]);
    assert_eq!(body["next_since"], 3);
    assert_eq!(body.get("reset"), None, "{body}");
    for (event, seq) in body["events"].as_array().unwrap().iter().zip(2..) {
        assert_event(event, seq, "order.created", &ids[seq as usize - 1]);
    }
    // No `since` means from the start of the log.
    assert_eq!(seqs(&poll(&server, "").await["events"]), [1, 2, 3]);
}

#[tokio::test]
async fn a_poll_with_nothing_new_is_held_until_a_write_wakes_it() {
    let server = TestServer::start().await;
    create_orders(&server, 1).await;
    let held = tokio::spawn(
        server
            .get("/v1/events/poll?since=1&timeout=30s")
            .timeout(PATIENCE)
            .send(),
    );
    // The poll counts as a stream while it is held, and it joined the log before that.
    server.wait_for_streams(1, "the poll is held").await;
    let order = create_order(&server, "5").await;
    let body = expect_json(held.await.unwrap().expect("the poll answers"), 200).await;
    assert_eq!(seqs(&body["events"]), [2], "{body}");
    assert_event(&body["events"][0], 2, "order.created", &id_of(&order));
    assert_eq!(body["events"][0]["order"], order);
    assert_eq!(body["next_since"], 2);
}

#[tokio::test]
async fn a_poll_that_times_out_answers_200_with_no_events_and_the_same_since() {
    let server = TestServer::start().await;
    create_orders(&server, 2).await;
    let mut polls = Vec::new();
    for timeout in ["500ms", "1", "1s"] {
        let request = server
            .get(&format!("/v1/events/poll?since=2&timeout={timeout}"))
            .timeout(PATIENCE)
            .send();
        polls.push((timeout, tokio::spawn(request)));
    }
    for (timeout, held) in polls {
        let response = held.await.unwrap().expect("the poll answers");
        assert_eq!(
            expect_json(response, 200).await,
            json!({ "events": [], "next_since": 2 }),
            "timeout={timeout}"
        );
    }
}

#[tokio::test]
async fn a_poll_timeout_above_the_maximum_is_capped() {
    let mut config = Config::default();
    config.push.long_poll_max_timeout = Duration::from_millis(200);
    let server = TestServer::with_config(config).await;
    for timeout in ["60s", "1h"] {
        assert_eq!(
            poll(&server, &format!("since=0&timeout={timeout}")).await,
            json!({ "events": [], "next_since": 0 }),
            "timeout={timeout}"
        );
    }
}

#[tokio::test]
async fn bad_poll_parameters_are_refused_naming_the_parameter() {
    let server = TestServer::start().await;
    let cases = [
        ("timeout=soon", "timeout"),
        ("timeout=-1s", "timeout"),
        ("since=abc", "since"),
        ("since=-1", "since"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("types=order.exploded", "types[0]"),
        ("colour=blue", "colour"),
        ("since=1&since=2", "since"),
    ];
    for (query, field) in cases {
        let response = server
            .get(&format!("/v1/events/poll?{query}"))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert_eq!(error_fields(&problem), [field], "{query}");
    }
}

#[tokio::test]
async fn polling_with_a_limit_and_next_since_walks_the_log_with_no_gap_or_duplicate() {
    let server = TestServer::start().await;
    create_orders(&server, 5).await;
    let mut pages = Vec::new();
    let mut since = 0;
    loop {
        let body = poll(&server, &format!("since={since}&limit=2&timeout=100ms")).await;
        let page = seqs(&body["events"]);
        since = body["next_since"].as_u64().expect("next_since");
        if page.is_empty() {
            break;
        }
        assert!(pages.len() < 10, "the walk does not end: {pages:?}");
        pages.push(page);
    }
    assert_eq!(pages, [vec![1, 2], vec![3, 4], vec![5]]);
    assert_eq!(since, 5);
}

#[tokio::test]
async fn polls_filter_by_type_customer_and_order() {
    let server = TestServer::start().await;
    let a = filter_log(&server).await;
    for case in &FILTER_CASES {
        // The log holds 1..=4; event 5, which every case matches, is not written here.
        let expected: Vec<u64> = case.expected.iter().copied().filter(|&s| s < 5).collect();
        if expected.is_empty() {
            continue; // such a poll is held until its timeout: nothing to learn here
        }
        let query = format!("since=0&{}", case.query(Some(&a)));
        let body = poll(&server, &query).await;
        assert_eq!(seqs(&body["events"]), expected, "{query}");
        // Events that did not match were looked at too: the next poll starts after them.
        assert_eq!(body["next_since"], 4, "{query}");
    }
}

#[tokio::test]
async fn a_poll_from_before_the_retained_events_says_what_was_missed() {
    let mut config = Config::default();
    config.events.retain = 3;
    let server = TestServer::with_config(config).await;
    create_orders(&server, 10).await;
    let body = poll(&server, "since=1").await;
    assert_eq!(seqs(&body["events"]), [8, 9, 10]);
    assert_eq!(body["next_since"], 10);
    assert_eq!(
        body["reset"],
        json!({ "requested_after": 1, "resumed_after": 7 })
    );
}

#[tokio::test]
async fn a_poll_from_a_seq_this_server_never_reached_says_where_the_log_is_now() {
    // The client polled a server that has since restarted (the log is in memory).
    let before = TestServer::start().await;
    create_orders(&before, 5).await;
    let since = poll(&before, "since=0").await["next_since"]
        .as_u64()
        .unwrap();
    assert_eq!(since, 5);
    before.stop().await.unwrap();

    let after = TestServer::start().await;
    create_orders(&after, 2).await;
    let body = poll(&after, &format!("since={since}&timeout=30s")).await;
    assert_eq!(
        body,
        json!({
            "events": [],
            "next_since": 2,
            "reset": { "requested_after": 5, "resumed_after": 2 },
        })
    );
    create_orders(&after, 1).await;
    let body = poll(&after, "since=2").await;
    assert_eq!(seqs(&body["events"]), [3]);
    assert_eq!(body.get("reset"), None, "{body}");
}

// ---- 4. every protocol follows the same log ----

#[tokio::test]
async fn sse_websocket_long_polling_and_grpc_see_the_same_events() {
    let server = TestServer::start().await;
    // Every subscriber starts after seq 0, so none can miss the writes below.
    let mut sse_stream =
        SseStream::open(sse(&server, "/v1/events").header(LAST_EVENT_ID, "0")).await;
    let mut ws = ws_connect(&server).await;
    ws_subscribe(&mut ws, "all", json!({ "after_seq": 0 })).await;
    let mut grpc = OrdersClient::new(server.grpc_channel().await);
    let mut watch = grpc
        .watch_orders(WatchOrdersRequest {
            after_seq: Some(0),
            ..WatchOrdersRequest::default()
        })
        .await
        .expect("watch orders")
        .into_inner();

    let id = id_of(&create_order(&server, "6").await);
    cancel_order(&server, &id).await;
    let expected = vec![
        (1, "order.created".to_owned(), id.clone()),
        (2, "order.cancelled".to_owned(), id.clone()),
    ];
    let summary = |event: &Value| {
        (
            event["seq"].as_u64().unwrap(),
            event["type"].as_str().unwrap().to_owned(),
            event["order_id"].as_str().unwrap().to_owned(),
        )
    };

    let sse_events: Vec<Value> = sse_stream.events(2).await.iter().map(Frame::json).collect();
    let ws_events: Vec<Value> = ws_messages(&mut ws, 2, "WebSocket").await;
    let mut polled: Vec<Value> = Vec::new();
    let mut since = 0;
    while polled.len() < 2 {
        let body = poll(&server, &format!("since={since}")).await;
        polled.extend(body["events"].as_array().unwrap().iter().cloned());
        since = body["next_since"].as_u64().unwrap();
    }
    let mut grpc_seen = Vec::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(PATIENCE, watch.message())
            .await
            .expect("a gRPC event in time")
            .expect("the watch is healthy")
            .expect("the watch goes on");
        match message.kind {
            Some(watch_orders_response::Kind::Event(event)) => {
                grpc_seen.push((event.seq, event.r#type, event.order_id));
            }
            other => panic!("gRPC: expected an event, got {other:?}"),
        }
    }

    assert_eq!(
        sse_events.iter().map(summary).collect::<Vec<_>>(),
        expected,
        "SSE"
    );
    assert_eq!(
        ws_events.iter().map(summary).collect::<Vec<_>>(),
        expected,
        "WebSocket"
    );
    assert_eq!(
        polled.iter().map(summary).collect::<Vec<_>>(),
        expected,
        "long polling"
    );
    assert_eq!(grpc_seen, expected, "gRPC");
    // The three JSON protocols send the very same event object (WebSocket adds its addressing).
    for (i, ws_event) in ws_events.iter().enumerate() {
        let mut bare = ws_event.clone();
        let fields = bare.as_object_mut().unwrap();
        assert_eq!(fields.remove("op"), Some(json!("event")));
        assert_eq!(fields.remove("subscription"), Some(json!("all")));
        assert_eq!(bare, sse_events[i], "WebSocket and SSE");
        assert_eq!(polled[i], sse_events[i], "long polling and SSE");
    }
}

#[tokio::test]
async fn a_websocket_resume_replays_more_events_than_its_queue_holds() {
    // The queue holds 256 messages; a replay of 600 must still arrive whole, in order.
    let server = TestServer::start().await;
    let order = json!({ "customer_id": "1", "items": [{ "product_id": "1", "quantity": 1 }] });
    for _ in 0..6 {
        let bulk = json!({ "orders": vec![order.clone(); 100] });
        let response = server
            .post("/v1/orders/bulk")
            .json(&bulk)
            .send()
            .await
            .unwrap();
        expect_json(response, 200).await;
    }
    let mut ws = ws_connect(&server).await;
    ws_send(
        &mut ws,
        json!({ "op": "subscribe", "id": "s1", "topic": "orders", "after_seq": 0 }),
    )
    .await;
    let mut seqs = Vec::new();
    let mut confirmed_first = None;
    while seqs.len() < 600 {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let message: Value = serde_json::from_str(text.as_str()).unwrap();
                match message["op"].as_str() {
                    Some("result") => {
                        confirmed_first.get_or_insert(seqs.is_empty());
                    }
                    Some("event") => seqs.push(message["seq"].as_u64().unwrap()),
                    _ => panic!("unexpected {message}"),
                }
            }
            Ok(Some(Ok(Message::Ping(_)))) => {}
            other => panic!("the replay stopped after {} events: {other:?}", seqs.len()),
        }
    }
    assert_eq!(seqs, (1..=600).collect::<Vec<_>>());
    assert_eq!(
        confirmed_first,
        Some(true),
        "the confirmation comes before the first event"
    );
}

#[tokio::test]
async fn the_largest_possible_seq_is_a_reset_not_a_crash() {
    let server = TestServer::start().await;
    let response = server
        .get(&format!("/v1/events/poll?since={}&timeout=0", u64::MAX))
        .send()
        .await
        .unwrap();
    let body = expect_json(response, 200).await;
    assert_eq!(body["reset"]["requested_after"], u64::MAX, "{body}");
    assert_eq!(body["events"], json!([]));
}
