//! What one client cannot do to the others: hold connections with slow or unfinished request
//! heads, keep idle connections open, open more than its share of connections, send huge
//! headers, or flood the server with more requests than it can handle at once. Each test sets
//! its limit small in the configuration and shows the refusal through a real socket.

mod common;

use std::time::Duration;

use common::TestServer;
use polyport::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough that a missing limit fails the test instead of passing it by accident, short
/// enough that a stuck test ends.
const PATIENCE: Duration = Duration::from_secs(20);

/// Everything the server sends on `stream` until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open: {}",
        String::from_utf8_lossy(&received)
    );
    received
}

/// The types of the HTTP/2 frames in `received`, in order (each frame: 3 bytes of length,
/// its type, flags, stream id, then the payload).
fn frame_types(received: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= received.len() {
        let length = usize::from(received[at]) << 16
            | usize::from(received[at + 1]) << 8
            | usize::from(received[at + 2]);
        types.push(received[at + 3]);
        at += 9 + length;
    }
    types
}

/// The body of a raw HTTP/1.1 response.
fn body_of(response: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(response);
    let (_, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).expect("a JSON body")
}

#[tokio::test]
async fn a_request_head_that_stalls_gets_408_and_the_connection_closes() {
    let mut config = Config::default();
    config.server.header_read_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    // Slowloris: half a head, then nothing.
    slow.write_all(b"GET /v1/orders HTTP/1.1\r\nHost: polyport\r\nX-Pad: a")
        .await
        .unwrap();
    let response = read_to_close(&mut slow).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        text.contains("content-type: application/problem+json"),
        "{text}"
    );
    let problem = body_of(&response);
    assert_eq!(problem["type"], "/problems/request-timeout");
    assert_eq!(problem["status"], 408);
    assert_eq!(problem["trace_id"].as_str().map(str::len), Some(32));
    // Everyone else is served as before.
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_head_sent_whole_but_slowly_within_the_timeout_is_served() {
    let mut config = Config::default();
    config.server.header_read_timeout = Duration::from_secs(5);
    let server = TestServer::with_config(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for piece in [
        &b"GET /healthz HTTP/1.1\r\n"[..],
        b"Host: polyport\r\n",
        b"Connection: close\r\n\r\n",
    ] {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = read_to_close(&mut stream).await;
    assert!(response.starts_with(b"HTTP/1.1 200 "));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let mut config = Config::default();
    config.server.idle_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: polyport\r\n\r\n")
        .await
        .unwrap();
    // The answer, then (kept alive, idle) the close.
    let response = read_to_close(&mut stream).await;
    assert!(response.starts_with(b"HTTP/1.1 200 "));
    assert!(!String::from_utf8_lossy(&response).contains("connection: close"));
}

#[tokio::test]
async fn an_http2_connection_that_sends_only_its_preface_gets_a_goaway_and_is_closed() {
    let mut config = Config::default();
    config.server.idle_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let received = read_to_close(&mut stream).await;
    let types = frame_types(&received);
    const GOAWAY: u8 = 0x7;
    assert!(types.contains(&GOAWAY), "frame types {types:?}");
}

#[tokio::test]
async fn a_stream_with_nothing_to_say_is_not_idle() {
    let mut config = Config::default();
    config.server.idle_timeout = Duration::from_millis(200);
    config.push.sse_keepalive = Duration::from_secs(60);
    let server = TestServer::with_config(config).await;
    let mut events = server.get("/v1/events").send().await.unwrap();
    assert_eq!(events.status(), 200);
    // Several idle timeouts pass with nothing sent on the stream.
    tokio::time::sleep(Duration::from_millis(800)).await;
    server
        .post("/v1/orders")
        .json(&serde_json::json!({ "customer_id": "1", "items": [{ "product_id": "1", "quantity": 1 }] }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("order.created") {
        let chunk = tokio::time::timeout(PATIENCE, events.chunk())
            .await
            .expect("an event")
            .unwrap()
            .expect("the stream is still open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn past_its_share_of_connections_a_client_address_is_closed_at_once() {
    let mut config = Config::default();
    config.server.max_connections_per_ip = 3;
    let server = TestServer::with_config(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The fourth is accepted by the kernel and closed by the server before it says anything.
    let mut fourth = TcpStream::connect(server.addr).await.unwrap();
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: polyport\r\n\r\n")
        .await;
    let response = read_to_close(&mut fourth).await;
    assert!(
        response.is_empty(),
        "{}",
        String::from_utf8_lossy(&response)
    );
    // A place given back is a place for the next connection.
    drop(held.pop());
    let served = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: polyport\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            if read_to_close(&mut stream)
                .await
                .starts_with(b"HTTP/1.1 200 ")
            {
                break;
            }
            // The server has not yet seen the dropped connection close.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(served.is_ok());
}

#[tokio::test]
async fn a_header_field_over_the_limit_is_431_on_http1_and_http2() {
    let mut config = Config::default();
    config.server.max_header_field_bytes = 1024;
    let server = TestServer::with_config(config).await;
    let long = "x".repeat(2000);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for client in [&server.client, &h2] {
        let response = client
            .get(server.url("/v1/orders"))
            .header("x-padding", &long)
            .send()
            .await
            .unwrap();
        let problem = common::expect_problem(response, 431, "headers-too-large").await;
        assert!(problem["detail"].as_str().unwrap().contains("x-padding"));
        // Under the limit, the same request is served.
        let response = client
            .get(server.url("/v1/orders"))
            .header("x-padding", "x".repeat(900))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // gRPC gets its own idiom: a status, not a problem body.
    let response = h2
        .post(server.url("/polyport.orders.v1.Orders/GetOrder"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-padding", &long)
        .body(vec![0, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "8");
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_431_on_http1() {
    let mut config = Config::default();
    config.server.max_header_bytes = 16 * 1024;
    let server = TestServer::with_config(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut head = b"GET /v1/orders HTTP/1.1\r\nHost: polyport\r\n".to_vec();
    for i in 0..20 {
        head.extend_from_slice(format!("x-pad-{i}: {}\r\n", "y".repeat(1000)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let _ = stream.write_all(&head).await;
    let response = read_to_close(&mut stream).await;
    assert!(
        response.starts_with(b"HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&response)
    );
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_431_on_http2() {
    let mut config = Config::default();
    config.server.max_header_bytes = 16 * 1024;
    let server = TestServer::with_config(config).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut request = h2.get(server.url("/v1/orders"));
    for i in 0..20 {
        request = request.header(format!("x-pad-{i}"), "y".repeat(1000));
    }
    // A header block in one frame over the limit is answered 431 by the HTTP/2 server (one
    // spread over CONTINUATION frames past it closes the connection with COMPRESSION_ERROR:
    // the server never buffers more than the limit).
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 431);
    // The connection's other requests go on.
    assert_eq!(
        h2.get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn past_the_requests_in_flight_a_request_is_shed_with_503_but_probes_are_answered() {
    let mut config = Config::default();
    config.server.max_requests_in_flight = 1;
    let server = TestServer::with_config(config).await;
    // One request holds the only place: its body is still on its way.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let body = br#"{"customer_id":"1","items":[{"product_id":"1","quantity":1}]}"#;
    slow.write_all(
        format!(
            "POST /v1/orders HTTP/1.1\r\nHost: polyport\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    slow.write_all(&body[..10]).await.unwrap();
    // Give the server a moment to hand the head to the gate (retried until it has).
    let shed = tokio::time::timeout(PATIENCE, async {
        loop {
            let response = server.get("/v1/orders").send().await.unwrap();
            if response.status() == 503 {
                break response;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a request past the cap is shed");
    assert_eq!(shed.headers()["retry-after"], "1");
    common::expect_problem(shed, 503, "unavailable").await;
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
    assert_eq!(server.get("/readyz").send().await.unwrap().status(), 200);
    // The slow request finishes, and with its place back the next request is served.
    slow.write_all(&body[10..]).await.unwrap();
    let response = read_to_close(&mut slow).await;
    assert!(
        response.starts_with(b"HTTP/1.1 201 "),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(server.get("/v1/orders").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_does_not_hold_up_shutdown() {
    let mut config = Config::default();
    config.server.shutdown_grace = Duration::from_secs(120);
    let server = TestServer::with_config(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: polyport\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0; 512];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200 "));
    let stopped = tokio::time::timeout(PATIENCE, server.stop()).await;
    assert!(stopped.expect("the drain did not wait for it").is_ok());
    assert!(read_to_close(&mut stream).await.is_empty());
}

#[tokio::test]
async fn one_caller_cannot_take_every_stream() {
    use polyport::config::ApiKeyConfig;
    let mut config = Config::default();
    config.push.max_streams_per_caller = 2;
    config.rate_limit.enabled = false;
    for name in ["alice", "bob"] {
        config.auth.api_keys.push(ApiKeyConfig {
            name: name.into(),
            role: "admin".into(),
            secret: Some(format!("{name}-secret-0123456789")),
            ..Default::default()
        });
    }
    let server = TestServer::with_auth(config).await;
    let open = |name: &str| {
        server
            .get("/v1/events")
            .bearer_auth(format!("{name}-secret-0123456789"))
            .send()
    };
    let held = [open("alice").await.unwrap(), open("alice").await.unwrap()];
    assert!(held.iter().all(|r| r.status() == 200));
    let refused = open("alice").await.unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    let problem = common::expect_problem(refused, 503, "unavailable").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("max_streams_per_caller"),
        "{problem}"
    );
    // Another caller still gets its streams.
    let bob = open("bob").await.unwrap();
    assert_eq!(bob.status(), 200);
    // A place given back is alice's again.
    drop(held);
    server.wait_for_streams(1, "bob's stream").await;
    assert_eq!(open("alice").await.unwrap().status(), 200);
}

#[tokio::test]
async fn health_watch_streams_count_under_the_stream_caps() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let mut config = Config::default();
    config.push.max_streams_per_caller = 2;
    let server = TestServer::with_config(config).await;
    let mut client = HealthClient::new(server.grpc_channel().await);
    let watch = || HealthCheckRequest {
        service: String::new(),
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = client.watch(watch()).await.unwrap().into_inner();
        assert!(stream.message().await.unwrap().is_some());
        held.push(stream);
    }
    server.wait_for_streams(2, "two health watches").await;
    let refused = client.watch(watch()).await.expect_err("over the share");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    drop(held);
    server.wait_for_streams(0, "the watches ended").await;
}

#[tokio::test]
async fn an_http2_peer_that_does_not_answer_pings_is_closed() {
    let mut config = Config::default();
    // Not idle long enough to be closed for that: only the pings can end it.
    config.server.idle_timeout = Duration::from_secs(3600);
    config.server.keepalive_interval = Duration::from_millis(200);
    config.server.keepalive_timeout = Duration::from_millis(200);
    let server = TestServer::with_config(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // A dead peer: it reads nothing back, acknowledges nothing.
    let received = read_to_close(&mut stream).await;
    let types = frame_types(&received);
    const PING: u8 = 0x6;
    assert!(types.contains(&PING), "frame types {types:?}");
}

#[test]
fn out_of_file_descriptors_the_server_waits_and_then_serves_again() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    // A server allowed 64 descriptors, with no connection cap of its own below that.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 64 && exec \"$0\" serve --addr 127.0.0.1:0 --insecure-no-auth --no-demo-data",
            env!("CARGO_BIN_EXE_polyport"),
        ])
        .env("RUST_LOG", "warn,polyport=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().to_owned();
        }
    };
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = log_tx.send(line);
        }
    });
    // More connections than the server has descriptors: the kernel queues the rest.
    let held: Vec<_> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    let saw_accept_fail = (0..100).any(|_| {
        log_rx
            .recv_timeout(Duration::from_millis(200))
            .is_ok_and(|line| line.contains("accept failed"))
    });
    assert!(saw_accept_fail, "the server never ran out of descriptors");
    drop(held);
    // With descriptors free again it serves, without a restart.
    let served = (0..200).any(|_| {
        let Ok(mut stream) = std::net::TcpStream::connect(&addr) else {
            std::thread::sleep(Duration::from_millis(50));
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200 ") || {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        served,
        "the server did not serve again once descriptors were free"
    );
}

#[tokio::test]
async fn a_websocket_outlives_the_header_read_timeout_between_its_messages() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut config = Config::default();
    config.server.header_read_timeout = Duration::from_millis(200);
    let server = TestServer::with_config(config).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", server.addr))
        .await
        .unwrap();
    for id in ["first", "after a pause"] {
        ws.send(Message::text(
            serde_json::json!({ "op": "ping", "id": id }).to_string(),
        ))
        .await
        .unwrap();
        let reply = tokio::time::timeout(PATIENCE, async {
            loop {
                match ws
                    .next()
                    .await
                    .expect("an answer")
                    .expect("the session is open")
                {
                    Message::Text(text) => break text,
                    Message::Close(frame) => panic!("closed: {frame:?}"),
                    _ => continue,
                }
            }
        })
        .await
        .unwrap();
        assert!(reply.contains("pong"), "{reply}");
        // Several header-read timeouts pass with nothing sent: frames are not request heads.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}
