//! Rate limits through real sockets: the headers on every response, the refusal in each
//! protocol's idiom, anonymous callers limited by IP, WebSocket messages, and accuracy when
//! many clients hammer one key at once.

mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use polyport::config::{ApiKeyConfig, Config, RateLimitAlgorithm};
use polyport::protocols::grpc::pb;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ADMIN: &str = "admin-secret-1";

/// Auth on with one admin key; a token bucket of `burst` for callers, refilled slowly enough
/// (1/s) that a test never sees a refill it did not expect to.
fn config(burst: u32) -> Config {
    let mut config = Config::default();
    config.auth.api_keys = vec![ApiKeyConfig {
        name: "admin".into(),
        role: "admin".into(),
        secret: Some(ADMIN.into()),
        ..Default::default()
    }];
    config.rate_limit.caller.burst = burst;
    config.rate_limit.caller.refill_per_second = 1;
    config.rate_limit.anonymous.burst = 2;
    config.rate_limit.anonymous.refill_per_second = 1;
    config
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn every_response_carries_the_limit_and_the_request_over_it_is_a_429_problem() {
    let server = TestServer::with_auth(config(3)).await;
    for remaining in [2, 1, 0] {
        let ok = server
            .get("/v1/orders/1")
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(header(&ok, "ratelimit-policy"), "\"caller\";q=3;w=3");
        assert!(header(&ok, "ratelimit").starts_with(&format!("\"caller\";r={remaining};t=")));
        assert_eq!(header(&ok, "x-ratelimit-limit"), "3");
        assert_eq!(header(&ok, "x-ratelimit-remaining"), remaining.to_string());
        assert!(ok.headers().contains_key("x-ratelimit-reset"));
        assert!(!ok.headers().contains_key("retry-after"));
    }
    let refused = server
        .get("/v1/orders/1")
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    let body = common::expect_problem(refused, 429, "rate-limited").await;
    assert_eq!(body["retry_after"], 1);
    // Probes are never limited.
    for _ in 0..5 {
        assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn grpc_over_the_limit_is_resource_exhausted_with_a_retry_delay() {
    use tonic_types::StatusExt;
    let server = TestServer::with_auth(config(1)).await;
    let mut client = pb::orders_client::OrdersClient::new(server.grpc_channel().await);
    let call = || {
        let mut request = tonic::Request::new(pb::GetOrderRequest { id: "1".into() });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
        request
    };
    let first = client.get_order(call()).await.unwrap();
    assert_eq!(
        first.metadata().get("x-ratelimit-remaining").unwrap(),
        "0",
        "the fields travel as gRPC metadata"
    );
    let status = client.get_order(call()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
    let retry = status
        .get_details_retry_info()
        .expect("google.rpc.RetryInfo detail");
    assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO));
    let info = status.get_details_error_info().expect("ErrorInfo detail");
    assert_eq!(info.reason, "rate-limited");
}

#[tokio::test]
async fn graphql_over_the_limit_is_a_rate_limited_error() {
    let server = TestServer::with_auth(config(1)).await;
    let query = serde_json::json!({ "query": "{ order(id: \"1\") { id } }" });
    let ok = server
        .post("/graphql")
        .bearer_auth(ADMIN)
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = server
        .post("/graphql")
        .bearer_auth(ADMIN)
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(body["errors"][0]["extensions"]["retry_after"], 1);
}

#[tokio::test]
async fn bad_credentials_draw_on_the_anonymous_quota_so_guessing_keys_is_slowed_down() {
    let server = TestServer::with_auth(config(100)).await;
    let mut statuses = Vec::new();
    for guess in 0..4 {
        let response = server
            .get("/v1/orders/1")
            .bearer_auth(format!("guess-{guess}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&response, "ratelimit-policy"),
            "\"anonymous\";q=2;w=2"
        );
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 429, 429]);
    // A caller with a valid key has its own quota.
    let admin = server
        .get("/v1/orders/1")
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
}

#[tokio::test]
async fn websocket_messages_over_the_limit_get_an_error_then_a_close() {
    let server = TestServer::with_auth(config(3)).await;
    let mut request = format!("ws://{}/v1/ws", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    // The upgrade request takes one unit; two pings fit, the third message does not.
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut replies = Vec::new();
    for n in 0..4 {
        ws.send(Message::text(format!(r#"{{"op":"ping","id":"p{n}"}}"#)))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .unwrap();
        replies.push(reply);
    }
    let text =
        |m: &Message| serde_json::from_str::<serde_json::Value>(m.to_text().unwrap()).unwrap();
    assert_eq!(text(&replies[0])["op"], "pong");
    assert_eq!(text(&replies[1])["op"], "pong");
    let error = text(&replies[2]);
    assert_eq!(error["op"], "error");
    assert_eq!(error["id"], "p2");
    assert_eq!(error["status"], 429);
    assert_eq!(error["type"], "/problems/rate-limited");
    match &replies[3] {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4429),
        other => panic!("expected a 4429 close, got {other:?}"),
    }
}

#[tokio::test]
async fn many_clients_hammering_one_key_get_exactly_the_quota_and_no_more() {
    let mut config = config(1);
    config.rate_limit.algorithm = RateLimitAlgorithm::SlidingWindow;
    config.rate_limit.caller.limit = 50;
    config.rate_limit.caller.window = Duration::from_secs(300);
    let server = TestServer::with_auth(config).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = reqwest::Client::new();
            let url = server.url("/v1/products/1");
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..20 {
                    let status = client
                        .get(&url)
                        .bearer_auth(ADMIN)
                        .send()
                        .await
                        .unwrap()
                        .status();
                    match status.as_u16() {
                        200 => admitted += 1,
                        429 => {}
                        other => panic!("unexpected status {other}"),
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    assert_eq!(
        admitted, 50,
        "160 requests over 8 connections, a window of 50"
    );
}

#[tokio::test]
async fn with_rate_limits_off_no_fields_are_sent_and_nothing_is_refused() {
    let mut config = config(1);
    config.rate_limit.enabled = false;
    let server = TestServer::with_auth(config).await;
    for _ in 0..5 {
        let response = server
            .get("/v1/orders/1")
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(!response.headers().contains_key("ratelimit"));
    }
}

#[tokio::test]
async fn graphql_websocket_messages_over_the_limit_close_the_connection() {
    let server = TestServer::with_auth(config(3)).await;
    let mut request = format!("ws://{}/graphql/ws", server.addr)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    // The upgrade takes one unit, connection_init the second, the subscribe the third.
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(r#"{"type":"connection_init"}"#))
        .await
        .unwrap();
    ws.send(Message::text(
        r#"{"type":"subscribe","id":"1","payload":{"query":"subscription { orderEvents { __typename } }"}}"#,
    ))
    .await
    .unwrap();
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = ws.next().await {
            if let Message::Close(frame) = message.unwrap() {
                return frame;
            }
        }
        None
    })
    .await
    .expect("the server closes");
    assert_eq!(close.map(|f| u16::from(f.code)), Some(4429));
}

#[tokio::test]
async fn grpc_session_commands_count_against_the_limit_an_error_then_the_end_of_the_call() {
    use pb::session_command::Command;
    use pb::session_message::Kind;
    let server = TestServer::with_auth(config(3)).await;
    let mut client = pb::orders_client::OrdersClient::new(server.grpc_channel().await);
    let get = |id: &str| pb::SessionCommand {
        id: id.into(),
        command: Some(Command::GetOrder(pb::GetOrderRequest { id: "1".into() })),
    };
    // The call takes one unit; two commands fit, the third gets an error, the fourth ends it.
    let commands = vec![get("a"), get("b"), get("c"), get("d")];
    let mut request = tonic::Request::new(tokio_stream::iter(commands));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    let mut session = client.order_session(request).await.unwrap().into_inner();
    let mut kinds = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match session.message().await {
                Ok(Some(message)) => kinds.push((message.id, message.kind)),
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the call ends");
    assert!(matches!(kinds[0], (ref id, Some(Kind::Order(_))) if id == "a"));
    assert!(matches!(kinds[1], (ref id, Some(Kind::Order(_))) if id == "b"));
    match &kinds[2] {
        (id, Some(Kind::Error(error))) => {
            assert_eq!(id, "c");
            assert_eq!(error.code, "RESOURCE_EXHAUSTED");
            assert_eq!(error.r#type, "/problems/rate-limited");
        }
        other => panic!("expected a rate-limited error, got {other:?}"),
    }
    let status = end.expect("the call ends with a status");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
}

#[tokio::test]
async fn before_auth_a_v1_websocket_answers_nothing_but_closes_with_4401() {
    // Three anonymous upgrades: more than the anonymous quota of this file's config.
    let mut config = config(100);
    config.rate_limit.enabled = false;
    let server = TestServer::with_auth(config).await;
    for first in ["not json", r#"{"op":"ping","id":"p"}"#, r#"{"op":"nope"}"#] {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", server.addr))
            .await
            .unwrap();
        ws.send(Message::text(first)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .unwrap();
        match reply {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4401, "{first}"),
            other => panic!("{first}: expected a 4401 close, got {other:?}"),
        }
    }
}

/// A WebSocket to `/v1/ws` on `server`, opened from the local address `from` (any address in
/// 127.0.0.0/8 is this machine's).
async fn websocket_from(
    server: &TestServer,
    from: std::net::Ipv4Addr,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let url = format!("ws://{}/v1/ws", server.addr);
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    ws
}

/// Sends pings until one is refused; how many were answered with a pong (at most `max`).
async fn pongs_until_refused(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    max: usize,
) -> usize {
    for n in 0..max {
        ws.send(Message::text(format!(r#"{{"op":"ping","id":"p{n}"}}"#)))
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .unwrap();
        let reply: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
        if reply["op"] != "pong" {
            assert_eq!(reply["status"], 429, "{reply}");
            return n;
        }
    }
    max
}

/// A server with authentication off (every caller is the same anonymous admin) and a quota of
/// 3 requests or messages.
async fn without_auth_with_a_burst_of_3() -> TestServer {
    let mut config = config(3);
    config.auth.api_keys.clear();
    config.auth.insecure_no_auth = true;
    TestServer::with_auth(config).await
}

#[tokio::test]
async fn with_auth_off_two_addresses_do_not_share_a_websocket_message_quota() {
    let server = without_auth_with_a_burst_of_3().await;
    // Everyone is the same "anonymous" admin: the quota is per address, as for requests.
    let mut first = websocket_from(&server, [127, 0, 0, 1].into()).await;
    assert_eq!(
        pongs_until_refused(&mut first, 10).await,
        2,
        "upgrade + 2 pings = 3"
    );
    let mut second = websocket_from(&server, [127, 0, 0, 2].into()).await;
    assert_eq!(
        pongs_until_refused(&mut second, 10).await,
        2,
        "another address has a quota of its own"
    );
}

/// The kinds of the messages one gRPC `OrderSession` from `from` answers to four `GetOrder`
/// commands (the call ends when the quota refuses one command too many).
async fn session_kinds_from(server: &TestServer, from: std::net::Ipv4Addr) -> Vec<String> {
    use pb::session_command::Command;
    use pb::session_message::Kind;
    let channel = tonic::transport::Endpoint::from_shared(server.url(""))
        .unwrap()
        .local_address(Some(from.into()))
        .connect()
        .await
        .expect("connect");
    let mut client = pb::orders_client::OrdersClient::new(channel);
    let commands = ["a", "b", "c", "d"].map(|id| pb::SessionCommand {
        id: id.into(),
        command: Some(Command::GetOrder(pb::GetOrderRequest { id: "1".into() })),
    });
    let request = tonic::Request::new(tokio_stream::iter(commands));
    let mut session = client.order_session(request).await.unwrap().into_inner();
    let mut kinds = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(message)) = session.message().await {
            kinds.push(match message.kind {
                Some(Kind::Order(_)) => format!("{}: order", message.id),
                Some(Kind::Error(error)) => format!("{}: {}", message.id, error.code),
                other => format!("{}: {other:?}", message.id),
            });
        }
    })
    .await
    .expect("the call ends");
    kinds
}

#[tokio::test]
async fn with_auth_off_two_addresses_do_not_share_a_grpc_session_quota() {
    let server = without_auth_with_a_burst_of_3().await;
    // The call takes one unit, two commands fit, the third is refused: per address.
    let expected = ["a: order", "b: order", "c: RESOURCE_EXHAUSTED"];
    assert_eq!(
        session_kinds_from(&server, [127, 0, 0, 1].into()).await,
        expected
    );
    assert_eq!(
        session_kinds_from(&server, [127, 0, 0, 2].into()).await,
        expected,
        "another address has a quota of its own"
    );
}

/// A `graphql-transport-ws` connection to `/graphql/ws` on `server`, opened from the local
/// address `from` and acknowledged (the upgrade and `connection_init` take a unit each).
async fn graphql_websocket_from(
    server: &TestServer,
    from: std::net::Ipv4Addr,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let mut request = format!("ws://{}/graphql/ws", server.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap_or_else(|e| panic!("the upgrade from {from} is refused: {e}"));
    ws.send(Message::text(r#"{"type":"connection_init"}"#))
        .await
        .unwrap();
    let ack = next_graphql_message(&mut ws).await;
    assert_eq!(
        ack.to_text().ok(),
        Some(r#"{"type":"connection_ack"}"#),
        "{ack:?}"
    );
    ws
}

/// The next message of a GraphQL WebSocket, which must come (WebSocket pings skipped).
async fn next_graphql_message(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> Message {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .unwrap();
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// Sends `graphql-transport-ws` pings until one is refused; how many were answered with a pong
/// (at most `max`) and the close code of the refusal.
async fn graphql_pongs_until_closed(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    max: usize,
) -> (usize, Option<u16>) {
    for n in 0..max {
        ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
        match next_graphql_message(ws).await {
            Message::Text(text) => assert_eq!(text.as_str(), r#"{"type":"pong"}"#),
            Message::Close(frame) => return (n, frame.map(|f| u16::from(f.code))),
            other => panic!("expected a pong or a close, got {other:?}"),
        }
    }
    (max, None)
}

#[tokio::test]
async fn with_auth_off_two_addresses_do_not_share_a_graphql_websocket_message_quota() {
    let server = without_auth_with_a_burst_of_3().await;
    // Everyone is the same "anonymous" admin: the quota is per address, as for requests. The
    // upgrade, connection_init and one ping fit; the next ping closes the connection.
    let mut first = graphql_websocket_from(&server, [127, 0, 0, 1].into()).await;
    assert_eq!(
        graphql_pongs_until_closed(&mut first, 10).await,
        (1, Some(4429)),
        "upgrade + connection_init + 1 ping = 3"
    );
    // Another address has a quota of its own: its upgrade, init and query are answered.
    let mut second = graphql_websocket_from(&server, [127, 0, 0, 2].into()).await;
    second
        .send(Message::text(
            r#"{"type":"subscribe","id":"q","payload":{"query":"{ order(id: \"1\") { id status } }"}}"#,
        ))
        .await
        .unwrap();
    let text =
        |m: &Message| serde_json::from_str::<serde_json::Value>(m.to_text().unwrap()).unwrap();
    let answer = text(&next_graphql_message(&mut second).await);
    assert_eq!(
        answer,
        serde_json::json!({
            "type": "next",
            "id": "q",
            "payload": { "data": { "order": { "id": "1", "status": "PENDING" } } },
        })
    );
    let done = text(&next_graphql_message(&mut second).await);
    assert_eq!(done, serde_json::json!({ "type": "complete", "id": "q" }));
}
