//! REST v1, black box: the real server on a real socket, spoken to with reqwest.
//!
//! One test per convention of the API (status codes, problem documents, trace ids, pages,
//! filters, idempotency keys, conditional requests, PATCH semantics, bulk writes, bad input,
//! wire naming, HTTP/2), each on its own server so that tests never see each other's writes.
//! Where cases repeat the test is a table; nothing here depends on timing.
//!
//! The demo data (`TestServer::start`) is deterministic: 24 products, 8 customers, and 24 orders
//! whose statuses cycle pending, paid, shipped, delivered, cancelled, paid, pending, delivered
//! (so order 1 is pending, 2 paid, 3 shipped, 4 delivered, 5 cancelled), owned by customers
//! 1..=8 in turn.

mod common;

use std::collections::{HashMap, HashSet};

use common::{TestServer, expect_problem};
use polyport::config::Config;
use reqwest::header::{CONTENT_TYPE, IF_MATCH, IF_NONE_MATCH};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

// ---- helpers ----

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";
const TRACE_ID: &str = "x-trace-id";

/// A create-order body: `customer_id` and `(product_id, quantity)` lines.
fn new_order(customer_id: &str, items: &[(&str, i64)]) -> Value {
    json!({
        "customer_id": customer_id,
        "items": items
            .iter()
            .map(|(product_id, quantity)| json!({ "product_id": product_id, "quantity": quantity }))
            .collect::<Vec<_>>(),
    })
}

/// The value of response header `name`, which must be present.
fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{} {}: no {name} header", response.status(), response.url()))
        .to_str()
        .expect("visible ASCII header")
        .to_owned()
}

/// Asserts `status` and returns the JSON body.
async fn expect_json(response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let url = response.url().clone();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "{url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
}

/// Creates an order and returns it.
async fn create_order(server: &TestServer, customer_id: &str, items: &[(&str, i64)]) -> Value {
    let response = server
        .post("/v1/orders")
        .json(&new_order(customer_id, items))
        .send()
        .await
        .expect("request");
    expect_json(response, 201).await
}

/// GET `path` and expect 200 with a JSON body.
async fn get_json(server: &TestServer, path: &str) -> Value {
    expect_json(server.get(path).send().await.expect("request"), 200).await
}

/// What `/readyz` says about the store: (order count, last event seq).
async fn store_state(server: &TestServer) -> (u64, u64) {
    let ready = get_json(server, "/readyz").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    (
        ready["orders"].as_u64().expect("orders"),
        ready["last_event_seq"].as_u64().expect("last_event_seq"),
    )
}

async fn order_count(server: &TestServer) -> u64 {
    store_state(server).await.0
}

/// The `field`s named in a validation problem's `errors`, checking each has a message.
fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {problem}"))
        .iter()
        .map(|e| {
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{problem}"
            );
            e["field"].as_str().expect("field is a string").to_owned()
        })
        .collect()
}

/// The ids of a list page's rows, as strings.
fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array: {page}"))
        .iter()
        .map(|row| row["id"].as_str().expect("string id").to_owned())
        .collect()
}

/// Walks every page of `path` (which has a query string) by following `next_cursor`, calling
/// `after_page` after each page; returns the ids in the order they were served.
async fn walk(server: &TestServer, path: &str, mut after_page: impl FnMut()) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let url = match &cursor {
            None => path.to_owned(),
            Some(c) => format!("{path}&cursor={c}"),
        };
        let page = get_json(server, &url).await;
        seen.extend(ids(&page));
        after_page();
        assert_eq!(
            page["has_more"].as_bool().expect("has_more"),
            !page["next_cursor"].is_null(),
            "{page}"
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
    panic!("{path}: pages never ended");
}

/// Asserts no id appears twice.
fn assert_unique(ids: &[String], context: &str) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in ids {
        *counts.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{context}: served more than once: {twice:?}"
    );
}

fn expected_ids(range: std::ops::RangeInclusive<u64>) -> HashSet<String> {
    range.map(|n| n.to_string()).collect()
}

// ---- 1. status codes ----

#[tokio::test]
async fn reads_answer_200_and_creations_answer_201_with_a_location_that_resolves() {
    let server = TestServer::start().await;
    for path in [
        "/v1/orders",
        "/v1/orders/1",
        "/v1/customers",
        "/v1/products/1",
    ] {
        get_json(&server, path).await;
    }

    let response = server
        .post("/v1/customers")
        .json(&json!({ "name": "Frances Allen", "email": "frances@example.com" }))
        .send()
        .await
        .unwrap();
    let location = header(&response, "location");
    let customer = expect_json(response, 201).await;
    assert_eq!(
        location,
        format!("/v1/customers/{}", customer["id"].as_str().unwrap())
    );
    assert_eq!(get_json(&server, &location).await, customer);

    let customer_id = customer["id"].as_str().unwrap();
    let response = server
        .post("/v1/orders")
        .json(&new_order(customer_id, &[("1", 2)]))
        .send()
        .await
        .unwrap();
    let location = header(&response, "location");
    let order = expect_json(response, 201).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/orders/{order_id}"));
    assert_eq!(get_json(&server, &location).await, order);

    let response = server
        .post(&format!("/v1/orders/{order_id}/items"))
        .json(&json!({ "product_id": "3", "quantity": 1 }))
        .send()
        .await
        .unwrap();
    let location = header(&response, "location");
    let item = expect_json(response, 201).await;
    assert_eq!(
        location,
        format!(
            "/v1/orders/{order_id}/items/{}",
            item["id"].as_str().unwrap()
        )
    );
    assert_eq!(get_json(&server, &location).await, item);

    let response = server
        .post(&format!("/v1/orders/{order_id}/cancellations"))
        .json(&json!({ "reason": "ordered twice" }))
        .send()
        .await
        .unwrap();
    let location = header(&response, "location");
    let cancellation = expect_json(response, 201).await;
    assert_eq!(location, format!("/v1/orders/{order_id}/cancellation"));
    assert_eq!(cancellation["order_id"], order_id.as_str());
    assert_eq!(cancellation["reason"], "ordered twice");
    assert_eq!(cancellation["order"]["status"], "cancelled");
    let read = get_json(&server, &location).await;
    assert_eq!(read["order_id"], order_id.as_str());
    assert_eq!(read["cancelled_at"], cancellation["cancelled_at"]);
}

#[tokio::test]
async fn a_deleted_order_answers_204_and_then_404() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    let response = server.delete("/v1/orders/1").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.headers().contains_key(TRACE_ID));
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(order_count(&server).await, before - 1);

    expect_problem(
        server.get("/v1/orders/1").send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
    expect_problem(
        server.delete("/v1/orders/1").send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn unknown_resources_and_routes_answer_404() {
    let server = TestServer::start().await;
    let cases = [
        ("/v1/orders/999999", "not-found"),
        ("/v1/orders/abc", "not-found"),
        ("/v1/orders/-1", "not-found"),
        ("/v1/orders/0", "not-found"),
        ("/v1/orders/99999999999999999999999", "not-found"),
        ("/v1/orders/1/items/999", "not-found"),
        ("/v1/orders/1/cancellation", "not-found"), // order 1 is pending
        ("/v1/customers/999", "not-found"),
        ("/v1/products/999", "not-found"),
        ("/v1/nope", "route-not-found"),
        ("/v2/orders", "route-not-found"),
        ("/orders", "route-not-found"),
    ];
    for (path, slug) in cases {
        let problem = expect_problem(server.get(path).send().await.unwrap(), 404, slug).await;
        assert_eq!(problem["instance"], path, "{problem}");
    }
}

#[tokio::test]
async fn a_method_a_path_does_not_take_answers_405_with_an_allow_header() {
    let server = TestServer::start().await;
    let cases = [
        (Method::DELETE, "/v1/orders", &["GET", "POST"][..]),
        (Method::GET, "/v1/orders/bulk", &["POST"][..]),
        (
            Method::POST,
            "/v1/orders/1",
            &["GET", "PUT", "PATCH", "DELETE"][..],
        ),
        (Method::DELETE, "/v1/products/1", &["GET"][..]),
        (Method::PUT, "/v1/customers", &["GET", "POST"][..]),
    ];
    for (method, path, allowed) in cases {
        let response = server
            .client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap();
        let allow = header(&response, "allow");
        let listed: Vec<&str> = allow.split(',').map(str::trim).collect();
        for m in allowed {
            assert!(listed.contains(m), "{method} {path}: Allow: {allow}");
        }
        assert!(
            !listed.contains(&method.as_str()),
            "{method} {path}: Allow: {allow}"
        );
        expect_problem(response, 405, "method-not-allowed").await;
    }
}

#[tokio::test]
async fn conflicting_writes_answer_409_naming_the_conflict() {
    let server = TestServer::start().await;
    // Order 3 is shipped, order 2 paid; ada@example.com belongs to customer 1.
    let cases = [
        (
            server.post("/v1/orders/3/cancellations"),
            "illegal-transition",
        ),
        (
            server
                .patch("/v1/orders/4")
                .json(&json!({ "status": "pending" })),
            "illegal-transition",
        ),
        (
            server
                .post("/v1/orders/2/items")
                .json(&json!({ "product_id": "1", "quantity": 1 })),
            "invalid-state",
        ),
        (
            server
                .post("/v1/customers")
                .json(&json!({ "name": "Ada again", "email": "ada@example.com" })),
            "already-exists",
        ),
        (
            server
                .post("/v1/customers")
                .json(&json!({ "name": "Ada shouting", "email": "ADA@EXAMPLE.COM" })),
            "already-exists",
        ),
    ];
    let before = store_state(&server).await;
    for (request, slug) in cases {
        expect_problem(request.send().await.unwrap(), 409, slug).await;
    }
    assert_eq!(store_state(&server).await, before);
    assert_eq!(get_json(&server, "/v1/orders/3").await["status"], "shipped");
}

#[tokio::test]
async fn a_body_over_the_configured_limit_answers_413() {
    let mut config = Config::default();
    config.server.body_limit_bytes = 256;
    let server = TestServer::with_config(config).await;
    let before = store_state(&server).await;

    let big = new_order("1", &vec![("1", 1); 40]);
    assert!(serde_json::to_vec(&big).unwrap().len() > 256);
    let response = server.post("/v1/orders").json(&big).send().await.unwrap();
    expect_problem(response, 413, "payload-too-large").await;

    // Under the limit is fine.
    create_order(&server, "1", &[("1", 1)]).await;
    assert_eq!(store_state(&server).await.0, before.0 + 1);
}

#[tokio::test]
async fn a_body_without_a_json_content_type_answers_415() {
    let server = TestServer::start().await;
    let body = serde_json::to_vec(&new_order("1", &[("1", 1)])).unwrap();
    let cases: &[(Method, &str, Option<&str>)] = &[
        (Method::POST, "/v1/orders", None),
        (Method::POST, "/v1/orders", Some("text/plain")),
        (Method::POST, "/v1/orders", Some("application/xml")),
        (
            Method::POST,
            "/v1/orders",
            Some("application/x-www-form-urlencoded"),
        ),
        (
            Method::POST,
            "/v1/orders",
            Some("application/merge-patch+json"),
        ),
        (Method::POST, "/v1/orders/bulk", None),
        (Method::POST, "/v1/customers", Some("text/json")),
        (Method::PUT, "/v1/orders/1", None),
        (Method::PATCH, "/v1/orders/1", Some("text/plain")),
        (Method::POST, "/v1/orders/1/items", None),
        (Method::POST, "/v1/orders/1/cancellations", None),
        (
            Method::POST,
            "/v1/orders/1/cancellations",
            Some("text/plain"),
        ),
    ];
    let before = store_state(&server).await;
    for (method, path, content_type) in cases {
        let mut request = server
            .client
            .request(method.clone(), server.url(path))
            .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, *content_type);
        }
        let problem =
            expect_problem(request.send().await.unwrap(), 415, "unsupported-media-type").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{method} {path}: {problem}"
        );
    }
    assert_eq!(store_state(&server).await, before);

    // Parameters of the media type are fine.
    let response = server
        .post("/v1/orders")
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

// ---- 2. problem documents ----

#[tokio::test]
async fn every_error_is_a_problem_and_validation_errors_name_each_field() {
    let server = TestServer::start().await;
    // (body, the fields the problem must name)
    let cases: &[(Value, &[&str])] = &[
        (new_order("1", &[("1", 0)]), &["items[0].quantity"]),
        (
            new_order("1", &[("1", 1), ("2", -3)]),
            &["items[1].quantity"],
        ),
        (new_order("1", &[("999", 1)]), &["items[0].product_id"]),
        (new_order("999", &[("1", 1)]), &["customer_id"]),
        (
            new_order("nobody", &[("1", 0), ("1", 1001)]),
            &["customer_id", "items[0].quantity", "items[1].quantity"],
        ),
        (new_order("1", &[]), &["items"]),
        (
            json!({ "customer_id": "1", "items": [{ "product_id": "1", "quantity": "two" }] }),
            &["items[0].quantity"],
        ),
        (
            json!({ "customer_id": "1", "items": [{ "product_id": "1", "quantity": 1, "colour": "red" }] }),
            &["items[0].colour"],
        ),
        (json!({ "items": [] }), &["body"]),
    ];
    for (body, fields) in cases {
        let response = server.post("/v1/orders").json(body).send().await.unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert_eq!(problem["instance"], "/v1/orders");
        let named = error_fields(&problem);
        for field in *fields {
            assert!(
                named.iter().any(|n| n == field),
                "{body}: expected {field} in {problem}"
            );
        }
    }

    // Other kinds of problem: same shape, no `errors`.
    let response = server.get("/v1/orders/999999").send().await.unwrap();
    let problem = expect_problem(response, 404, "not-found").await;
    assert!(problem.get("errors").is_none(), "{problem}");
    // The problem type is a link the server answers.
    let kind = get_json(&server, "/problems/not-found").await;
    assert_eq!(kind["status"], 404);
}

// ---- 3. trace ids ----

#[tokio::test]
async fn every_response_carries_a_trace_id() {
    let server = TestServer::start().await;
    let etag = header(&server.get("/v1/orders/1").send().await.unwrap(), "etag");
    let requests = [
        server.get("/v1/orders"),
        server.get("/v1/orders/1"),
        server.get("/v1/orders/1").header(IF_NONE_MATCH, etag), // 304
        server.post("/v1/orders").json(&new_order("1", &[("1", 1)])),
        server.delete("/v1/orders/7"), // 204
        server.get("/v1/orders/999"),  // 404
        server.delete("/v1/orders"),   // 405
        server.get("/healthz"),
        server.get("/readyz"),
        server.get("/problems"),
    ];
    let mut trace_ids = HashSet::new();
    for request in requests {
        let response = request.send().await.unwrap();
        let trace_id = header(&response, TRACE_ID);
        assert_eq!(trace_id.len(), 32, "{trace_id}");
        assert!(
            trace_id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{trace_id}"
        );
        assert!(
            trace_ids.insert(trace_id),
            "trace ids are fresh per request"
        );
    }
}

#[tokio::test]
async fn an_incoming_traceparent_sets_the_trace_id_of_responses_and_problems() {
    let server = TestServer::start().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");

    let response = server
        .get("/v1/orders/1")
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, TRACE_ID), trace_id);

    let response = server
        .get("/v1/orders/999")
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, TRACE_ID), trace_id);
    let problem = expect_problem(response, 404, "not-found").await;
    assert_eq!(problem["trace_id"], trace_id);

    let response = server
        .post("/v1/orders")
        .header("traceparent", &traceparent)
        .json(&new_order("1", &[("1", 0)]))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400, "validation").await;
    assert_eq!(problem["trace_id"], trace_id);

    // An invalid traceparent is ignored: a fresh trace id instead.
    let response = server
        .get("/v1/orders/1")
        .header("traceparent", format!("00-{trace_id}-0000000000000000-01"))
        .send()
        .await
        .unwrap();
    let fresh = header(&response, TRACE_ID);
    assert_ne!(fresh, trace_id);
    assert_eq!(fresh.len(), 32);
}

// ---- 4. pagination ----

#[tokio::test]
async fn lists_default_to_20_rows_in_a_data_envelope() {
    let server = TestServer::start().await;
    let page = get_json(&server, "/v1/orders").await;
    let keys: HashSet<&str> = page
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from(["data", "next_cursor", "has_more"]),
        "{page}"
    );
    assert_eq!(
        ids(&page),
        (1..=20).map(|n| n.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(page["has_more"], true);
    assert!(page["next_cursor"].is_string());

    let last = get_json(
        &server,
        &format!(
            "/v1/orders?cursor={}",
            page["next_cursor"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(ids(&last), ["21", "22", "23", "24"]);
    assert_eq!(last["has_more"], false);
    assert_eq!(last["next_cursor"], Value::Null);

    let page = get_json(&server, "/v1/orders?limit=100").await;
    assert_eq!(ids(&page).len(), 24);
    assert_eq!(page["has_more"], false);
}

#[tokio::test]
async fn a_limit_outside_1_to_100_is_rejected() {
    let server = TestServer::start().await;
    for limit in ["0", "101", "-1", "1000000", "ten", "1.5", ""] {
        let response = server
            .get(&format!("/v1/orders?limit={limit}"))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert_eq!(error_fields(&problem), ["limit"], "limit={limit}");
    }
    for limit in ["1", "100"] {
        get_json(&server, &format!("/v1/orders?limit={limit}")).await;
    }
}

#[tokio::test]
async fn walking_the_cursors_returns_every_order_exactly_once() {
    let server = TestServer::start().await;
    let sorts = [
        "",
        "&sort=id",
        "&sort=-total_cents",
        "&sort=status,-created_at",
        "&sort=-updated_at",
    ];
    for sort in sorts {
        let path = format!("/v1/orders?limit=7{sort}");
        let seen = walk(&server, &path, || {}).await;
        assert_unique(&seen, &path);
        assert_eq!(seen.len(), 24, "{path}");
        assert_eq!(
            seen.into_iter().collect::<HashSet<_>>(),
            expected_ids(1..=24)
        );
    }
}

#[tokio::test]
async fn a_tampered_or_foreign_cursor_is_rejected() {
    let server = TestServer::start().await;
    let page = get_json(&server, "/v1/orders?limit=5&sort=-total_cents").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();

    // Flip one character of the payload: the signature no longer matches.
    let mut tampered = cursor.clone().into_bytes();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other_server = TestServer::start().await;
    let foreign = get_json(&other_server, "/v1/orders?limit=5&sort=-total_cents").await;
    let foreign = foreign["next_cursor"].as_str().unwrap().to_owned();

    let cases = [
        format!("/v1/orders?limit=5&sort=-total_cents&cursor={tampered}"),
        format!("/v1/orders?limit=5&sort=-total_cents&cursor={foreign}"),
        "/v1/orders?cursor=garbage".to_owned(),
        "/v1/orders?cursor=".to_owned(),
        "/v1/orders?cursor=a.b".to_owned(),
        // Ours, but for another sort order.
        format!("/v1/orders?limit=5&cursor={cursor}"),
        format!("/v1/orders?limit=5&sort=total_cents&cursor={cursor}"),
        format!("/v1/customers?limit=5&cursor={cursor}"),
    ];
    for path in cases {
        let problem =
            expect_problem(server.get(&path).send().await.unwrap(), 400, "validation").await;
        assert!(
            error_fields(&problem).contains(&"cursor".to_owned()),
            "{path}: {problem}"
        );
    }
    // The untampered cursor still works with its own sort.
    get_json(
        &server,
        &format!("/v1/orders?limit=5&sort=-total_cents&cursor={cursor}"),
    )
    .await;
}

#[tokio::test]
async fn offset_pages_skip_rows_and_cannot_be_combined_with_a_cursor() {
    let server = TestServer::start().await;
    let first = get_json(&server, "/v1/orders?limit=5&offset=0").await;
    let second = get_json(&server, "/v1/orders?limit=5&offset=5").await;
    assert_eq!(ids(&first), ["1", "2", "3", "4", "5"]);
    assert_eq!(ids(&second), ["6", "7", "8", "9", "10"]);
    let tail = get_json(&server, "/v1/orders?limit=5&offset=22").await;
    assert_eq!(ids(&tail), ["23", "24"]);
    assert_eq!(tail["has_more"], false);

    let by_total = get_json(&server, "/v1/orders?limit=100&sort=-total_cents").await;
    let skipped = get_json(&server, "/v1/orders?limit=3&offset=4&sort=-total_cents").await;
    assert_eq!(ids(&skipped), ids(&by_total)[4..7]);

    let cursor = first["next_cursor"].as_str().unwrap();
    let response = server
        .get(&format!("/v1/orders?limit=5&offset=5&cursor={cursor}"))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400, "validation").await;
    assert_eq!(error_fields(&problem), ["offset"]);
    for bad in ["-1", "x", "99999999999"] {
        let response = server
            .get(&format!("/v1/orders?offset={bad}"))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert_eq!(error_fields(&problem), ["offset"], "offset={bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cursor_pages_stay_exact_while_orders_are_inserted() {
    let mut config = Config::default();
    config.data.demo_orders = 300;
    let server = TestServer::with_config(config).await;
    for sort in ["", "&sort=-created_at", "&sort=total_cents"] {
        // After each page the walker asks a concurrent task to insert two more orders, so
        // inserts land between (and during) page requests.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let client = server.client.clone();
        let url = server.url("/v1/orders");
        let inserter = tokio::spawn(async move {
            let mut created = 0;
            while rx.recv().await.is_some() {
                for product in ["3", "11"] {
                    let response = client
                        .post(&url)
                        .json(&new_order("2", &[(product, 2)]))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::CREATED);
                    created += 1;
                }
            }
            created
        });
        let path = format!("/v1/orders?limit=7{sort}");
        let seen = walk(&server, &path, || tx.send(()).unwrap()).await;
        drop(tx);
        let created = inserter.await.unwrap();
        assert!(created >= 80, "{path}: {created} inserts during the walk");

        assert_unique(&seen, &path);
        let seen: HashSet<String> = seen.into_iter().collect();
        let missing: Vec<_> = expected_ids(1..=300).difference(&seen).cloned().collect();
        assert!(missing.is_empty(), "{path}: never served {missing:?}");
    }
}

// ---- 5. filters, sorting, sparse fields, includes ----

#[tokio::test]
async fn filters_select_orders_by_status_and_customer() {
    let server = TestServer::start().await;
    let paid = get_json(&server, "/v1/orders?status=paid&limit=100").await;
    let rows = paid["data"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "{paid}"); // 2 of every 8 demo orders are paid
    assert!(rows.iter().all(|o| o["status"] == "paid"), "{paid}");

    let mine = get_json(&server, "/v1/orders?customer_id=3&limit=100").await;
    assert_eq!(ids(&mine), ["3", "11", "19"]);
    assert!(
        mine["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["customer_id"] == "3")
    );

    let both = get_json(&server, "/v1/orders?customer_id=2&status=paid").await;
    assert_eq!(ids(&both), ["2", "10", "18"]);
    let none = get_json(&server, "/v1/orders?customer_id=3&status=paid").await;
    assert!(ids(&none).is_empty());
    // An id this server never issued names no customer: no orders, not an error.
    let nobody = get_json(&server, "/v1/orders?customer_id=nobody").await;
    assert!(ids(&nobody).is_empty());

    let problem = expect_problem(
        server.get("/v1/orders?status=lost").send().await.unwrap(),
        400,
        "validation",
    )
    .await;
    assert_eq!(error_fields(&problem), ["status"]);
}

#[tokio::test]
async fn sorting_orders_rows_and_unknown_sorts_or_parameters_are_rejected() {
    let server = TestServer::start().await;
    let page = get_json(&server, "/v1/orders?sort=-total_cents&limit=100").await;
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 24);
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (ta, tb) = (
            a["total_cents"].as_i64().unwrap(),
            b["total_cents"].as_i64().unwrap(),
        );
        assert!(ta >= tb, "not descending: {a} then {b}");
        if ta == tb {
            // Ties are broken by id, ascending.
            let id = |o: &Value| o["id"].as_str().unwrap().parse::<u64>().unwrap();
            assert!(id(a) < id(b), "tie not broken by id: {a} then {b}");
        }
    }
    let page = get_json(&server, "/v1/orders?sort=created_at&limit=100").await;
    let created: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["created_at"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "{created:?}");

    let cases = [
        ("/v1/orders?sort=colour", "sort"),
        ("/v1/orders?sort=-", "sort"),
        ("/v1/orders?sort=total_cents,-total_cents", "sort"),
        ("/v1/orders?stauts=paid", "stauts"),
        ("/v1/orders?page=2", "page"),
        ("/v1/orders?limit=5&limit=6", "limit"),
        ("/v1/products?status=paid", "status"),
        ("/v1/customers?include=orders", "include"),
        ("/v1/orders?include=payments", "include"),
        ("/v1/orders?fields=id,secret", "fields"),
    ];
    for (path, field) in cases {
        let problem =
            expect_problem(server.get(path).send().await.unwrap(), 400, "validation").await;
        assert_eq!(error_fields(&problem), [field], "{path}");
    }
}

#[tokio::test]
async fn sparse_fieldsets_return_only_the_requested_keys() {
    let server = TestServer::start().await;
    let cases: &[(&str, &[&str])] = &[
        ("/v1/orders?fields=id,status", &["id", "status"]),
        ("/v1/orders?fields=total_cents", &["total_cents"]),
        ("/v1/orders?fields=id&include=customer", &["id", "customer"]),
        ("/v1/customers?fields=email", &["email"]),
        ("/v1/products?fields=id,price_cents", &["id", "price_cents"]),
        ("/v1/orders/1/items?fields=quantity", &["quantity"]),
    ];
    for (path, fields) in cases {
        let page = get_json(&server, path).await;
        let rows = page["data"].as_array().unwrap();
        assert!(!rows.is_empty(), "{path}");
        for row in rows {
            let mut keys: Vec<&str> = row
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            let mut expected = fields.to_vec();
            expected.sort_unstable();
            assert_eq!(keys, expected, "{path}: {row}");
        }
    }
}

#[tokio::test]
async fn include_embeds_the_customer_and_the_items() {
    let server = TestServer::start().await;
    let plain = get_json(&server, "/v1/orders?limit=5").await;
    for row in plain["data"].as_array().unwrap() {
        assert!(row.get("items").is_none(), "list rows omit items: {row}");
        assert!(row.get("customer").is_none(), "{row}");
    }

    let page = get_json(&server, "/v1/orders?limit=5&include=customer,items").await;
    for row in page["data"].as_array().unwrap() {
        let customer = &row["customer"];
        assert_eq!(customer["id"], row["customer_id"], "{row}");
        assert_eq!(
            customer,
            &get_json(
                &server,
                &format!("/v1/customers/{}", row["customer_id"].as_str().unwrap())
            )
            .await
        );
        let order = get_json(
            &server,
            &format!("/v1/orders/{}", row["id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(row["items"], order["items"], "{row}");
        assert!(!row["items"].as_array().unwrap().is_empty());
    }

    let items_only = get_json(&server, "/v1/orders?limit=5&include=items").await;
    for row in items_only["data"].as_array().unwrap() {
        assert!(row["items"].is_array(), "{row}");
        assert!(row.get("customer").is_none(), "{row}");
    }
}

#[tokio::test]
async fn one_order_side_loads_its_customer_and_each_items_product() {
    let server = TestServer::start().await;
    let plain = get_json(&server, "/v1/orders/1").await;
    assert!(plain.get("customer").is_none(), "{plain}");

    let order = get_json(&server, "/v1/orders/1?include=customer,items.product").await;
    let customer_id = order["customer_id"].as_str().unwrap();
    assert_eq!(
        order["customer"],
        get_json(&server, &format!("/v1/customers/{customer_id}")).await
    );
    let items = order["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{order}");
    for (item, plain_item) in items.iter().zip(plain["items"].as_array().unwrap()) {
        let product_id = item["product_id"].as_str().unwrap();
        let product = get_json(&server, &format!("/v1/products/{product_id}")).await;
        assert_eq!(item["product"], product, "{item}");
        assert!(item["product"]["name"].is_string(), "{item}");
        let mut without = item.as_object().unwrap().clone();
        without.remove("product");
        assert_eq!(&Value::Object(without), plain_item);
    }

    // The side-loaded representation has its own validator, and it revalidates.
    let response = server
        .get("/v1/orders/1?include=customer")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = header(&response, "etag");
    assert_ne!(etag, format!("\"{}\"", plain["version"]));
    let again = server
        .get("/v1/orders/1?include=customer")
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // The list takes the same dotted path.
    let page = get_json(&server, "/v1/orders?limit=3&include=items.product").await;
    for row in page["data"].as_array().unwrap() {
        for item in row["items"].as_array().unwrap() {
            assert_eq!(item["product"]["id"], item["product_id"], "{row}");
        }
    }
}

#[tokio::test]
async fn an_unknown_include_or_parameter_is_a_400_on_every_endpoint() {
    let server = TestServer::start().await;
    for path in [
        "/v1/orders/1?include=bogus",
        "/v1/orders/1?include=items.bogus",
        "/v1/orders/1?colour=red",
        "/v1/orders?include=bogus",
        "/v1/customers/1?colour=red",
        "/v1/products?colour=red",
    ] {
        let response = server.get(path).send().await.unwrap();
        expect_problem(response, 400, "validation").await;
    }
    let customer = get_json(&server, "/v1/customers?limit=1").await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = order_count(&server).await;
    let response = server
        .post("/v1/orders?colour=red")
        .json(&new_order(&customer, &[("1", 1)]))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "validation").await;
    assert_eq!(order_count(&server).await, before, "nothing was created");
}

// ---- 6. idempotency keys ----

#[tokio::test]
async fn a_retried_create_with_the_same_key_is_replayed_not_repeated() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    let body = new_order("1", &[("1", 2), ("5", 1)]);

    let first = server
        .post("/v1/orders")
        .header(IDEMPOTENCY_KEY, "order-retry-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        !first.headers().contains_key(REPLAYED),
        "a first execution is not a replay"
    );
    let first_location = header(&first, "location");
    let first_body = expect_json(first, 201).await;

    for _ in 0..3 {
        let again = server
            .post("/v1/orders")
            .header(IDEMPOTENCY_KEY, "order-retry-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&again, REPLAYED), "true");
        assert_eq!(header(&again, "location"), first_location);
        assert_eq!(expect_json(again, 201).await, first_body);
    }
    assert_eq!(order_count(&server).await, before + 1);

    // Without a key every request executes.
    create_order(&server, "1", &[("1", 2), ("5", 1)]).await;
    create_order(&server, "1", &[("1", 2), ("5", 1)]).await;
    assert_eq!(order_count(&server).await, before + 3);
}

#[tokio::test]
async fn whitespace_and_key_order_do_not_change_what_a_request_means() {
    let server = TestServer::start().await;
    // (method, path, status, the first spelling, then respellings: whitespace, key order)
    #[rustfmt::skip]
    let cases: &[(Method, &str, u16, [&str; 3])] = &[
        (Method::POST, "/v1/orders", 201, [
            r#"{"customer_id":"1","items":[{"product_id":"2","quantity":1}]}"#,
            "{ \"customer_id\" : \"1\" ,\n\t\"items\" : [ { \"product_id\" : \"2\", \"quantity\" : 1 } ] }\n",
            r#"{"items":[{"quantity":1,"product_id":"2"}],"customer_id":"1"}"#,
        ]),
        (Method::POST, "/v1/customers", 201, [
            r#"{"name":"Radia Perlman","email":"radia@example.com"}"#,
            "{\n  \"name\": \"Radia Perlman\",\n  \"email\": \"radia@example.com\"\n}",
            r#"{"email":"radia@example.com","name":"Radia Perlman"}"#,
        ]),
        (Method::PATCH, "/v1/orders/1", 200, [
            r#"{"status":"paid","items":[{"product_id":"2","quantity":1}]}"#,
            r#"{ "status": "paid", "items": [ { "product_id": "2", "quantity": 1 } ] }"#,
            r#"{"items":[{"quantity":1,"product_id":"2"}],"status":"paid"}"#,
        ]),
        (Method::POST, "/v1/orders/bulk", 200, [
            r#"{"orders":[{"customer_id":"1","items":[{"product_id":"2","quantity":1}]}]}"#,
            r#"{ "orders": [ { "customer_id": "1", "items": [ { "product_id": "2", "quantity": 1 } ] } ] }"#,
            r#"{"orders":[{"items":[{"quantity":1,"product_id":"2"}],"customer_id":"1"}]}"#,
        ]),
    ];
    let mut failures = Vec::new();
    for (i, (method, path, status, [first, respellings @ ..])) in cases.iter().enumerate() {
        let key = format!("respelled-{i}");
        let send = |body: &str| {
            server
                .client
                .request(method.clone(), server.url(path))
                .header(IDEMPOTENCY_KEY, &key)
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_owned())
                .send()
        };
        let first = expect_json(send(first).await.unwrap(), *status).await;
        let before = store_state(&server).await;
        for (respelling, how) in respellings.iter().zip(["whitespace", "key order"]) {
            let again = send(respelling).await.unwrap();
            let replayed = again.headers().get(REPLAYED).cloned();
            let again_status = again.status().as_u16();
            let text = again.text().await.unwrap();
            if again_status != *status {
                failures.push(format!(
                    "{method} {path}: a different {how} alone made it another request: {text}"
                ));
                continue;
            }
            assert_eq!(
                replayed.map(|v| v.to_str().unwrap().to_owned()).as_deref(),
                Some("true")
            );
            assert_eq!(
                serde_json::from_str::<Value>(&text).unwrap(),
                first,
                "{path}"
            );
            assert_eq!(store_state(&server).await, before, "{path}: executed twice");
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn a_reused_idempotency_key_with_another_body_is_rejected() {
    let server = TestServer::start().await;
    let first = server
        .post("/v1/orders")
        .header(IDEMPOTENCY_KEY, "reused-key")
        .json(&new_order("1", &[("1", 1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let before = store_state(&server).await;

    let other_bodies = [
        new_order("1", &[("1", 2)]),
        new_order("2", &[("1", 1)]),
        new_order("1", &[("1", 1), ("1", 1)]),
    ];
    for body in &other_bodies {
        let response = server
            .post("/v1/orders")
            .header(IDEMPOTENCY_KEY, "reused-key")
            .json(body)
            .send()
            .await
            .unwrap();
        expect_problem(response, 422, "idempotency-key-reused").await;
    }
    // Another operation with the same key is another request too.
    let response = server
        .post("/v1/customers")
        .header(IDEMPOTENCY_KEY, "reused-key")
        .json(&json!({ "name": "Someone", "email": "someone@example.com" }))
        .send()
        .await
        .unwrap();
    expect_problem(response, 422, "idempotency-key-reused").await;
    assert_eq!(store_state(&server).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_create_exactly_one_order() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = server.client.clone();
        let url = server.url("/v1/orders");
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let response = client
                .post(&url)
                .header(IDEMPOTENCY_KEY, "one-key-many-requests")
                .json(&new_order("4", &[("7", 3)]))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }));
    }
    let mut created_ids = HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => {
                created_ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(body["type"], "/problems/idempotency-in-flight", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created_ids.len(), 1, "{created_ids:?}");
    assert_eq!(order_count(&server).await, before + 1);
}

#[tokio::test]
async fn patch_honours_idempotency_keys() {
    let server = TestServer::start().await;
    let patch = |key: &str, body: Value| {
        server
            .patch("/v1/orders/1")
            .header(IDEMPOTENCY_KEY, key)
            .json(&body)
            .send()
    };
    let first = patch("pay-order-1", json!({ "status": "paid" }))
        .await
        .unwrap();
    assert!(!first.headers().contains_key(REPLAYED));
    let first = expect_json(first, 200).await;
    assert_eq!(first["version"], 2);
    let state = store_state(&server).await;

    let again = patch("pay-order-1", json!({ "status": "paid" }))
        .await
        .unwrap();
    assert_eq!(header(&again, REPLAYED), "true");
    assert_eq!(expect_json(again, 200).await, first);

    let other = patch("pay-order-1", json!({ "status": "shipped" }))
        .await
        .unwrap();
    expect_problem(other, 422, "idempotency-key-reused").await;
    assert_eq!(store_state(&server).await, state);
    assert_eq!(get_json(&server, "/v1/orders/1").await["status"], "paid");

    // A new key is a new request: it runs.
    let ship = patch("ship-order-1", json!({ "status": "shipped" }))
        .await
        .unwrap();
    assert_eq!(expect_json(ship, 200).await["status"], "shipped");
}

#[tokio::test]
async fn a_request_that_fails_validation_does_not_use_up_its_key() {
    let server = TestServer::start().await;
    // (what is wrong, the invalid body, the problem's field)
    let cases = [
        (
            "a quantity of zero",
            new_order("1", &[("1", 0)]),
            "items[0].quantity",
        ),
        (
            "a wrongly typed field",
            json!({ "customer_id": 1, "items": [] }),
            "customer_id",
        ),
        (
            "an unknown product",
            new_order("1", &[("999", 1)]),
            "items[0].product_id",
        ),
        (
            "an unknown customer",
            new_order("999", &[("1", 1)]),
            "customer_id",
        ),
        ("no items", new_order("1", &[]), "items"),
    ];
    let mut failures = Vec::new();
    for (i, (what, invalid, field)) in cases.into_iter().enumerate() {
        let key = format!("fix-and-retry-{i}");
        let before = order_count(&server).await;
        let response = server
            .post("/v1/orders")
            .header(IDEMPOTENCY_KEY, &key)
            .json(&invalid)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert!(
            error_fields(&problem).contains(&field.to_owned()),
            "{what}: {problem}"
        );

        let fixed = server
            .post("/v1/orders")
            .header(IDEMPOTENCY_KEY, &key)
            .json(&new_order("1", &[("1", 1)]))
            .send()
            .await
            .unwrap();
        let status = fixed.status();
        let text = fixed.text().await.unwrap();
        if status == StatusCode::CREATED {
            assert_eq!(order_count(&server).await, before + 1, "{what}");
        } else {
            failures.push(format!(
                "after {what}, the fixed request with the same key answered {status}: {text}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---- 7. conditional requests and caching ----

#[tokio::test]
async fn an_order_etag_is_its_version_and_if_none_match_answers_304() {
    let server = TestServer::start().await;
    let response = server.get("/v1/orders/1").send().await.unwrap();
    let etag = header(&response, "etag");
    let order = expect_json(response, 200).await;
    assert_eq!(etag, format!("\"{}\"", order["version"]));

    for if_none_match in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"77\", {etag}"),
        "*".into(),
    ] {
        let response = server
            .get("/v1/orders/1")
            .header(IF_NONE_MATCH, &if_none_match)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::NOT_MODIFIED,
            "{if_none_match}"
        );
        assert_eq!(header(&response, "etag"), etag);
        assert_eq!(header(&response, "cache-control"), "private, no-cache");
        assert!(response.headers().contains_key(TRACE_ID));
        assert!(response.bytes().await.unwrap().is_empty());
    }

    let response = server
        .patch("/v1/orders/1")
        .json(&json!({ "status": "paid" }))
        .send()
        .await
        .unwrap();
    let new_etag = header(&response, "etag");
    assert_ne!(new_etag, etag);

    let response = server
        .get("/v1/orders/1")
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "etag"), new_etag);
    assert_eq!(expect_json(response, 200).await["status"], "paid");
    let response = server
        .get("/v1/orders/1")
        .header(IF_NONE_MATCH, &new_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_stale_if_match_answers_412_and_changes_nothing() {
    let server = TestServer::empty().await;
    let customer = expect_json(
        server
            .post("/v1/customers")
            .json(&json!({ "name": "Ida", "email": "ida@example.com" }))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let customer_id = customer["id"].as_str().unwrap();
    let replacement = json!({
        "customer_id": customer_id,
        "status": "pending",
        "items": [{ "product_id": "9", "quantity": 4 }],
    });
    // (method, path under the order, body, status when If-Match is current)
    let cases = [
        (Method::PATCH, "", Some(json!({ "status": "paid" })), 200),
        (Method::PUT, "", Some(replacement), 200),
        (Method::DELETE, "", None, 204),
        (
            Method::POST,
            "/items",
            Some(json!({ "product_id": "3", "quantity": 1 })),
            201,
        ),
        (Method::POST, "/cancellations", None, 201),
    ];
    for (method, under, body, success) in cases {
        let order = create_order(&server, customer_id, &[("1", 1)]).await;
        let order_path = format!("/v1/orders/{}", order["id"].as_str().unwrap());
        // Move it to version 2, so that "1" is stale.
        let bumped = server
            .post(&format!("{order_path}/items"))
            .json(&json!({ "product_id": "2", "quantity": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(bumped.status(), StatusCode::CREATED);
        let current = get_json(&server, &order_path).await;
        assert_eq!(current["version"], 2);
        let state = store_state(&server).await;

        let path = format!("{order_path}{under}");
        let request = |if_match: &str| {
            let mut request = server
                .client
                .request(method.clone(), server.url(&path))
                .header(IF_MATCH, if_match);
            if let Some(body) = &body {
                request = request.json(body);
            }
            request.send()
        };
        // Strong comparison: a weak tag or a tag that is not a version never matches.
        for stale in ["\"1\"", "\"1\", \"3\"", "W/\"2\"", "\"banana\""] {
            let response = request(stale).await.unwrap();
            expect_problem(response, 412, "version-mismatch").await;
            assert_eq!(
                get_json(&server, &order_path).await,
                current,
                "{method} {path} If-Match: {stale}"
            );
            assert_eq!(store_state(&server).await, state);
        }
        let response = request("\"2\"").await.unwrap();
        assert_eq!(response.status().as_u16(), success, "{method} {path}");
    }
}

#[tokio::test]
async fn caching_is_public_for_the_catalog_and_private_for_orders_and_customers() {
    let server = TestServer::start().await;
    let cases = [
        ("/v1/products", "public, max-age=60"),
        ("/v1/products/1", "public, max-age=60"),
        ("/v1/orders", "private, no-cache"),
        ("/v1/orders/1", "private, no-cache"),
        ("/v1/orders/1/items", "private, no-cache"),
        ("/v1/orders/1/items/1", "private, no-cache"),
        ("/v1/orders/5/cancellation", "private, no-cache"),
        ("/v1/customers", "private, no-cache"),
        ("/v1/customers/1", "private, no-cache"),
        ("/v1/customers/1/orders", "private, no-cache"),
    ];
    for (path, cache_control) in cases {
        let response = server.get(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, "cache-control"), cache_control, "{path}");
    }
}

// ---- 8. PATCH, PUT and the order life cycle ----

#[tokio::test]
async fn patch_takes_merge_patch_and_plain_json() {
    let server = TestServer::start().await;
    for (id, content_type) in [
        ("1", "application/merge-patch+json"),
        ("7", "application/json"),
    ] {
        let response = server
            .patch(&format!("/v1/orders/{id}"))
            .header(CONTENT_TYPE, content_type)
            .body(r#"{"items":[{"product_id":"4","quantity":3}]}"#)
            .send()
            .await
            .unwrap();
        let order = expect_json(response, 200).await;
        assert_eq!(order["status"], "pending", "untouched fields stay");
        assert_eq!(order["items"].as_array().unwrap().len(), 1);
        assert_eq!(order["items"][0]["product_id"], "4");
        assert_eq!(order["items"][0]["quantity"], 3);
        assert_eq!(order["total_cents"], 3 * 2_200);
    }
    // An empty patch changes nothing, not even the version.
    let before = get_json(&server, "/v1/orders/1").await;
    let response = server
        .patch("/v1/orders/1")
        .header(CONTENT_TYPE, "application/merge-patch+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(response, 200).await, before);
}

#[tokio::test]
async fn null_cannot_remove_a_field_in_a_patch() {
    let server = TestServer::start().await;
    let before = store_state(&server).await;
    for field in ["status", "customer_id", "items"] {
        let response = server
            .patch("/v1/orders/1")
            .header(CONTENT_TYPE, "application/merge-patch+json")
            .body(format!(r#"{{"{field}":null}}"#))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert_eq!(error_fields(&problem), [field]);
    }
    assert_eq!(store_state(&server).await, before);
}

#[tokio::test]
async fn an_order_walks_from_pending_to_delivered_and_never_back() {
    let server = TestServer::start().await;
    let order = create_order(&server, "1", &[("1", 1)]).await;
    let path = format!("/v1/orders/{}", order["id"].as_str().unwrap());
    assert_eq!(order["status"], "pending");
    assert_eq!(order["version"], 1);
    for (version, status) in [(2, "paid"), (3, "shipped"), (4, "delivered")] {
        let response = server
            .patch(&path)
            .json(&json!({ "status": status }))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&response, "etag"), format!("\"{version}\""));
        let order = expect_json(response, 200).await;
        assert_eq!(order["status"], status);
        assert_eq!(order["version"], version);
    }
    for status in ["pending", "paid", "shipped", "cancelled"] {
        let response = server
            .patch(&path)
            .json(&json!({ "status": status }))
            .send()
            .await
            .unwrap();
        expect_problem(response, 409, "illegal-transition").await;
    }
    // Skipping a step is illegal too.
    let other = create_order(&server, "1", &[("1", 1)]).await;
    let response = server
        .patch(&format!("/v1/orders/{}", other["id"].as_str().unwrap()))
        .json(&json!({ "status": "shipped" }))
        .send()
        .await
        .unwrap();
    expect_problem(response, 409, "illegal-transition").await;
    assert_eq!(get_json(&server, &path).await["status"], "delivered");
}

#[tokio::test]
async fn put_replaces_the_writable_fields() {
    let server = TestServer::start().await;
    let order = create_order(&server, "1", &[("1", 1), ("2", 1)]).await;
    let path = format!("/v1/orders/{}", order["id"].as_str().unwrap());
    let response = server
        .put(&path)
        .json(&json!({
            "customer_id": "6",
            "status": "paid",
            "items": [{ "product_id": "3", "quantity": 2 }],
        }))
        .send()
        .await
        .unwrap();
    let replaced = expect_json(response, 200).await;
    assert_eq!(replaced["id"], order["id"]);
    assert_eq!(replaced["customer_id"], "6");
    assert_eq!(replaced["status"], "paid");
    assert_eq!(replaced["items"].as_array().unwrap().len(), 1);
    assert_eq!(replaced["items"][0]["product_id"], "3");
    assert_eq!(replaced["total_cents"], 2 * 12_900);
    assert_eq!(replaced["created_at"], order["created_at"]);
    assert_eq!(get_json(&server, &path).await, replaced);

    // PUT needs every writable field.
    let response = server
        .put(&path)
        .json(&json!({ "status": "shipped" }))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "validation").await;
    // A PUT to an order that does not exist is a 404, whatever the body says.
    let bodies = [
        json!({ "customer_id": "999", "status": "lost", "items": [] }),
        json!({ "status": "shipped" }),
    ];
    for body in bodies {
        let response = server
            .put("/v1/orders/999999")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "PUT {body} to a missing order: {text}"
        );
    }
}

#[tokio::test]
async fn items_change_only_while_the_order_is_pending() {
    let server = TestServer::start().await;
    let order = create_order(&server, "1", &[("1", 1)]).await;
    let id = order["id"].as_str().unwrap();
    let path = format!("/v1/orders/{id}");
    let response = server
        .post(&format!("{path}/items"))
        .json(&json!({ "product_id": "2", "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let items = get_json(&server, &format!("{path}/items")).await;
    assert_eq!(ids(&items), ["1", "2"]);

    let response = server
        .patch(&path)
        .json(&json!({ "status": "paid" }))
        .send()
        .await
        .unwrap();
    let paid = expect_json(response, 200).await;
    let state = store_state(&server).await;
    let attempts = [
        server
            .post(&format!("{path}/items"))
            .json(&json!({ "product_id": "3", "quantity": 1 })),
        server
            .patch(&path)
            .json(&json!({ "items": [{ "product_id": "3", "quantity": 1 }] })),
        server.put(&path).json(&json!({
            "customer_id": "1",
            "status": "paid",
            "items": [{ "product_id": "3", "quantity": 1 }],
        })),
        server.patch(&path).json(&json!({ "customer_id": "2" })),
    ];
    for attempt in attempts {
        expect_problem(attempt.send().await.unwrap(), 409, "invalid-state").await;
    }
    assert_eq!(get_json(&server, &path).await, paid);
    assert_eq!(store_state(&server).await, state);
}

// ---- 9. bulk ----

#[tokio::test]
async fn bulk_creates_the_good_orders_and_reports_each_bad_one() {
    let server = TestServer::start().await;
    let before = order_count(&server).await;
    let body = json!({ "orders": [
        new_order("1", &[("1", 1)]),
        new_order("1", &[("999", 1)]),
        { "customer_id": "2", "items": [{ "product_id": "1", "quantity": "lots" }] },
        new_order("999", &[("1", 1)]),
        42,
        { "customer_id": "2", "items": [], "rush": true },
        new_order("2", &[("2", 3)]),
    ]});
    let response = server
        .post("/v1/orders/bulk")
        .json(&body)
        .send()
        .await
        .unwrap();
    let results = expect_json(response, 200).await;
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    let mut created = Vec::new();
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i, "{result}");
        match i {
            0 | 6 => {
                assert_eq!(result["status"], 201, "{result}");
                assert!(result.get("error").is_none(), "{result}");
                created.push(result["id"].as_str().unwrap().to_owned());
            }
            _ => {
                assert_eq!(result["status"], 400, "{result}");
                assert!(result.get("id").is_none(), "{result}");
                assert_eq!(result["error"]["type"], "/problems/validation", "{result}");
                assert_eq!(result["error"]["status"], 400, "{result}");
                assert!(result["error"]["title"].is_string(), "{result}");
                assert!(result["error"]["detail"].is_string(), "{result}");
            }
        }
    }
    let field = |i: usize| error_fields(&results[i]["error"]);
    assert!(field(1).contains(&"items[0].product_id".to_owned()));
    assert!(field(2).contains(&"items[0].quantity".to_owned()));
    assert!(field(3).contains(&"customer_id".to_owned()));

    assert_eq!(order_count(&server).await, before + 2);
    for (id, customer) in created.iter().zip(["1", "2"]) {
        let order = get_json(&server, &format!("/v1/orders/{id}")).await;
        assert_eq!(order["customer_id"], customer);
    }
}

#[tokio::test]
async fn bulk_refuses_more_than_100_orders_or_none() {
    let server = TestServer::start().await;
    let before = store_state(&server).await;
    for n in [0, 101, 500] {
        let orders: Vec<Value> = (0..n).map(|_| new_order("1", &[("1", 1)])).collect();
        let response = server
            .post("/v1/orders/bulk")
            .json(&json!({ "orders": orders }))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, "validation").await;
        assert_eq!(error_fields(&problem), ["orders"], "{n} orders");
    }
    assert_eq!(store_state(&server).await, before);

    let orders: Vec<Value> = (0..100).map(|_| new_order("1", &[("1", 1)])).collect();
    let response = server
        .post("/v1/orders/bulk")
        .json(&json!({ "orders": orders }))
        .send()
        .await
        .unwrap();
    let results = expect_json(response, 200).await;
    assert!(
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 201)
    );
    assert_eq!(store_state(&server).await.0, before.0 + 100);
}

// ---- 10. bad input ----

/// One row of the bad-input table: a request and the problem it must get.
struct BadInput {
    what: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    slug: &'static str,
}

const MALFORMED: &str = "malformed-body";
const INVALID: &str = "validation";

/// A JSON request to `method path` that must get a 400 of problem type `slug`.
fn bad(
    method: Method,
    path: &'static str,
    what: &'static str,
    body: impl Into<Vec<u8>>,
    slug: &'static str,
) -> BadInput {
    BadInput {
        what,
        method,
        path,
        content_type: Some("application/json"),
        body: body.into(),
        status: 400,
        slug,
    }
}

/// `POST /v1/orders` that must get a 400 of problem type `slug`.
fn bad_order(what: &'static str, body: impl Into<Vec<u8>>, slug: &'static str) -> BadInput {
    bad(Method::POST, "/v1/orders", what, body, slug)
}

/// A GET whose query must get a 400 validation problem.
fn bad_query(what: &'static str, path: &'static str) -> BadInput {
    BadInput {
        content_type: None,
        ..bad(Method::GET, path, what, "", INVALID)
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_leaves_the_store_unchanged() {
    let server = TestServer::start().await;
    let before = store_state(&server).await;
    let order_1 = get_json(&server, "/v1/orders/1").await;

    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let quantity =
        |q: &str| format!(r#"{{"customer_id":"1","items":[{{"product_id":"1","quantity":{q}}}]}}"#);
    let customer = |id: &str| {
        format!(r#"{{"customer_id":"{id}","items":[{{"product_id":"1","quantity":1}}]}}"#)
    };
    let many_items = serde_json::to_string(&new_order("1", &vec![("1", 1); 101])).unwrap();
    let huge = customer(&"9".repeat(2 * 1024 * 1024)); // over the default 1 MiB limit
    let long_reason = format!(r#"{{"reason":"{}"}}"#, "x".repeat(501));
    let long_name = format!(
        r#"{{"name":"{}","email":"l@example.com"}}"#,
        "n".repeat(201)
    );
    let nested_bulk = format!(r#"{{"orders":[{}]}}"#, deep(100_000));
    let json_patch = r#"[{"op":"replace","path":"/status","value":"paid"}]"#;

    #[rustfmt::skip]
    let cases = [
        // Not JSON.
        bad_order("truncated JSON", r#"{"customer_id":"1","items":["#, MALFORMED),
        bad_order("not JSON", "customer=1", MALFORMED),
        bad_order("trailing garbage", format!("{} x", quantity("1")), MALFORMED),
        bad_order("two documents", quantity("1").repeat(2), MALFORMED),
        bad_order("invalid UTF-8", &b"{\"customer_id\":\"\xff\xfe\",\"items\":[]}"[..], MALFORMED),
        bad_order("an empty body", "", MALFORMED),
        bad_order("only whitespace", "  \n ", MALFORMED),
        // JSON of the wrong shape.
        bad_order("an empty array", "[]", INVALID),
        bad_order("a positional array", r#"["1",[{"product_id":"1","quantity":1}]]"#, INVALID),
        bad_order("a positional item", r#"{"customer_id":"1","items":[["1",1]]}"#, INVALID),
        bad_order("a string", r#""order""#, INVALID),
        bad_order("a number", "42", INVALID),
        bad_order("null", "null", INVALID),
        bad_order("a numeric customer id", quantity("1").replace(r#""1""#, "1"), INVALID),
        bad_order("items as an object", r#"{"customer_id":"1","items":{}}"#, INVALID),
        bad_order("an unknown field", r#"{"customer_id":"1","items":[],"total":1}"#, INVALID),
        bad_order("a missing field", r#"{"customer_id":"1"}"#, INVALID),
        bad_order("a duplicate field", customer("1").replace('{', r#"{"customer_id":"2","#), INVALID),
        bad_order("a deeply nested item", customer("1").replace(r#""1""#, &deep(100_000)), MALFORMED),
        bad_order("a deeply nested document", deep(100_000), MALFORMED),
        // Values out of range.
        bad_order("a huge quantity", quantity("99999999999999999999"), INVALID),
        bad_order("an i64::MAX quantity", quantity("9223372036854775807"), INVALID),
        bad_order("an exponent quantity", quantity("1e3"), INVALID),
        bad_order("a fractional quantity", quantity("1.5"), INVALID),
        bad_order("a negative quantity", quantity("-1"), INVALID),
        bad_order("a zero quantity", quantity("0"), INVALID),
        bad_order("a quantity over 1000", quantity("1001"), INVALID),
        bad_order("a quantity as a string", quantity(r#""1""#), INVALID),
        bad_order("a null quantity", quantity("null"), INVALID),
        bad_order("101 items", many_items, INVALID),
        bad_order("a huge customer id", customer("99999999999999999999999"), INVALID),
        bad_order("a zero-padded customer id", customer("01"), INVALID),
        bad_order("an empty customer id", customer(""), INVALID),
        // Size and media type.
        BadInput { status: 413, ..bad_order("a huge body", huge, "payload-too-large") },
        BadInput {
            content_type: Some("text/csv"),
            status: 415,
            ..bad_order("the wrong content type", quantity("1"), "unsupported-media-type")
        },
        // Other endpoints.
        bad(Method::POST, "/v1/orders/bulk", "a deeply nested bulk element", nested_bulk, MALFORMED),
        bad(Method::POST, "/v1/orders/bulk", "bulk orders as an object", r#"{"orders":{}}"#, INVALID),
        bad(Method::PATCH, "/v1/orders/1", "a null status", r#"{"status":null}"#, INVALID),
        bad(Method::PATCH, "/v1/orders/1", "an unknown status", r#"{"status":"teleported"}"#, INVALID),
        bad(Method::PATCH, "/v1/orders/1", "an upper-case status", r#"{"status":"PAID"}"#, INVALID),
        bad(Method::PATCH, "/v1/orders/1", "no items in a patch", r#"{"items":[]}"#, INVALID),
        bad(Method::PATCH, "/v1/orders/1", "a read-only field in a patch", r#"{"version":99}"#, INVALID),
        bad(Method::PATCH, "/v1/orders/1", "a JSON Patch document", json_patch, INVALID),
        bad(Method::POST, "/v1/orders/1/items", "product 0", r#"{"product_id":"0","quantity":1}"#, INVALID),
        bad(Method::POST, "/v1/orders/1/items", "quantity -5", r#"{"product_id":"1","quantity":-5}"#, INVALID),
        bad(Method::POST, "/v1/orders/1/cancellations", "a reason over 500 characters", long_reason, INVALID),
        bad(Method::POST, "/v1/orders/1/cancellations", "a numeric reason", r#"{"reason":5}"#, INVALID),
        bad(Method::POST, "/v1/orders/1/cancellations", "a truncated cancellation", "{", MALFORMED),
        bad(Method::POST, "/v1/customers", "an implausible email", r#"{"name":"X","email":"x"}"#, INVALID),
        bad(Method::POST, "/v1/customers", "a blank name", r#"{"name":" ","email":"b@example.com"}"#, INVALID),
        bad(Method::POST, "/v1/customers", "a name over 200 characters", long_name, INVALID),
        // Queries.
        bad_query("a forged cursor", "/v1/orders?cursor=eyJzIjoiIn0.AAAA"),
        bad_query("a cursor of emoji", "/v1/orders?cursor=%F0%9F%92%A5.%F0%9F%92%A5"),
        bad_query("a limit of a billion", "/v1/orders?limit=1000000000"),
        bad_query("an offset past u64", "/v1/orders?offset=99999999999999999999999"),
    ];

    // Every case runs, so that a failure lists every bad input the server mishandles.
    let mut failures = Vec::new();
    for case in cases {
        let BadInput {
            what,
            method,
            path,
            content_type,
            body,
            status,
            slug,
        } = case;
        let state = store_state(&server).await;
        let mut request = server
            .client
            .request(method.clone(), server.url(path))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let actual = response.status().as_u16();
        if actual == status {
            let problem = expect_problem(response, status, slug).await;
            if slug == INVALID {
                assert!(!error_fields(&problem).is_empty(), "{what}: {problem}");
            }
        } else {
            let text = response.text().await.unwrap_or_default();
            failures.push(format!(
                "{what}: {method} {path} answered {actual}, not {status} {slug}: {text}"
            ));
        }
        if store_state(&server).await != state {
            failures.push(format!("{what}: {method} {path} changed the store"));
        }
    }

    // Bad headers: an idempotency key that is not a key, an If-Match that matches nothing.
    for key in ["a b", &"k".repeat(256)] {
        let response = server
            .post("/v1/orders")
            .header(IDEMPOTENCY_KEY, key)
            .json(&new_order("1", &[("1", 1)]))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, 400, INVALID).await;
        assert_eq!(error_fields(&problem), ["Idempotency-Key"]);
    }
    for if_match in ["\"41\"", "garbage", "W/\"1\""] {
        let response = server
            .delete("/v1/orders/1")
            .header(IF_MATCH, if_match)
            .send()
            .await
            .unwrap();
        expect_problem(response, 412, "version-mismatch").await;
    }

    // The server still answers, and order 1 was never touched.
    get_json(&server, "/healthz").await;
    assert_eq!(get_json(&server, "/v1/orders/1").await, order_1);
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(store_state(&server).await, before);
    create_order(&server, "1", &[("1", 1)]).await;
}

// ---- 11. customers and products ----

#[tokio::test]
async fn customers_can_be_listed_created_read_and_their_orders_listed() {
    let server = TestServer::start().await;
    let list = get_json(&server, "/v1/customers").await;
    assert_eq!(ids(&list), ["1", "2", "3", "4", "5", "6", "7", "8"]);
    assert_eq!(list["data"][0]["email"], "ada@example.com");

    let response = server
        .post("/v1/customers")
        .json(&json!({ "name": "  Hedy Lamarr ", "email": "hedy@example.com" }))
        .send()
        .await
        .unwrap();
    let hedy = expect_json(response, 201).await;
    assert_eq!(hedy["name"], "Hedy Lamarr", "names are trimmed");
    let id = hedy["id"].as_str().unwrap();
    assert_eq!(
        get_json(&server, &format!("/v1/customers/{id}")).await,
        hedy
    );
    assert_eq!(ids(&get_json(&server, "/v1/customers").await).len(), 9);
    let by_name = get_json(&server, "/v1/customers?sort=name&fields=name").await;
    let names: Vec<&str> = by_name["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");

    let theirs = get_json(&server, &format!("/v1/customers/{id}/orders")).await;
    assert!(ids(&theirs).is_empty());
    let a = create_order(&server, id, &[("1", 1)]).await;
    let b = create_order(&server, id, &[("2", 1)]).await;
    create_order(&server, "1", &[("3", 1)]).await;
    let theirs = get_json(&server, &format!("/v1/customers/{id}/orders")).await;
    assert_eq!(
        ids(&theirs),
        [a["id"].as_str().unwrap(), b["id"].as_str().unwrap()]
    );

    let ada = get_json(&server, "/v1/customers/1/orders?limit=100").await;
    assert_eq!(ids(&ada), ["1", "9", "17", "27"]); // 27: the order made for Ada above
    assert!(
        ada["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["customer_id"] == "1")
    );
    let ada_pending = get_json(&server, "/v1/customers/1/orders?status=pending").await;
    assert!(
        ada_pending["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "pending")
    );
    // The path fixes the customer: it cannot be filtered again.
    let response = server
        .get("/v1/customers/1/orders?customer_id=2")
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "validation").await;
}

#[tokio::test]
async fn an_unknown_customer_answers_404() {
    let server = TestServer::start().await;
    for path in [
        "/v1/customers/999",
        "/v1/customers/999/orders",
        "/v1/customers/ada/orders",
        "/v1/customers/0",
    ] {
        expect_problem(server.get(path).send().await.unwrap(), 404, "not-found").await;
    }
}

#[tokio::test]
async fn products_can_be_listed_read_and_sorted_by_price() {
    let server = TestServer::empty().await;
    let page = get_json(&server, "/v1/products").await;
    assert_eq!(ids(&page).len(), 20);
    assert_eq!(page["has_more"], true);
    let all = get_json(&server, "/v1/products?limit=100").await;
    assert_eq!(ids(&all).len(), 24);

    let grinder = get_json(&server, "/v1/products/3").await;
    assert_eq!(
        grinder,
        json!({ "id": "3", "name": "Burr grinder", "price_cents": 12_900, "currency": "USD" })
    );

    for (sort, descending) in [("price_cents", false), ("-price_cents", true)] {
        let page = get_json(&server, &format!("/v1/products?limit=100&sort={sort}")).await;
        let prices: Vec<i64> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["price_cents"].as_i64().unwrap())
            .collect();
        assert_eq!(prices.len(), 24);
        let mut sorted = prices.clone();
        sorted.sort_unstable();
        if descending {
            sorted.reverse();
        }
        assert_eq!(prices, sorted, "{sort}");
    }
    let cheapest = get_json(&server, "/v1/products?limit=1&sort=price_cents").await;
    assert_eq!(cheapest["data"][0]["name"], "Oat milk, 1 l");
}

// ---- 12. the JSON itself ----

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

fn assert_rfc3339(value: &Value, context: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{context}: {value} is not a string"));
    assert!(
        humantime::parse_rfc3339(text).is_ok(),
        "{context}: {text} is not RFC 3339"
    );
}

#[tokio::test]
async fn json_is_snake_case_with_string_ids_rfc3339_times_and_consistent_totals() {
    let server = TestServer::start().await;
    create_order(&server, "3", &[("2", 3), ("19", 7), ("2", 1)]).await;
    let paths = [
        "/v1/orders?limit=100&include=customer,items",
        "/v1/orders/5",
        "/v1/orders/5/cancellation",
        "/v1/orders/1/items",
        "/v1/customers",
        "/v1/products",
        "/v1/orders/999",
        "/readyz",
    ];
    for path in paths {
        let body: Value = server.get(path).send().await.unwrap().json().await.unwrap();
        assert_snake_case(&body, path);
    }

    let page = get_json(&server, "/v1/orders?limit=100&include=customer,items").await;
    let orders = page["data"].as_array().unwrap();
    assert_eq!(orders.len(), 25);
    let products: HashMap<String, i64> = get_json(&server, "/v1/products?limit=100").await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["price_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    for order in orders {
        let context = order.to_string();
        for field in ["id", "customer_id", "currency", "status"] {
            assert!(order[field].is_string(), "{field}: {context}");
        }
        assert!(order["customer"]["id"].is_string(), "{context}");
        assert_rfc3339(&order["created_at"], &context);
        assert_rfc3339(&order["updated_at"], &context);
        assert!(order["version"].is_u64(), "{context}");
        let mut sum = 0;
        for item in order["items"].as_array().unwrap() {
            assert!(
                item["id"].is_string() && item["product_id"].is_string(),
                "{context}"
            );
            let quantity = item["quantity"].as_i64().unwrap();
            let price = item["unit_price_cents"].as_i64().unwrap();
            assert_eq!(
                price,
                products[item["product_id"].as_str().unwrap()],
                "{context}"
            );
            sum += quantity * price;
        }
        assert_eq!(order["total_cents"].as_i64(), Some(sum), "{context}");
        match order["status"].as_str().unwrap() {
            "cancelled" => {
                assert_rfc3339(&order["cancellation"]["cancelled_at"], &context);
                assert!(order["cancellation"]["reason"].is_string(), "{context}");
            }
            _ => assert!(order["cancellation"].is_null(), "{context}"),
        }
    }
    let mine = orders.last().unwrap();
    assert_eq!(mine["total_cents"], 3 * 5_900 + 7 * 299 + 5_900);
}

// ---- 13. HTTP/2 ----

fn http2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client")
}

#[tokio::test]
async fn http2_serves_the_same_resources_and_replays() {
    let server = TestServer::start().await;
    let client = http2_client();
    let response = client.get(server.url("/v1/orders/1")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(header(&response, "etag"), "\"1\"");
    let etag = header(&response, "etag");
    assert_eq!(
        expect_json(response, 200).await,
        get_json(&server, "/v1/orders/1").await
    );

    let response = client
        .get(server.url("/v1/orders/1"))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    let before = order_count(&server).await;
    let send = || {
        client
            .post(server.url("/v1/orders"))
            .header(IDEMPOTENCY_KEY, "over-h2")
            .json(&new_order("2", &[("4", 2)]))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.version(), reqwest::Version::HTTP_2);
    assert!(header(&first, "location").starts_with("/v1/orders/"));
    let first = expect_json(first, 201).await;
    let again = send().await.unwrap();
    assert_eq!(header(&again, REPLAYED), "true");
    assert_eq!(expect_json(again, 201).await, first);
    assert_eq!(order_count(&server).await, before + 1);

    let page = client
        .get(server.url("/v1/orders?limit=7"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&page, "cache-control"), "private, no-cache");
    assert_eq!(ids(&expect_json(page, 200).await).len(), 7);
}

#[tokio::test]
async fn http2_errors_are_the_same_problems_with_the_trace_id() {
    let server = TestServer::start().await;
    let client = http2_client();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let response = client
        .post(server.url("/v1/orders"))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&new_order("1", &[("1", 0)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let problem = expect_problem(response, 400, "validation").await;
    assert_eq!(problem["trace_id"], trace_id);
    assert_eq!(error_fields(&problem), ["items[0].quantity"]);

    let response = client
        .delete(server.url("/v1/orders"))
        .send()
        .await
        .unwrap();
    assert!(header(&response, "allow").contains("POST"));
    expect_problem(response, 405, "method-not-allowed").await;
    let response = client
        .post(server.url("/v1/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_problem(response, 415, "unsupported-media-type").await;
    let response = client
        .patch(server.url("/v1/orders/1"))
        .header(IF_MATCH, "\"9\"")
        .json(&json!({ "status": "paid" }))
        .send()
        .await
        .unwrap();
    expect_problem(response, 412, "version-mismatch").await;
}
