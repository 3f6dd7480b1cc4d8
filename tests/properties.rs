//! Property-based tests (proptest) of every parser that takes a client's bytes: cursors,
//! `sort`/`fields`/`include`, JSON bodies and merge patches, Standard Webhooks signatures,
//! JWTs, WebSocket command frames and gRPC / gRPC-Web framing.
//!
//! Each property says what must hold for *any* input, not for a table of chosen ones: the
//! parser does not panic; what it refuses gets a 4xx (or the protocol's own refusal: a
//! WebSocket `error` message, a gRPC status other than INTERNAL), never a 5xx; and a refusal
//! leaves the store as it was (orders and the last event seq from the server's core, before and after).
//!
//! Inputs come in two kinds. Pure random bytes mostly fail at the first byte, so most inputs
//! are valid ones *damaged* ([`damaged`]: a bit flipped, a tail cut, a run duplicated, deleted
//! or a byte inserted), which reach the deeper layers (a signature check, a field's range, a
//! protobuf field) that random bytes never get to. JSON bodies also come from a generator of
//! JSON built from the API's own field names ([`json_value`]).
//!
//! Pure parsers are called directly (256 cases each); properties through the socket run against
//! one real server per test (32 to 64 cases), so the suite stays quick on two cores. proptest
//! prints the smallest failing input it finds; a failure is then kept as an ordinary test
//! beside the protocol's others. Nothing here measures time.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Buf;
use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use polyport::config::{ClientConfig, Config, DEMO_INBOUND_SECRET};
use polyport::domain::pagination::{CursorCodec, PageLimits, RowKey, SortSpec, SortValue};
use polyport::gateway::ApiError;
use polyport::gateway::error::kind;
use polyport::protocols::rest::body::parse;
use polyport::protocols::rest::listing;
use polyport::protocols::rest::v1::dto::{
    BulkV1, CancelV1, CreateOrderV1, NewCustomerV1, NewItemV1, PatchOrderV1, ReplaceOrderV1,
};
use polyport::protocols::rest::v1::orders::ORDERS;
use polyport::webhooks::signing::{MAX_SIGNATURES, Secret};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;

// ---- running properties ----

/// Cases for a parser called directly.
const PURE_CASES: u32 = 256;
/// Cases for a property that goes through the socket: each case is a few requests.
const SOCKET_CASES: u32 = 64;

/// Runs `property` on `cases` inputs from `strategy`, panicking with the smallest failing input.
/// Failures are not persisted to files: a failure found is kept as an ordinary test instead.
fn check<S: Strategy>(
    cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    };
    if let Err(failure) = TestRunner::new(config).run(&strategy, property) {
        panic!("{failure}");
    }
}

/// A runtime for properties that go through the socket: the server runs on it, and each case
/// blocks on it for its own requests.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

// ---- damaging valid input ----

/// One way to damage valid bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// One bit of one byte flipped.
    Flip(Index, u8),
    /// Everything from a position on cut off.
    Truncate(Index),
    /// A run of bytes repeated in place.
    Duplicate(Index, usize),
    /// A run of bytes removed.
    Delete(Index, usize),
    /// One byte inserted.
    Insert(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1..16usize).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
        (any::<Index>(), 1..8usize).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
    ]
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            if let Mutation::Insert(_, byte) = self {
                bytes.push(*byte);
            }
            return;
        }
        match *self {
            Mutation::Flip(at, bit) => {
                let at = at.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
            Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
            Mutation::Duplicate(at, len) => {
                let start = at.index(bytes.len());
                let end = (start + len).min(bytes.len());
                let run = bytes[start..end].to_vec();
                bytes.splice(end..end, run);
            }
            Mutation::Delete(at, len) => {
                let start = at.index(bytes.len());
                bytes.drain(start..(start + len).min(bytes.len()));
            }
            Mutation::Insert(at, byte) => {
                let at = at.index(bytes.len() + 1);
                bytes.insert(at, byte);
            }
        }
    }
}

/// `valid` with one to three mutations applied.
fn damaged(valid: &[u8]) -> impl Strategy<Value = Vec<u8>> + use<> {
    let valid = valid.to_vec();
    prop::collection::vec(mutation(), 1..=3).prop_map(move |mutations| {
        let mut bytes = valid.clone();
        for m in &mutations {
            m.apply(&mut bytes);
        }
        bytes
    })
}

/// Like [`damaged`], as text (bytes that stopped being UTF-8 are replaced).
fn damaged_text(valid: &str) -> impl Strategy<Value = String> + use<> {
    damaged(valid.as_bytes()).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Random bytes, mostly short.
fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..96)
}

/// Words the API knows (field names, statuses, ids, relations) and a few it does not: a
/// generator built from them reaches past "unknown field" into each field's own checks.
const WORDS: &[&str] = &[
    "customer_id",
    "items",
    "product_id",
    "quantity",
    "status",
    "reason",
    "orders",
    "name",
    "email",
    "id",
    "op",
    "token",
    "order_id",
    "topic",
    "filter",
    "types",
    "after_seq",
    "1",
    "2",
    "0",
    "-1",
    "01",
    "999999999999999999999",
    "paid",
    "pending",
    "shipped",
    "cancelled",
    "teleported",
    "order.created",
    "x@example.com",
    "",
    " ",
    "\u{0}",
    "💥",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
    ]
}

/// Any JSON, its object keys and strings mostly the API's own words.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![-3..1003i64, any::<i64>()].prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        word().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..5)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// One change to a JSON document that keeps it JSON: a value replaced, a field removed or one
/// added. Damage that keeps the syntax reaches each field's own checks.
#[derive(Debug, Clone)]
enum Edit {
    Replace(Value),
    Remove,
    Add(String, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => json_value().prop_map(Edit::Replace),
        1 => Just(Edit::Remove),
        1 => (word(), json_value()).prop_map(|(key, value)| Edit::Add(key, value)),
    ]
}

/// The JSON pointers of every value inside `value` (not `value` itself).
fn pointers(value: &Value, at: &str, all: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (format!("{at}/{k}"), v)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{at}/{i}"), v))
            .collect(),
        _ => Vec::new(),
    };
    for (pointer, child) in children {
        all.push(pointer.clone());
        pointers(child, &pointer, all);
    }
}

/// `valid` with one or two [`Edit`]s.
fn edited(valid: &Value) -> impl Strategy<Value = Value> + use<> {
    let valid = valid.clone();
    prop::collection::vec((any::<Index>(), edit()), 1..=2).prop_map(move |edits| {
        let mut value = valid.clone();
        for (at, edit) in edits {
            let mut all = Vec::new();
            pointers(&value, "", &mut all);
            let Some(pointer) = all.get(at.index(all.len().max(1))).cloned() else {
                continue;
            };
            match edit {
                Edit::Replace(new) => {
                    if let Some(old) = value.pointer_mut(&pointer) {
                        *old = new;
                    }
                }
                Edit::Remove => {
                    let (parent, last) = pointer.rsplit_once('/').expect("a pointer has a /");
                    match value.pointer_mut(parent) {
                        Some(Value::Object(map)) => {
                            map.shift_remove(last);
                        }
                        Some(Value::Array(items)) => {
                            items.remove(last.parse::<usize>().expect("an index"));
                        }
                        _ => {}
                    }
                }
                Edit::Add(key, new) => match value.pointer_mut(&pointer) {
                    Some(Value::Object(map)) => {
                        map.insert(key, new);
                    }
                    _ => {
                        if let Value::Object(map) = &mut value {
                            map.insert(key, new);
                        }
                    }
                },
            }
        }
        value
    })
}

/// A body for an endpoint whose valid body is `valid`: valid, edited, damaged, generated or
/// random.
fn body_for(valid: &Value) -> impl Strategy<Value = Vec<u8>> + use<> {
    prop_oneof![
        1 => Just(valid.to_string().into_bytes()),
        4 => edited(valid).prop_map(|v| v.to_string().into_bytes()),
        3 => damaged(valid.to_string().as_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => random_bytes(),
    ]
}

// ---- store state ----

/// The orders and the last event seq, read from the running server's core (what `/readyz`
/// shows an admin), whatever the test's credentials.
async fn store_state(server: &TestServer) -> (u64, u64) {
    let core = &server.app.core;
    (core.store().order_count() as u64, core.events().last_seq())
}

/// Asserts a REST refusal is a problem+json with a 4xx status matching its body.
async fn refused_with_a_problem(
    response: reqwest::Response,
    context: &str,
) -> Result<(), TestCaseError> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.unwrap_or_default();
    prop_assert!((400..500).contains(&status), "{context}: {status} {body}");
    prop_assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "{}: {}",
        context,
        body
    );
    let problem: Value = serde_json::from_str(&body)
        .map_err(|e| TestCaseError::fail(format!("{context}: {e}: {body}")))?;
    prop_assert_eq!(&problem["status"], &json!(status), "{}", body);
    Ok(())
}

// ---- 1. cursors ----

/// Sort specs a cursor can be made for, and a row key under each.
fn sort_and_key() -> impl Strategy<Value = (SortSpec, RowKey)> {
    let sortable = polyport::domain::core::ORDER_SORT_FIELDS;
    let spec = prop::sample::subsequence(sortable.to_vec(), 0..=sortable.len())
        .prop_flat_map(|fields| {
            let n = fields.len();
            (Just(fields), prop::collection::vec(any::<bool>(), n))
        })
        .prop_map(move |(fields, descending)| {
            let raw: Vec<String> = fields
                .iter()
                .zip(descending)
                .map(|(f, d)| format!("{}{f}", if d { "-" } else { "" }))
                .collect();
            if raw.is_empty() {
                SortSpec::by_id()
            } else {
                SortSpec::parse(&raw.join(","), sortable).expect("a spec of sortable fields")
            }
        });
    spec.prop_flat_map(|spec| {
        let n = spec.terms().len();
        let value = prop_oneof![
            any::<i64>().prop_map(SortValue::Int),
            "\\PC{0,16}".prop_map(SortValue::Text),
        ];
        (Just(spec), prop::collection::vec(value, n), any::<u64>())
            .prop_map(|(spec, values, id)| (spec, RowKey { values, id }))
    })
}

#[test]
fn a_cursor_decodes_to_the_key_it_was_made_for_and_nothing_else_decodes() {
    let codec = CursorCodec::new(b"a key for properties");
    check(
        PURE_CASES,
        (
            sort_and_key(),
            prop::collection::vec(mutation(), 1..=3),
            "\\PC{0,40}",
        ),
        |((sort, key), mutations, junk)| {
            let cursor = codec.encode("orders", &sort, &key);
            prop_assert_eq!(codec.decode("orders", &cursor, &sort), Ok(key));

            let mut bytes = cursor.clone().into_bytes();
            for m in &mutations {
                m.apply(&mut bytes);
            }
            let tampered = String::from_utf8_lossy(&bytes).into_owned();
            if tampered != cursor {
                prop_assert!(
                    codec.decode("orders", &tampered, &sort).is_err(),
                    "{tampered} (from {cursor}) was accepted"
                );
            }
            prop_assert!(codec.decode("orders", &junk, &sort).is_err(), "{junk}");
            Ok(())
        },
    );
}

// ---- 2. sort, fields, include, limit, offset ----

/// A query string of a list request: valid ones damaged, or pairs from the API's words.
fn list_query() -> impl Strategy<Value = String> {
    let valid = "limit=5&sort=-created_at,total_cents&fields=id,status,customer&include=customer,items.product&status=paid";
    let names = prop::sample::select(vec![
        "limit",
        "cursor",
        "offset",
        "sort",
        "fields",
        "include",
        "status",
        "customer_id",
        "stauts",
        "",
    ]);
    let value = prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "id",
                "-id",
                "+id",
                "created_at",
                "-total_cents",
                "status",
                "customer",
                "items",
                "items.product",
                "product",
                "--id",
                "",
                " ",
                "1",
                "0",
                "100",
                "101",
                "-1",
            ])
            .prop_map(str::to_owned),
            "\\PC{0,8}",
        ],
        0..4,
    )
    .prop_map(|parts| parts.join(","));
    let pairs = prop::collection::vec((names, value), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(name, value)| format!("{name}={}", url_escape(&value)))
            .collect::<Vec<_>>()
            .join("&")
    });
    prop_oneof![damaged_text(valid), pairs]
}

fn url_escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

#[test]
fn list_parameters_are_parsed_within_the_lists_spec_or_refused_as_validation() {
    let codec = CursorCodec::new(b"a key for properties");
    let limits = PageLimits::default();
    check(PURE_CASES, list_query(), |query| {
        match listing::parse(query_pairs(&query), &ORDERS, limits, &codec) {
            Ok(params) => {
                let limit = params.page.limit.get();
                prop_assert!((1..=limits.max).contains(&limit), "{query}: limit {limit}");
                for field in params.fields.iter().flatten() {
                    prop_assert!(ORDERS.fields.contains(&field.as_str()), "{query}: {field}");
                }
                for relation in &params.include {
                    prop_assert!(ORDERS.includes.contains(&relation.as_str()), "{query}");
                }
                let canonical = params.page.sort.canonical();
                let again = if canonical.is_empty() {
                    SortSpec::by_id()
                } else {
                    SortSpec::parse(&canonical, ORDERS.sortable).expect("a canonical spec parses")
                };
                prop_assert_eq!(again, params.page.sort.clone(), "{}", query);
                for name in params.filters.keys() {
                    prop_assert!(ORDERS.filters.contains(&name.as_str()), "{query}");
                }
            }
            Err(error) => {
                prop_assert_eq!(error.kind, &kind::VALIDATION, "{}", query);
                prop_assert!(!error.violations.is_empty(), "{query}");
            }
        }
        Ok(())
    });
}

#[test]
fn over_the_socket_a_list_query_gets_a_page_or_a_400_problem() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    check(SOCKET_CASES, list_query(), |query| {
        rt.block_on(async {
            let Ok(url) = reqwest::Url::parse(&server.url(&format!("/v1/orders?{query}"))) else {
                return Ok(());
            };
            let response = server.client.get(url).send().await.expect("a response");
            if response.status() == 200 {
                let page: Value = response.json().await.expect("a JSON page");
                prop_assert!(page["data"].is_array(), "{query}: {page}");
                prop_assert!(page["has_more"].is_boolean(), "{query}: {page}");
                Ok(())
            } else {
                prop_assert_eq!(response.status(), 400, "{}", query);
                refused_with_a_problem(response, &query).await
            }
        })
    });
}

// ---- 3. JSON bodies and merge patches ----

/// The valid body of each write, with the method and path that take it.
fn writes() -> Vec<(reqwest::Method, &'static str, &'static str, Value)> {
    use reqwest::Method;
    let order = json!({"customer_id": "1", "items": [{"product_id": "1", "quantity": 1}]});
    vec![
        (
            Method::POST,
            "/v1/orders",
            "application/json",
            order.clone(),
        ),
        (
            Method::POST,
            "/v1/orders/bulk",
            "application/json",
            json!({"orders": [order.clone(), order]}),
        ),
        (
            Method::PATCH,
            "/v1/orders/1",
            "application/merge-patch+json",
            json!({"status": "paid", "items": [{"product_id": "2", "quantity": 3}]}),
        ),
        (
            Method::PUT,
            "/v1/orders/7",
            "application/json",
            json!({"customer_id": "2", "status": "pending", "items": [{"product_id": "3", "quantity": 2}]}),
        ),
        (
            Method::POST,
            "/v1/orders/1/items",
            "application/json",
            json!({"product_id": "2", "quantity": 3}),
        ),
        (
            Method::POST,
            "/v1/orders/2/cancellations",
            "application/json",
            json!({"reason": "changed my mind"}),
        ),
        (
            Method::POST,
            "/v1/customers",
            "application/json",
            json!({"name": "Ada", "email": "ada@example.com"}),
        ),
    ]
}

/// A refusal from the body parser must be a 400 of the body's own rows.
fn a_body_refusal(error: &ApiError, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        error.kind == &kind::MALFORMED_BODY || error.kind == &kind::VALIDATION,
        "{:?} for {}",
        error.kind.slug,
        String::from_utf8_lossy(body)
    );
    prop_assert_eq!(error.kind.status, 400);
    Ok(())
}

/// Parses `body` as `T`, then runs `into_domain` on what parsed: either step may refuse.
fn parses_or_refuses<T: serde::de::DeserializeOwned>(
    body: &[u8],
    into_domain: impl FnOnce(T) -> Result<(), Vec<polyport::domain::FieldViolation>>,
) -> Result<(), TestCaseError> {
    match parse::<T>(body) {
        Ok(value) => match into_domain(value) {
            Ok(()) => Ok(()),
            Err(violations) => {
                prop_assert!(!violations.is_empty());
                Ok(())
            }
        },
        Err(error) => a_body_refusal(&error, body),
    }
}

#[test]
fn every_v1_body_parses_or_is_refused_as_malformed_or_invalid() {
    let bodies = writes()
        .into_iter()
        .map(|(.., valid)| body_for(&valid))
        .collect::<Vec<_>>();
    check(PURE_CASES, prop::strategy::Union::new(bodies), |body| {
        parses_or_refuses::<CreateOrderV1>(&body, |b| b.into_domain().map(drop))?;
        parses_or_refuses::<PatchOrderV1>(&body, |b| b.into_domain().map(drop))?;
        parses_or_refuses::<ReplaceOrderV1>(&body, |b| b.into_domain().map(drop))?;
        parses_or_refuses::<NewItemV1>(&body, |b| {
            polyport::domain::NewItem::parse(&b.product_id, b.quantity).map(drop)
        })?;
        parses_or_refuses::<CancelV1>(&body, |_| Ok(()))?;
        parses_or_refuses::<BulkV1>(&body, |_| Ok(()))?;
        parses_or_refuses::<NewCustomerV1>(&body, |_| Ok(()))?;
        Ok(())
    });
}

#[test]
fn over_the_socket_a_refused_write_is_a_4xx_problem_and_changes_nothing() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let all = writes();
    let cases = prop::sample::select((0..all.len()).collect::<Vec<_>>()).prop_flat_map(|i| {
        let (.., valid) = &writes()[i];
        (Just(i), body_for(valid), prop::bool::weighted(0.1))
    });
    check(SOCKET_CASES, cases, |(i, body, wrong_type)| {
        let (method, path, content_type, _) = &all[i];
        rt.block_on(async {
            let before = store_state(&server).await;
            let content_type = if wrong_type {
                "text/plain"
            } else {
                content_type
            };
            let response = server
                .client
                .request(method.clone(), server.url(path))
                .header("content-type", content_type)
                .body(body.clone())
                .send()
                .await
                .expect("a response");
            let context = format!("{method} {path} {}", String::from_utf8_lossy(&body));
            if response.status().is_success() {
                return Ok(());
            }
            refused_with_a_problem(response, &context).await?;
            prop_assert_eq!(store_state(&server).await, before, "{}", context);
            Ok(())
        })
    });
}

// ---- 4. Standard Webhooks signatures ----

#[test]
fn a_signature_header_verifies_exactly_when_it_carries_the_messages_signature() {
    let secret = Secret::parse(DEMO_INBOUND_SECRET).expect("the demo secret");
    let (id, timestamp, body) = ("msg_1", 1_700_000_000, br#"{"type":"ping"}"#);
    let valid = secret.sign(id, timestamp, body);
    let token = prop_oneof![
        Just(valid.clone()),
        damaged_text(&valid),
        "v1,[A-Za-z0-9+/=]{0,48}",
        "\\PC{0,16}",
    ];
    let separator = prop::sample::select(vec![" ", "  ", "\t", ","]);
    let header = prop::collection::vec((token, separator), 0..12);
    check(PURE_CASES, header, |tokens| {
        let header: String = tokens.iter().map(|(t, sep)| format!("{t}{sep}")).collect();
        let candidates: Vec<&str> = header.split_whitespace().collect();
        let expected = candidates.len() <= MAX_SIGNATURES && candidates.contains(&valid.as_str());
        prop_assert_eq!(
            secret.verifies(&header, id, timestamp, body),
            expected,
            "{:?}",
            header
        );
        Ok(())
    });
}

/// A signed inbound message, as its four parts.
#[derive(Debug, Clone)]
struct Inbound {
    id: Vec<u8>,
    timestamp: Vec<u8>,
    signature: Vec<u8>,
    body: Vec<u8>,
}

static INBOUND_IDS: AtomicU64 = AtomicU64::new(0);

#[test]
fn an_inbound_webhook_is_accepted_only_as_signed_and_a_refusal_records_nothing() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let secret = Secret::parse(DEMO_INBOUND_SECRET).expect("the demo secret");
    let received = |server: &TestServer| {
        let request = server.get("/v1/webhooks/inbound");
        async move {
            let list: Value = request.send().await.unwrap().json().await.unwrap();
            list["data"].as_array().map_or(0, Vec::len)
        }
    };
    // For each of the four parts, whether to damage it and how; a timestamp respelt (`0123`,
    // `+123`: the same second) and more candidates in the signature header (as while a secret
    // rotates), which must not stop a message from verifying.
    let damage = prop::option::weighted(0.3, prop::collection::vec(mutation(), 1..=3));
    let cases = (
        prop::collection::vec(damage, 4),
        prop::option::weighted(0.2, prop::sample::select(vec!["0", "00", "+"])),
        prop::collection::vec("v1,[A-Za-z0-9+/]{4,44}={0,2}|\\PC{1,8}", 0..9),
    );
    check(SOCKET_CASES, cases, |(damage, respelt, candidates)| {
        rt.block_on(async {
            let n = INBOUND_IDS.fetch_add(1, Ordering::Relaxed);
            let id = format!("msg_property_{n}");
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let body = format!(r#"{{"type":"order.created","n":{n}}}"#);
            let signature = secret.sign(&id, timestamp, body.as_bytes());
            let original = Inbound {
                id: id.clone().into_bytes(),
                timestamp: timestamp.to_string().into_bytes(),
                signature: signature.clone().into_bytes(),
                body: body.clone().into_bytes(),
            };
            let mut sent = original.clone();
            if let Some(prefix) = respelt {
                sent.timestamp.splice(0..0, prefix.bytes());
            }
            for candidate in &candidates {
                sent.signature.push(b' ');
                sent.signature.extend_from_slice(candidate.as_bytes());
            }
            for (part, mutations) in [
                &mut sent.id,
                &mut sent.timestamp,
                &mut sent.signature,
                &mut sent.body,
            ]
            .into_iter()
            .zip(&damage)
            {
                for m in mutations.iter().flatten() {
                    m.apply(part);
                }
            }
            let header = |bytes: &[u8]| reqwest::header::HeaderValue::from_bytes(bytes).ok();
            let (Some(h_id), Some(h_ts), Some(h_sig)) = (
                header(&sent.id),
                header(&sent.timestamp),
                header(&sent.signature),
            ) else {
                // Not a header value at all: no client can send it.
                return Ok(());
            };
            let h_sig_readable = h_sig.to_str().is_ok();
            let before = (store_state(&server).await, received(&server).await);
            let response = server
                .post("/v1/webhooks/inbound/demo")
                .header("webhook-id", h_id)
                .header("webhook-timestamp", h_ts)
                .header("webhook-signature", h_sig)
                .header("content-type", "application/json")
                .body(sent.body.clone())
                .send()
                .await
                .expect("a response");
            let status = response.status().as_u16();
            // What was signed is unchanged (a timestamp may be spelt another way, `0123` or
            // ` 123`, when it means the same second), and the signature is among those sent.
            let same_second = std::str::from_utf8(&sent.timestamp)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                == Some(timestamp);
            let signatures: Vec<String> = String::from_utf8_lossy(&sent.signature)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            // Header values the server reads are visible ASCII (`HeaderValue::to_str`): one
            // with other bytes counts as not sent.
            let signed = h_sig_readable
                && sent.id == original.id
                && same_second
                && sent.body == original.body
                && signatures.len() <= MAX_SIGNATURES
                && signatures.contains(&signature);
            let accepted = status == 202;
            if !accepted {
                refused_with_a_problem(response, &format!("{sent:?}")).await?;
                prop_assert_eq!(
                    (store_state(&server).await, received(&server).await),
                    before,
                    "a refused message was recorded: {:?}",
                    sent
                );
            }
            prop_assert_eq!(accepted, signed, "{:?}", sent);
            Ok(())
        })
    });
}

// ---- 5. JWTs ----

const HS256_SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
const OPS_SECRET: &str = "ops-secret-0123456789+&=";

/// A server that issues and checks JWTs (and so has no dev mode), and an admin access token.
fn token_server(rt: &Runtime) -> (TestServer, String) {
    let mut config = Config::default();
    config.auth.clients = vec![ClientConfig {
        id: "ops".into(),
        secret: OPS_SECRET.into(),
        role: "admin".into(),
        customer_id: None,
    }];
    config.auth.tokens.hs256_secret = HS256_SECRET.into();
    config.rate_limit.enabled = false;
    let server = rt.block_on(TestServer::with_auth(config));
    let tokens = server.app.gate.auth.tokens();
    let client = tokens
        .authenticate_client("ops", OPS_SECRET)
        .expect("the ops client");
    let token = tokens.issue(client).expect("a token").access_token;
    (server, token)
}

/// A token damaged byte by byte, or with its parts moved about.
fn damaged_token(valid: &str) -> impl Strategy<Value = String> + use<> {
    let parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let none_header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let reshuffled =
        (0..3usize, 0..3usize, 0..3usize, prop::bool::ANY).prop_map(move |(a, b, c, none)| {
            let header = if none {
                none_header.clone()
            } else {
                parts[a].clone()
            };
            format!("{header}.{}.{}", parts[b], parts[c])
        });
    prop_oneof![
        4 => damaged_text(valid),
        1 => reshuffled,
        1 => "\\PC{0,64}",
    ]
}

#[test]
fn a_damaged_or_forged_access_token_never_verifies() {
    let rt = runtime();
    let (server, valid) = token_server(&rt);
    let tokens = server.app.gate.auth.tokens();
    assert!(
        tokens.verify_access(&valid).is_ok(),
        "the issued token verifies"
    );
    check(PURE_CASES, damaged_token(&valid), |token| {
        if token != valid {
            prop_assert!(tokens.verify_access(&token).is_err(), "{token} verified");
        }
        Ok(())
    });
}

#[test]
fn over_the_socket_a_damaged_token_is_a_401_and_creates_nothing() {
    let rt = runtime();
    let (server, valid) = token_server(&rt);
    let order = json!({"customer_id": "1", "items": [{"product_id": "1", "quantity": 1}]});
    let create = |token: &str| {
        server
            .post("/v1/orders")
            .header("authorization", format!("Bearer {token}"))
            .json(&order)
            .send()
    };
    let created = rt.block_on(create(&valid)).expect("a response");
    assert_eq!(created.status(), 201, "the undamaged token creates");
    check(32, damaged_token(&valid), |token| {
        if token == valid
            || reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_err()
        {
            return Ok(());
        }
        rt.block_on(async {
            let before = store_state(&server).await;
            let response = create(&token).await.expect("a response");
            prop_assert_eq!(response.status(), 401, "{}", token);
            refused_with_a_problem(response, &token).await?;
            prop_assert_eq!(store_state(&server).await, before, "{}", token);
            Ok(())
        })
    });
}

// ---- 6. WebSocket command frames ----

/// The valid commands of the WebSocket protocol.
fn ws_commands() -> Vec<Value> {
    vec![
        json!({"op": "ping", "id": "p1"}),
        json!({"op": "get_order", "id": "g1", "order_id": "1"}),
        json!({"op": "create_order", "id": "c1", "customer_id": "1", "items": [{"product_id": "1", "quantity": 1}]}),
        json!({"op": "cancel_order", "id": "x1", "order_id": "9", "reason": "changed my mind"}),
        json!({"op": "subscribe", "id": "s1", "topic": "orders", "filter": {"types": ["order.created"], "order_id": "7", "customer_id": "2"}, "after_seq": 0}),
        json!({"op": "unsubscribe", "id": "s1"}),
        json!({"op": "auth", "token": "a token"}),
    ]
}

/// A frame: a command as it is, edited, damaged or generated, as text; now and then binary.
fn ws_frame() -> impl Strategy<Value = Message> {
    let commands = ws_commands()
        .iter()
        .map(|c| body_for(c).boxed())
        .collect::<Vec<_>>();
    prop_oneof![
        9 => prop::strategy::Union::new(commands)
            .prop_map(|bytes| Message::text(String::from_utf8_lossy(&bytes).into_owned())),
        1 => random_bytes().prop_map(Message::binary),
    ]
}

#[test]
fn a_websocket_frame_gets_a_reply_or_an_error_the_session_stays_open_and_a_refusal_changes_nothing()
{
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let url = format!("ws://{}/v1/ws", server.addr);
    let ws = rt.block_on(async {
        tokio_tungstenite::connect_async(url)
            .await
            .expect("handshake")
            .0
    });
    let ws = std::cell::RefCell::new(ws);
    let probes = AtomicU64::new(0);
    check(SOCKET_CASES, ws_frame(), |frame| {
        let mut ws = ws.borrow_mut();
        rt.block_on(async {
            let before = store_state(&server).await;
            let context = format!("{frame:?}");
            ws.send(frame).await.expect("send the frame");
            // A ping after it: everything before its pong is the frame's answer.
            let probe = format!("probe:{}", probes.fetch_add(1, Ordering::Relaxed));
            ws.send(Message::text(
                json!({"op": "ping", "id": probe}).to_string(),
            ))
            .await
            .expect("send the probe");
            let mut replies = Vec::new();
            loop {
                let next = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
                    .await
                    .map_err(|_| TestCaseError::fail(format!("{context}: no pong")))?;
                let message = match next {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "{context}: the session ended: {other:?}"
                        )));
                    }
                };
                let message: Value = serde_json::from_str(message.as_str()).expect("JSON");
                match message["op"].as_str() {
                    Some("pong") if message["id"] == probe.as_str() => break,
                    Some("event" | "reset") => {}
                    _ => replies.push(message),
                }
            }
            for reply in &replies {
                if reply["op"] == "error" {
                    let status = reply["status"].as_u64().unwrap_or(0);
                    prop_assert!((400..500).contains(&status), "{context}: {reply}");
                }
            }
            if !replies.iter().any(|r| r["op"] == "result") {
                prop_assert_eq!(
                    store_state(&server).await,
                    before,
                    "{}: {:?}",
                    context,
                    replies
                );
            }
            Ok(())
        })
    });
}

// ---- 7. gRPC and gRPC-Web framing ----

/// `payload` as one gRPC frame: flag 0, big-endian length, the bytes.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(payload);
    framed
}

/// How a framed request is carried.
#[derive(Debug, Clone, Copy)]
enum Carrier {
    /// HTTP/2, `application/grpc`.
    Grpc,
    /// HTTP/1.1, `application/grpc-web+proto`.
    Web,
    /// HTTP/1.1, `application/grpc-web-text`: the frames in base64 (damaged before or after).
    WebText { damage_the_text: bool },
}

/// The gRPC status of a reply: from the headers (trailers-only), the trailers, or for
/// gRPC-Web the trailer frame at the end of the body.
fn grpc_status(
    headers: &http::HeaderMap,
    trailers: Option<&http::HeaderMap>,
    body: &[u8],
    text: bool,
) -> Option<i32> {
    let code = |map: &http::HeaderMap| {
        map.get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse().ok())
    };
    if let Some(code) = code(headers).or_else(|| trailers.and_then(code)) {
        return Some(code);
    }
    let decoded;
    let mut body = if text {
        let clean: Vec<u8> = body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        decoded = clean
            .chunks(4)
            .flat_map(|q| BASE64.decode(q).unwrap_or_default())
            .collect::<Vec<u8>>();
        &decoded[..]
    } else {
        body
    };
    while body.len() >= 5 {
        let flag = body.get_u8();
        let len = (body.get_u32() as usize).min(body.len());
        if flag & 0x80 != 0 {
            let trailers = String::from_utf8_lossy(&body[..len]).to_ascii_lowercase();
            return trailers
                .split("\r\n")
                .find_map(|l| l.strip_prefix("grpc-status:")?.trim().parse().ok());
        }
        body = &body[len..];
    }
    None
}

#[test]
fn a_badly_framed_grpc_request_is_never_internal_and_a_refusal_changes_nothing() {
    use polyport::protocols::grpc::pb::{CreateOrderRequest, NewItem};
    use prost::Message as _;

    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let message = CreateOrderRequest {
        customer_id: "1".into(),
        items: vec![NewItem {
            product_id: "1".into(),
            quantity: 1,
        }],
    }
    .encode_to_vec();
    let valid = frame(&message);
    let carrier = prop_oneof![
        Just(Carrier::Grpc),
        Just(Carrier::Web),
        any::<bool>().prop_map(|damage_the_text| Carrier::WebText { damage_the_text }),
    ];
    // The message damaged inside a right frame reaches the protobuf decoder and the service;
    // the frame damaged reaches the framing.
    let body = prop_oneof![
        1 => Just(valid.clone()),
        3 => damaged(&message).prop_map(|m| frame(&m)),
        4 => damaged(&valid),
        1 => random_bytes(),
    ];
    check(
        SOCKET_CASES,
        (carrier, body, prop::collection::vec(mutation(), 1..=2)),
        |(carrier, body, text_damage)| {
            rt.block_on(async {
                let (client, content_type, sent) = match carrier {
                    Carrier::Grpc => (&h2, "application/grpc", body.clone()),
                    Carrier::Web => (&h1, "application/grpc-web+proto", body.clone()),
                    Carrier::WebText { damage_the_text } => {
                        // The valid frame in base64, damaged as text; or the damaged frame encoded.
                        let mut text = BASE64
                            .encode(if damage_the_text { &valid } else { &body })
                            .into_bytes();
                        if damage_the_text {
                            for m in &text_damage {
                                m.apply(&mut text);
                            }
                        }
                        (&h1, "application/grpc-web-text", text)
                    }
                };
                let before = store_state(&server).await;
                let context = format!("{carrier:?} {sent:?}");
                let response: http::Response<reqwest::Body> = client
                    .post(server.url("/polyport.orders.v1.Orders/CreateOrder"))
                    .header("content-type", content_type)
                    .header("te", "trailers")
                    .header("x-grpc-web", "1")
                    .body(sent.clone())
                    .send()
                    .await
                    .expect("a response")
                    .into();
                let (parts, reply) = response.into_parts();
                let collected = reply.collect().await.expect("the whole reply");
                let trailers = collected.trailers().cloned();
                let bytes = collected.to_bytes();
                prop_assert_eq!(parts.status, 200, "{}", context);
                // tonic-web answers in text only to a client that accepts it: go by what came.
                let text = parts
                    .headers
                    .get("content-type")
                    .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc-web-text"));
                let code = grpc_status(&parts.headers, trailers.as_ref(), &bytes, text)
                    .ok_or_else(|| TestCaseError::fail(format!("{context}: no grpc-status")))?;
                let code = tonic::Code::from_i32(code);
                prop_assert!(
                    !matches!(
                        code,
                        tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss
                    ),
                    "{context}: {code:?} {:?}",
                    parts.headers.get("grpc-message")
                );
                if code != tonic::Code::Ok {
                    prop_assert_eq!(store_state(&server).await, before, "{}", context);
                }
                Ok(())
            })
        },
    );
}
