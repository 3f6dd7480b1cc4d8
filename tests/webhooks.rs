//! Webhooks, black box: polyport sending signed events to receivers, and receiving signed
//! messages, over real sockets.
//!
//! For the sending side each test starts its own receiver: a small axum server on
//! `127.0.0.1:0` that records every request (path, headers, body) and answers from a script
//! (500, then 500, then 200; a 429 with `Retry-After`; a 410; or "hold the request until the test
//! lets it go"). Signatures are checked here independently, with `hmac`, `sha2` and `base64`,
//! exactly as the Standard Webhooks specification tells a receiver to, not with the server's
//! own `signing` module.
//!
//! Nothing here asserts how long something takes. Retry schedules are configured short
//! (`0s, 100ms, ...`) so that tests finish quickly; tests wait for outcomes in the delivery log
//! (`GET /v1/webhook-deliveries/{id}`) with a bounded loop of short sleeps, so a bug fails a test
//! instead of hanging it. The one comparison of instants is between two attempt times the server
//! recorded (`attempts[].at`), to see that `Retry-After` was honoured. The one pause is in a
//! shutdown test, where the state it waits for is invisible from outside the server.
//!
//! Each test starts its own server (`TestServer::start`: demo data, an empty event log), so
//! endpoint ids start at `ep_1` and deliveries at `msg_1`.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{TestServer, expect_problem};
use hmac::{Hmac, Mac};
use polyport::config::{Config, DEMO_INBOUND_SECRET};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

// ---- a scripted receiver ----

/// What the receiver answers to one request.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    /// Hold the request (after recording it) until the test calls [`Receiver::release`].
    held: bool,
}

impl Reply {
    fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            held: false,
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn held(mut self) -> Self {
        self.held = true;
        self
    }
}

/// A request the receiver got.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: HeaderMap,
    body: String,
}

impl Request {
    /// The value of header `name`, which must be present.
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("the delivery has no {name} header: {:?}", self.headers))
            .to_str()
            .expect("visible ASCII header")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the delivery body is not JSON ({e}): {}", self.body))
    }
}

struct Shared {
    /// Answers still to give, in order; once empty, `then` answers every request.
    script: Mutex<VecDeque<Reply>>,
    then: Reply,
    requests: Mutex<Vec<Request>>,
    /// Requests answered so far (held ones count once they are let go).
    answered: AtomicUsize,
    /// Permits to let held requests go.
    gate: Semaphore,
}

/// A webhook receiver on `127.0.0.1:0`; dropping it stops it.
struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver that answers with `script`, one reply per request, then with `then`.
    async fn start(script: impl IntoIterator<Item = Reply>, then: Reply) -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into_iter().collect()),
            then,
            requests: Mutex::default(),
            answered: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let router = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("receiver");
        });
        Self { addr, shared, task }
    }

    /// A receiver that answers every request with `status`.
    async fn answering(status: u16) -> Self {
        Self::start([], Reply::status(status)).await
    }

    /// `http://127.0.0.1:PORT{path}`
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every request so far, oldest first.
    fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::SeqCst)
    }

    /// Lets `n` held requests go.
    fn release(&self, n: usize) {
        self.shared.gate.add_permits(n);
    }

    /// Waits until at least `n` requests have arrived and returns them all.
    async fn wait_for_requests(&self, n: usize) -> Vec<Request> {
        for _ in 0..POLLS {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        panic!(
            "the receiver got {} requests, expected {n}",
            self.requests().len()
        );
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.requests.lock().unwrap().push(Request {
        path: uri.path().to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| shared.then.clone());
    if reply.held {
        shared.gate.acquire().await.expect("never closed").forget();
    }
    shared.answered.fetch_add(1, Ordering::SeqCst);
    let mut response = StatusCode::from_u16(reply.status)
        .expect("a valid status")
        .into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

// ---- Standard Webhooks signatures, computed independently ----

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the secret's decoded bytes.
fn sign(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("the secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The space-separated signatures of a delivery.
fn signatures(request: &Request) -> Vec<String> {
    request
        .header("webhook-signature")
        .split(' ')
        .map(str::to_owned)
        .collect()
}

/// True when one of the delivery's signatures is `secret`'s signature of it.
fn signed_with(request: &Request, secret: &str) -> bool {
    let expected = sign(
        secret,
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        &request.body,
    );
    signatures(request).contains(&expected)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

// ---- talking to the server ----

/// Polls at most this many times...
const POLLS: usize = 400;
/// ...this far apart: a bound of 10 s that only turns a hang into a failure.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The default configuration with `schedule` as the retry schedule.
fn config_with_schedule(schedule: &[&str]) -> Config {
    let mut config = Config::default();
    config.webhooks.retry_schedule = schedule
        .iter()
        .map(|d| humantime::parse_duration(d).expect("a duration"))
        .collect();
    config
}

/// A server whose deliveries are retried every 100 ms, four attempts in all.
async fn fast_server() -> TestServer {
    TestServer::with_config(config_with_schedule(&["0s", "100ms", "100ms", "100ms"])).await
}

/// Asserts `status` and returns the JSON body.
async fn expect_json(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let url = response.url().clone();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "{url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
}

/// GET `path` and expect 200 with a JSON body.
async fn get_json(server: &TestServer, path: &str) -> Value {
    expect_json(server.get(path).send().await.expect("request"), 200).await
}

/// GETs `path` until `done` holds for its JSON body, and returns that body.
async fn poll(server: &TestServer, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..POLLS {
        last = get_json(server, path).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    panic!("GET {path}: {what} never happened; last seen: {last}");
}

/// The rows of a list response.
fn rows(page: &Value) -> &Vec<Value> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array: {page}"))
}

/// Registers an endpoint; returns its id and secret.
async fn register(server: &TestServer, url: &str, event_types: &[&str]) -> (String, String) {
    let response = server
        .post("/v1/webhook-endpoints")
        .json(&json!({ "url": url, "event_types": event_types }))
        .send()
        .await
        .expect("request");
    let endpoint = expect_json(response, 201).await;
    (
        endpoint["id"].as_str().expect("id").to_owned(),
        endpoint["secret"].as_str().expect("secret").to_owned(),
    )
}

/// Creates an order over REST; returns its id.
async fn create_order(server: &TestServer) -> String {
    let response = server
        .post("/v1/orders")
        .json(&json!({ "customer_id": "1", "items": [{ "product_id": "1", "quantity": 1 }] }))
        .send()
        .await
        .expect("request");
    let order = expect_json(response, 201).await;
    order["id"].as_str().expect("id").to_owned()
}

async fn cancel_order(server: &TestServer, order_id: &str) {
    let response = server
        .post(&format!("/v1/orders/{order_id}/cancellations"))
        .json(&json!({ "reason": "changed my mind" }))
        .send()
        .await
        .expect("request");
    expect_json(response, 201).await;
}

/// Waits until the endpoint has `n` deliveries and none is pending; returns them, oldest first.
async fn settled_deliveries(server: &TestServer, endpoint_id: &str, n: usize) -> Vec<Value> {
    let page = poll(
        server,
        &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries"),
        &format!("{n} settled deliveries"),
        |page| rows(page).len() == n && rows(page).iter().all(|d| d["state"] != "pending"),
    )
    .await;
    rows(&page).iter().rev().cloned().collect()
}

/// Waits until delivery `id` is no longer pending; returns it.
async fn settled_delivery(server: &TestServer, id: &str) -> Value {
    poll(
        server,
        &format!("/v1/webhook-deliveries/{id}"),
        "settling",
        |d| d["state"] != "pending",
    )
    .await
}

/// The HTTP status of each attempt of a delivery (0 for none).
fn attempt_statuses(delivery: &Value) -> Vec<u64> {
    delivery["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts: {delivery}"))
        .iter()
        .map(|a| a["status"].as_u64().unwrap_or(0))
        .collect()
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

/// Standard Webhooks headers of a message: (name, value).
type Headers = Vec<(&'static str, String)>;

/// POSTs `body` to `/v1/webhooks/inbound/{source}` with the given Standard Webhooks headers.
async fn send_inbound(
    server: &TestServer,
    source: &str,
    headers: &Headers,
    body: &str,
) -> reqwest::Response {
    let mut request = server
        .post(&format!("/v1/webhooks/inbound/{source}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("request")
}

/// The three headers of a message signed with `secret`.
fn signed_headers(secret: &str, id: &str, timestamp: i64, body: &str) -> Headers {
    let timestamp = timestamp.to_string();
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-signature", sign(secret, id, &timestamp, body)),
        ("webhook-timestamp", timestamp),
    ]
}

/// Waits until every received message has left state `received`; returns the list.
async fn settled_inbound(server: &TestServer, n: usize) -> Vec<Value> {
    let page = poll(
        server,
        "/v1/webhooks/inbound",
        &format!("{n} processed messages"),
        |page| rows(page).len() == n && rows(page).iter().all(|m| m["state"] != "received"),
    )
    .await;
    rows(&page).clone()
}

// ---- registering endpoints ----

#[tokio::test]
async fn an_endpoint_is_registered_read_changed_and_deleted_and_its_secret_is_shown_once() {
    let server = TestServer::start().await;
    let url = "http://127.0.0.1:9/hook";

    let response = server
        .post("/v1/webhook-endpoints")
        .json(&json!({ "url": url, "event_types": ["order.created"], "description": "new orders" }))
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_owned();
    let created = expect_json(response, 201).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(location, format!("/v1/webhook-endpoints/{id}"));
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{created}"
    );
    assert_eq!(created["url"], url);
    assert_eq!(created["event_types"], json!(["order.created"]));
    assert_eq!(created["description"], "new orders");
    assert_eq!(created["status"], "enabled");
    assert_eq!(created["disabled_reason"], Value::Null);

    // The secret is shown once: reads return everything else.
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    let read = get_json(&server, &location).await;
    assert_eq!(read, without_secret);
    let list = get_json(&server, "/v1/webhook-endpoints").await;
    assert_eq!(rows(&list), &vec![without_secret]);

    let response = server
        .patch(&location)
        .json(&json!({ "description": "orders", "event_types": ["order.created", "order.cancelled"] }))
        .send()
        .await
        .unwrap();
    let patched = expect_json(response, 200).await;
    assert_eq!(patched["description"], "orders");
    assert_eq!(
        patched["event_types"],
        json!(["order.created", "order.cancelled"])
    );
    assert_eq!(patched["url"], url, "fields not in the patch are kept");
    assert!(patched.get("secret").is_none(), "{patched}");
    assert_eq!(get_json(&server, &location).await, patched);

    let response = server.delete(&location).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 204);
    expect_problem(
        server.get(&location).send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
    let list = get_json(&server, "/v1/webhook-endpoints").await;
    assert!(rows(&list).is_empty(), "{list}");
}

#[tokio::test]
async fn a_registration_with_a_bad_field_is_refused_naming_the_field() {
    let server = TestServer::start().await;
    let good = "http://127.0.0.1:9/hook";
    let cases = [
        (
            json!({ "url": good, "event_types": ["order.shipped"] }),
            "event_types[0]",
        ),
        (json!({ "url": "not a url" }), "url"),
        (json!({ "url": "ftp://127.0.0.1/hook" }), "url"),
        (json!({ "url": good, "secret": "whsec_c2hvcnQ=" }), "secret"),
    ];
    for (body, field) in cases {
        let response = server
            .post("/v1/webhook-endpoints")
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert_eq!(error_fields(&problem), [field], "{body}: {problem}");
    }
    let list = get_json(&server, "/v1/webhook-endpoints").await;
    assert!(rows(&list).is_empty(), "{list}");

    // A change is checked the same way.
    let (id, _) = register(&server, good, &[]).await;
    for (body, field) in [
        (
            json!({ "event_types": ["order.shipped"] }),
            "event_types[0]",
        ),
        (json!({ "url": "not a url" }), "url"),
    ] {
        let response = server
            .patch(&format!("/v1/webhook-endpoints/{id}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert_eq!(error_fields(&problem), [field], "{body}: {problem}");
    }
}

#[tokio::test]
async fn with_an_empty_allow_list_urls_into_the_internal_network_are_refused() {
    let mut config = Config::default();
    config.webhooks.allow_hosts = vec![];
    let server = TestServer::with_config(config).await;
    let internal = [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
    ];
    for url in internal {
        let response = server
            .post("/v1/webhook-endpoints")
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert_eq!(error_fields(&problem), ["url"], "{url}: {problem}");
    }
    let list = get_json(&server, "/v1/webhook-endpoints").await;
    assert!(rows(&list).is_empty(), "{list}");

    // A public address is accepted (no event is written, so nothing is ever sent to it), and
    // moving it into the internal network later is refused too.
    let (id, _) = register(&server, "http://93.184.216.34/hook", &[]).await;
    for url in internal {
        let response = server
            .patch(&format!("/v1/webhook-endpoints/{id}"))
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert_eq!(error_fields(&problem), ["url"], "{url}: {problem}");
    }
}

#[tokio::test]
async fn with_the_default_allow_list_a_loopback_url_is_accepted() {
    let server = TestServer::start().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
    ] {
        let response = server
            .post("/v1/webhook-endpoints")
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        let endpoint = expect_json(response, 201).await;
        assert_eq!(endpoint["url"], url);
    }
}

// ---- delivering ----

#[tokio::test]
async fn a_created_order_is_delivered_signed_as_the_standard_webhooks_specification_says() {
    let server = fast_server().await;
    let receiver = Receiver::answering(200).await;
    let (endpoint_id, secret) = register(&server, &receiver.url("/hook"), &[]).await;

    let order_id = create_order(&server).await;

    let [request] = receiver.wait_for_requests(1).await.try_into().unwrap();
    assert_eq!(request.path, "/hook");
    assert_eq!(request.header("content-type"), "application/json");
    let webhook_id = request.header("webhook-id");
    assert!(webhook_id.starts_with("msg_"), "{webhook_id}");
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .parse()
        .expect("webhook-timestamp is Unix seconds");
    assert!(
        (unix_now() - timestamp).abs() < 300,
        "webhook-timestamp {timestamp} is not near now"
    );
    let [signature] = signatures(&request).try_into().unwrap();
    assert!(signature.starts_with("v1,"), "{signature}");
    assert!(
        signed_with(&request, &secret),
        "the signature does not verify"
    );

    let body = request.json();
    assert_eq!(body["type"], "order.created", "{body}");
    assert!(body["timestamp"].is_string(), "{body}");
    assert!(body["data"]["seq"].is_u64(), "{body}");
    assert_eq!(body["data"]["order"]["id"], order_id.as_str(), "{body}");

    // The delivery log agrees with what arrived.
    let [delivery] = settled_deliveries(&server, &endpoint_id, 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(delivery["id"], webhook_id);
    assert_eq!(delivery["endpoint_id"], endpoint_id.as_str());
    assert_eq!(delivery["event_type"], "order.created");
    assert_eq!(delivery["seq"], body["data"]["seq"]);
    assert_eq!(delivery["state"], "delivered");
    assert_eq!(delivery["next_attempt_at"], Value::Null);
    assert_eq!(attempt_statuses(&delivery), [200]);
    assert_eq!(delivery["body"], body);
    assert_eq!(
        get_json(&server, &format!("/v1/webhook-deliveries/{webhook_id}")).await,
        delivery
    );
}

#[tokio::test]
async fn an_endpoint_receives_only_the_event_types_it_asked_for() {
    let server = fast_server().await;
    let receiver = Receiver::answering(200).await;
    let (cancellations, _) =
        register(&server, &receiver.url("/cancelled"), &["order.cancelled"]).await;
    let (everything, _) = register(&server, &receiver.url("/all"), &[]).await;

    let order_id = create_order(&server).await;
    cancel_order(&server, &order_id).await;

    // Both events are dispatched in log order, to every endpoint at once: once the endpoint
    // for all types has the cancellation, the creation was already offered to the other one.
    let all = settled_deliveries(&server, &everything, 2).await;
    let types: Vec<&Value> = all.iter().map(|d| &d["event_type"]).collect();
    assert_eq!(types, ["order.created", "order.cancelled"]);

    let [only] = settled_deliveries(&server, &cancellations, 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(only["event_type"], "order.cancelled");
    assert_eq!(only["state"], "delivered");
    let to_cancelled: Vec<Value> = receiver
        .wait_for_requests(3)
        .await
        .into_iter()
        .filter(|r| r.path == "/cancelled")
        .map(|r| r.json())
        .collect();
    assert_eq!(to_cancelled.len(), 1, "{to_cancelled:?}");
    assert_eq!(to_cancelled[0]["type"], "order.cancelled");
    assert_eq!(to_cancelled[0]["data"]["order"]["id"], order_id.as_str());
}

#[tokio::test]
async fn the_request_that_causes_an_event_does_not_wait_for_its_delivery() {
    let mut config = config_with_schedule(&["0s", "100ms"]);
    // Longer than the bound below: a create that waited for the delivery would hit the bound.
    config.webhooks.request_timeout = Duration::from_secs(60);
    let server = TestServer::with_config(config).await;
    let receiver = Receiver::start([], Reply::status(200).held()).await;
    let (endpoint_id, _) = register(&server, &receiver.url("/hook"), &[]).await;

    // The receiver holds every request until it is let go, so the create can only answer
    // before the delivery completes.
    tokio::time::timeout(Duration::from_secs(10), create_order(&server))
        .await
        .expect("the create answered while its delivery was still unanswered");
    receiver.wait_for_requests(1).await;
    assert_eq!(receiver.answered(), 0);
    let [delivery] = rows(
        &get_json(
            &server,
            &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries"),
        )
        .await,
    )
    .clone()
    .try_into()
    .unwrap();
    assert_eq!(delivery["state"], "pending", "{delivery}");

    receiver.release(1);
    let [delivery] = settled_deliveries(&server, &endpoint_id, 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(delivery["state"], "delivered");
    assert_eq!(receiver.answered(), 1);
}

// ---- retrying ----

#[tokio::test]
async fn a_failed_attempt_is_retried_with_the_same_webhook_id_until_it_succeeds() {
    let server = fast_server().await;
    let receiver =
        Receiver::start([Reply::status(500), Reply::status(500)], Reply::status(200)).await;
    let (endpoint_id, secret) = register(&server, &receiver.url("/hook"), &[]).await;

    create_order(&server).await;

    let [delivery] = settled_deliveries(&server, &endpoint_id, 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(delivery["state"], "delivered", "{delivery}");
    assert_eq!(attempt_statuses(&delivery), [500, 500, 200]);
    assert_eq!(delivery["next_attempt_at"], Value::Null);

    let requests = receiver.wait_for_requests(3).await;
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(request.header("webhook-id"), delivery["id"]);
        assert_eq!(request.body, requests[0].body);
        assert!(signed_with(request, &secret), "every attempt is signed");
    }
}

#[tokio::test]
async fn a_retry_after_header_delays_the_next_attempt() {
    let server = fast_server().await;
    let receiver = Receiver::start(
        [Reply::status(429).header("retry-after", "1")],
        Reply::status(200),
    )
    .await;
    let (endpoint_id, _) = register(&server, &receiver.url("/hook"), &[]).await;

    create_order(&server).await;

    let [delivery] = settled_deliveries(&server, &endpoint_id, 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(delivery["state"], "delivered", "{delivery}");
    assert_eq!(attempt_statuses(&delivery), [429, 200]);
    // The schedule says 100 ms; the receiver asked for 1 s. Compare the instants the server
    // recorded (to the millisecond).
    let at = |i: usize| {
        humantime::parse_rfc3339(delivery["attempts"][i]["at"].as_str().expect("at"))
            .expect("an RFC 3339 instant")
    };
    let gap = at(1).duration_since(at(0)).expect("attempts in order");
    assert!(
        gap >= Duration::from_millis(990),
        "the second attempt came {gap:?} after the first, not after Retry-After: 1"
    );
}

#[tokio::test]
async fn a_delivery_that_exhausts_the_schedule_fails_with_no_next_attempt() {
    let server = TestServer::with_config(config_with_schedule(&["0s", "100ms", "100ms"])).await;
    let receiver = Receiver::answering(500).await;
    let (endpoint_id, _) = register(&server, &receiver.url("/hook"), &[]).await;

    create_order(&server).await;

    let [delivery] = settled_deliveries(&server, &endpoint_id, 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(delivery["state"], "failed", "{delivery}");
    assert_eq!(attempt_statuses(&delivery), [500, 500, 500]);
    assert_eq!(delivery["next_attempt_at"], Value::Null);
    assert_eq!(receiver.requests().len(), 3);
    // Three failures are below disable_after_failures: the endpoint stays enabled.
    let endpoint = get_json(&server, &format!("/v1/webhook-endpoints/{endpoint_id}")).await;
    assert_eq!(endpoint["status"], "enabled", "{endpoint}");
}

// ---- disabling ----

#[tokio::test]
async fn a_410_gone_disables_the_endpoint_at_once_and_later_events_are_not_sent() {
    let server = fast_server().await;
    let gone = Receiver::answering(410).await;
    let fine = Receiver::answering(200).await;
    let (gone_id, _) = register(&server, &gone.url("/hook"), &[]).await;
    let (fine_id, _) = register(&server, &fine.url("/hook"), &[]).await;

    create_order(&server).await;

    let [delivery] = settled_deliveries(&server, &gone_id, 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(delivery["state"], "failed", "{delivery}");
    assert_eq!(attempt_statuses(&delivery), [410], "no retry after 410");
    let endpoint = get_json(&server, &format!("/v1/webhook-endpoints/{gone_id}")).await;
    assert_eq!(endpoint["status"], "disabled", "{endpoint}");
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{endpoint}"
    );
    assert!(endpoint["disabled_at"].is_string(), "{endpoint}");

    // A later event reaches the healthy endpoint (so it was dispatched) but not the gone one.
    create_order(&server).await;
    settled_deliveries(&server, &fine_id, 2).await;
    let to_gone = get_json(
        &server,
        &format!("/v1/webhook-endpoints/{gone_id}/deliveries"),
    )
    .await;
    assert_eq!(rows(&to_gone).len(), 1, "{to_gone}");
    assert_eq!(gone.requests().len(), 1);
}

#[tokio::test]
async fn an_endpoint_failing_too_often_is_disabled_and_can_be_enabled_again() {
    let mut config = config_with_schedule(&["0s", "100ms", "100ms", "100ms", "100ms"]);
    config.webhooks.disable_after_failures = 3;
    let server = TestServer::with_config(config).await;
    let receiver = Receiver::start(vec![Reply::status(500); 3], Reply::status(200)).await;
    let (endpoint_id, _) = register(&server, &receiver.url("/hook"), &[]).await;
    let path = format!("/v1/webhook-endpoints/{endpoint_id}");

    create_order(&server).await;

    let [delivery] = settled_deliveries(&server, &endpoint_id, 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(delivery["state"], "failed", "{delivery}");
    assert_eq!(attempt_statuses(&delivery), [500, 500, 500]);
    let endpoint = get_json(&server, &path).await;
    assert_eq!(endpoint["status"], "disabled", "{endpoint}");
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{endpoint}"
    );

    let response = server
        .patch(&path)
        .json(&json!({ "status": "enabled" }))
        .send()
        .await
        .unwrap();
    let endpoint = expect_json(response, 200).await;
    assert_eq!(endpoint["status"], "enabled", "{endpoint}");
    assert_eq!(endpoint["disabled_reason"], Value::Null);
    assert_eq!(get_json(&server, &path).await, endpoint);

    // Enabled again, it receives the next event (the receiver has recovered).
    create_order(&server).await;
    let deliveries = settled_deliveries(&server, &endpoint_id, 2).await;
    assert_eq!(deliveries[1]["state"], "delivered", "{}", deliveries[1]);
}

// ---- by hand ----

#[tokio::test]
async fn a_failed_delivery_retried_by_hand_is_attempted_again() {
    let server = TestServer::with_config(config_with_schedule(&["0s"])).await;
    let receiver = Receiver::start([Reply::status(500)], Reply::status(200)).await;
    let (endpoint_id, _) = register(&server, &receiver.url("/hook"), &[]).await;
    create_order(&server).await;
    let [failed] = settled_deliveries(&server, &endpoint_id, 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(failed["state"], "failed", "{failed}");
    let id = failed["id"].as_str().unwrap();

    let response = server
        .post(&format!("/v1/webhook-deliveries/{id}/retry"))
        .send()
        .await
        .unwrap();
    let retried = expect_json(response, 202).await;
    assert_eq!(retried["id"], id);
    assert_eq!(retried["state"], "pending");

    let delivery = settled_delivery(&server, id).await;
    assert_eq!(delivery["state"], "delivered", "{delivery}");
    assert_eq!(attempt_statuses(&delivery), [500, 200]);
    let requests = receiver.wait_for_requests(2).await;
    assert!(requests.iter().all(|r| r.header("webhook-id") == id));
}

#[tokio::test]
async fn a_pending_delivery_cannot_be_retried_by_hand() {
    let server = TestServer::with_config(config_with_schedule(&["0s", "1h"])).await;
    let receiver = Receiver::answering(500).await;
    let (endpoint_id, _) = register(&server, &receiver.url("/hook"), &[]).await;
    create_order(&server).await;
    // After its first failure the delivery waits an hour for its second attempt.
    let page = poll(
        &server,
        &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries"),
        "a first failed attempt",
        |page| {
            rows(page)
                .first()
                .is_some_and(|d| attempt_statuses(d) == [500])
        },
    )
    .await;
    let delivery = &rows(&page)[0];
    assert_eq!(delivery["state"], "pending", "{delivery}");
    assert!(delivery["next_attempt_at"].is_string(), "{delivery}");
    let id = delivery["id"].as_str().unwrap();

    let response = server
        .post(&format!("/v1/webhook-deliveries/{id}/retry"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 409, "invalid-state").await;
    let response = server
        .post("/v1/webhook-deliveries/msg_999/retry")
        .send()
        .await
        .unwrap();
    expect_problem(response, 404, "not-found").await;
}

#[tokio::test]
async fn a_test_ping_is_queued_and_delivered() {
    let server = fast_server().await;
    let receiver = Receiver::answering(204).await;
    let (endpoint_id, secret) =
        register(&server, &receiver.url("/hook"), &["order.cancelled"]).await;

    let response = server
        .post(&format!("/v1/webhook-endpoints/{endpoint_id}/test"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let location = response
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_owned();
    let queued = expect_json(response, 202).await;
    let id = queued["id"].as_str().expect("id");
    assert_eq!(location, format!("/v1/webhook-deliveries/{id}"));
    assert_eq!(queued["event_type"], "webhook.ping");
    assert_eq!(queued["endpoint_id"], endpoint_id.as_str());

    let delivery = settled_delivery(&server, id).await;
    assert_eq!(delivery["state"], "delivered", "{delivery}");
    assert_eq!(attempt_statuses(&delivery), [204]);
    let [request] = receiver.wait_for_requests(1).await.try_into().unwrap();
    assert!(signed_with(&request, &secret));
    let body = request.json();
    assert_eq!(body["type"], "webhook.ping");
    assert_eq!(body["data"]["endpoint_id"], endpoint_id.as_str());
}

#[tokio::test]
async fn after_a_secret_rotation_deliveries_carry_a_signature_for_each_secret() {
    let server = fast_server().await;
    let receiver = Receiver::answering(200).await;
    let (endpoint_id, old) = register(&server, &receiver.url("/hook"), &[]).await;

    let response = server
        .post(&format!(
            "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"
        ))
        .send()
        .await
        .unwrap();
    let rotated = expect_json(response, 200).await;
    let new = rotated["secret"].as_str().expect("secret").to_owned();
    assert!(new.starts_with("whsec_"), "{rotated}");
    assert_ne!(new, old);
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );
    let endpoint = get_json(&server, &format!("/v1/webhook-endpoints/{endpoint_id}")).await;
    assert!(endpoint.get("secret").is_none(), "{endpoint}");

    create_order(&server).await;

    let [request] = receiver.wait_for_requests(1).await.try_into().unwrap();
    let signatures = signatures(&request);
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    let id = request.header("webhook-id");
    let timestamp = request.header("webhook-timestamp");
    let by_new = sign(&new, id, timestamp, &request.body);
    let by_old = sign(&old, id, timestamp, &request.body);
    assert!(
        signatures.contains(&by_new),
        "no signature by the new secret"
    );
    assert!(
        signatures.contains(&by_old),
        "no signature by the old secret"
    );
}

#[tokio::test]
async fn deleting_an_endpoint_fails_its_pending_deliveries() {
    let server = TestServer::with_config(config_with_schedule(&["0s", "1h"])).await;
    let receiver = Receiver::answering(500).await;
    let (endpoint_id, _) = register(&server, &receiver.url("/hook"), &[]).await;
    create_order(&server).await;
    let page = poll(
        &server,
        &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries"),
        "a first failed attempt",
        |page| {
            rows(page)
                .first()
                .is_some_and(|d| attempt_statuses(d) == [500])
        },
    )
    .await;
    let id = rows(&page)[0]["id"].as_str().unwrap().to_owned();

    let response = server
        .delete(&format!("/v1/webhook-endpoints/{endpoint_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);

    // Its next attempt was an hour away; with no endpoint left there is nothing to wait for.
    let delivery = settled_delivery(&server, &id).await;
    assert_eq!(delivery["state"], "failed", "{delivery}");
    assert_eq!(delivery["next_attempt_at"], Value::Null);
}

// ---- receiving ----

#[tokio::test]
async fn a_correctly_signed_message_is_accepted_processed_and_listed() {
    let server = TestServer::start().await;
    let body = r#"{"type":"invoice.paid","data":{"id":"inv_1"}}"#;
    let headers = signed_headers(DEMO_INBOUND_SECRET, "msg_in_1", unix_now(), body);

    let response = send_inbound(&server, "demo", &headers, body).await;
    let accepted = expect_json(response, 202).await;
    assert_eq!(accepted["duplicate"], false);
    let id = accepted["id"].as_str().expect("id");

    let [message] = settled_inbound(&server, 1).await.try_into().unwrap();
    assert_eq!(message["id"], id);
    assert_eq!(message["source"], "demo");
    assert_eq!(message["webhook_id"], "msg_in_1");
    assert_eq!(message["state"], "processed", "{message}");
    assert_eq!(message["type"], "invoice.paid", "read from the body");
    assert_eq!(
        message["body"],
        serde_json::from_str::<Value>(body).unwrap()
    );
}

#[tokio::test]
async fn a_message_received_twice_is_acknowledged_but_listed_once() {
    let server = TestServer::start().await;
    let body = r#"{"type":"invoice.paid"}"#;
    let headers = signed_headers(DEMO_INBOUND_SECRET, "msg_twice", unix_now(), body);
    let first = expect_json(send_inbound(&server, "demo", &headers, body).await, 202).await;

    let again = expect_json(send_inbound(&server, "demo", &headers, body).await, 200).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"]);

    // A redelivery carries a fresh timestamp and signature but the same id.
    let later = signed_headers(DEMO_INBOUND_SECRET, "msg_twice", unix_now() + 1, body);
    let again = expect_json(send_inbound(&server, "demo", &later, body).await, 200).await;
    assert_eq!(again["duplicate"], true);

    let list = settled_inbound(&server, 1).await;
    assert_eq!(list[0]["webhook_id"], "msg_twice");
}

#[tokio::test]
async fn badly_signed_stale_and_misaddressed_messages_are_refused() {
    let server = TestServer::start().await;
    let body = r#"{"type":"invoice.paid"}"#;
    let now = unix_now();
    let other_secret = format!("whsec_{}", STANDARD.encode("another source's secret!"));
    let signed =
        |id: &str, timestamp: i64| signed_headers(DEMO_INBOUND_SECRET, id, timestamp, body);
    // Correctly signed, but with header `missing` left out.
    let without = |missing: &str| -> Headers {
        signed("msg_partial", now)
            .into_iter()
            .filter(|(name, _)| *name != missing)
            .collect()
    };
    let cases: Vec<(&str, &str, Headers, &str, u16, &str)> = vec![
        (
            "a tampered body",
            "demo",
            signed("msg_tampered", now),
            r#"{"type":"invoice.refunded"}"#,
            401,
            "unauthenticated",
        ),
        (
            "a wrong secret",
            "demo",
            signed_headers(&other_secret, "msg_wrong", now, body),
            body,
            401,
            "unauthenticated",
        ),
        (
            "no headers at all",
            "demo",
            vec![],
            body,
            401,
            "unauthenticated",
        ),
        (
            "no signature",
            "demo",
            without("webhook-signature"),
            body,
            401,
            "unauthenticated",
        ),
        (
            "no id",
            "demo",
            without("webhook-id"),
            body,
            401,
            "unauthenticated",
        ),
        (
            "no timestamp",
            "demo",
            without("webhook-timestamp"),
            body,
            401,
            "unauthenticated",
        ),
        (
            "a timestamp 10 minutes old",
            "demo",
            signed("msg_old", now - 600),
            body,
            400,
            "validation",
        ),
        (
            "a timestamp 10 minutes ahead",
            "demo",
            signed("msg_future", now + 600),
            body,
            400,
            "validation",
        ),
        (
            "an unknown source",
            "nobody",
            signed("msg_nobody", now),
            body,
            404,
            "not-found",
        ),
    ];
    for (case, source, headers, sent_body, status, slug) in cases {
        let response = send_inbound(&server, source, &headers, sent_body).await;
        let problem = expect_problem(response, status, slug).await;
        if status == 400 {
            assert_eq!(
                error_fields(&problem),
                ["webhook-timestamp"],
                "{case}: {problem}"
            );
        }
    }
    let list = get_json(&server, "/v1/webhooks/inbound").await;
    assert!(
        rows(&list).is_empty(),
        "nothing refused is recorded: {list}"
    );
}

#[tokio::test]
async fn a_signed_body_that_is_not_json_is_accepted_and_then_marked_failed() {
    let server = TestServer::start().await;
    let body = "this is not JSON";
    let headers = signed_headers(DEMO_INBOUND_SECRET, "msg_text", unix_now(), body);

    expect_json(send_inbound(&server, "demo", &headers, body).await, 202).await;

    let [message] = settled_inbound(&server, 1).await.try_into().unwrap();
    assert_eq!(message["state"], "failed", "{message}");
    assert!(
        message["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{message}"
    );
    assert_eq!(message["type"], Value::Null);
    assert_eq!(message["body"], body, "the raw body is kept");
}

#[tokio::test]
async fn messages_arriving_out_of_order_are_all_accepted_and_processed() {
    let server = TestServer::start().await;
    let now = unix_now();
    let earlier = (
        r#"{"type":"order.created","data":{"seq":1}}"#,
        "msg_first",
        now - 60,
    );
    let later = (
        r#"{"type":"order.updated","data":{"seq":2}}"#,
        "msg_second",
        now,
    );

    // The later message arrives first.
    for (body, id, timestamp) in [later, earlier] {
        let headers = signed_headers(DEMO_INBOUND_SECRET, id, timestamp, body);
        let accepted = expect_json(send_inbound(&server, "demo", &headers, body).await, 202).await;
        assert_eq!(accepted["duplicate"], false);
    }

    let list = settled_inbound(&server, 2).await;
    for message in &list {
        assert_eq!(message["state"], "processed", "{message}");
    }
    // Newest arrival first; each keeps its own timestamp, by which a consumer can order them.
    let summary: Vec<(&Value, &Value, &Value)> = list
        .iter()
        .map(|m| (&m["webhook_id"], &m["type"], &m["timestamp"]))
        .collect();
    assert_eq!(
        summary,
        [
            (
                &json!("msg_first"),
                &json!("order.created"),
                &json!(now - 60)
            ),
            (&json!("msg_second"), &json!("order.updated"), &json!(now)),
        ]
    );
}

#[tokio::test]
async fn an_endpoint_on_the_servers_own_inbound_url_receives_its_own_events() {
    let server = fast_server().await;
    let response = server
        .post("/v1/webhook-endpoints")
        .json(&json!({
            "url": server.url("/v1/webhooks/inbound/demo"),
            "event_types": ["order.created"],
            "secret": DEMO_INBOUND_SECRET,
        }))
        .send()
        .await
        .unwrap();
    let endpoint = expect_json(response, 201).await;
    assert_eq!(endpoint["secret"], DEMO_INBOUND_SECRET);
    let endpoint_id = endpoint["id"].as_str().unwrap();

    let order_id = create_order(&server).await;

    let [delivery] = settled_deliveries(&server, endpoint_id, 1)
        .await
        .try_into()
        .unwrap();
    assert_eq!(delivery["state"], "delivered", "{delivery}");
    assert_eq!(attempt_statuses(&delivery), [202]);
    let [message] = settled_inbound(&server, 1).await.try_into().unwrap();
    assert_eq!(message["source"], "demo");
    assert_eq!(message["webhook_id"], delivery["id"]);
    assert_eq!(message["state"], "processed", "{message}");
    assert_eq!(message["type"], "order.created");
    assert_eq!(message["body"]["data"]["order"]["id"], order_id.as_str());
}

// ---- shutdown ----

/// A server whose deliveries wait an hour between attempts and may each take a minute, with a
/// short drain, and a receiver that fails the first request and holds every other one.
async fn slow_world(max_concurrent_deliveries: usize) -> (TestServer, Receiver, String) {
    let mut config = config_with_schedule(&["0s", "1h"]);
    config.webhooks.request_timeout = Duration::from_secs(60);
    config.webhooks.max_concurrent_deliveries = max_concurrent_deliveries;
    config.server.shutdown_grace = Duration::from_millis(200);
    let server = TestServer::with_config(config).await;
    let receiver = Receiver::start([Reply::status(500)], Reply::status(200).held()).await;
    let (endpoint_id, _) = register(&server, &receiver.url("/hook"), &[]).await;
    (server, receiver, endpoint_id)
}

/// Stops `server`, bounded generously: the bound only turns a hang into a failure.
async fn stop_within_bound(server: TestServer) {
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("shutdown hung on deliveries pending or in flight")
        .expect("the server stopped cleanly");
}

#[tokio::test]
async fn shutdown_does_not_wait_for_pending_retries_or_a_slow_receiver() {
    let (server, receiver, endpoint_id) = slow_world(16).await;
    // One delivery failed once and waits an hour for its retry...
    create_order(&server).await;
    poll(
        &server,
        &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries"),
        "a first failed attempt",
        |page| {
            rows(page)
                .first()
                .is_some_and(|d| attempt_statuses(d) == [500])
        },
    )
    .await;
    // ...and one is in flight to a receiver that does not answer.
    create_order(&server).await;
    receiver.wait_for_requests(2).await;

    stop_within_bound(server).await;
    assert_eq!(
        receiver.answered(),
        1,
        "the held request was never answered"
    );
}

#[tokio::test]
async fn shutdown_completes_while_every_delivery_slot_is_taken_by_a_slow_receiver() {
    let (server, receiver, endpoint_id) = slow_world(1).await;
    create_order(&server).await;
    receiver.wait_for_requests(1).await;
    // The first delivery failed at once and waits an hour; the second holds the only slot...
    create_order(&server).await;
    receiver.wait_for_requests(2).await;
    // ...and a third is due but has to wait for a slot.
    create_order(&server).await;
    poll(
        &server,
        &format!("/v1/webhook-endpoints/{endpoint_id}/deliveries"),
        "three deliveries",
        |page| rows(page).len() == 3,
    )
    .await;
    // Nothing outside the server shows the delivery loop taking up the third delivery, so give
    // it a moment to do so (a pause, not a timing assertion): shutdown must then begin while the
    // loop waits for a slot, not race with it.
    tokio::time::sleep(Duration::from_millis(200)).await;

    stop_within_bound(server).await;
}

#[tokio::test]
async fn a_signature_header_stuffed_with_candidates_is_refused_without_hashing_them_all() {
    let server = TestServer::start().await;
    let body = r#"{"type":"invoice.paid"}"#;
    let mut headers = signed_headers(DEMO_INBOUND_SECRET, "msg_stuffed", unix_now(), body);
    // The valid signature, hidden among nine bogus ones: more than a sender with rotating
    // secrets ever needs, so the whole header is refused.
    let signature = headers
        .iter_mut()
        .find(|(name, _)| *name == "webhook-signature")
        .unwrap();
    signature.1 = format!("{} {}", ["v1,AAAA"; 9].join(" "), signature.1);
    let response = send_inbound(&server, "demo", &headers, body).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Webhook-Signature",
        "a 401 names its scheme"
    );
}

#[tokio::test]
async fn an_absurd_timestamp_is_refused_not_a_crash() {
    let server = TestServer::start().await;
    let body = "{}";
    for timestamp in [i64::MIN, i64::MAX] {
        let headers = signed_headers(DEMO_INBOUND_SECRET, "msg_absurd", timestamp, body);
        let response = send_inbound(&server, "demo", &headers, body).await;
        assert_eq!(response.status(), 400, "{timestamp}");
    }
}

// ---- configuration ----

#[test]
fn an_inbound_secret_that_is_not_a_whsec_secret_stops_start_up_naming_the_source() {
    let path = std::env::temp_dir().join(format!(
        "polyport-bad-inbound-secret-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &path,
        "[webhooks.inbound.sources]\nbilling = [\"whsec_short\"]\n",
    )
    .unwrap();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_polyport"))
        .args(["serve", "--addr", "127.0.0.1:0", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // A bound that only turns a server that wrongly starts into a failure, not a hang.
    let mut exited = false;
    for _ in 0..POLLS {
        if server.try_wait().expect("waitable").is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    if !exited {
        let _ = server.kill();
    }
    let output = server.wait_with_output().expect("its output");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(exited, "the server started:\n{stderr}");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "webhooks.inbound.sources.billing: secrets are whsec_ + base64 of at least 16 bytes"
        ),
        "{stderr}"
    );
}
