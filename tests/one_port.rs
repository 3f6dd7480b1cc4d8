//! One port, the probes, graceful shutdown and the command line, through real sockets and the
//! real binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestServer;

#[tokio::test]
async fn http1_and_http2_prior_knowledge_share_one_port() {
    let server = TestServer::start().await;
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (client, version) in [
        (h1, reqwest::Version::HTTP_11),
        (h2, reqwest::Version::HTTP_2),
    ] {
        let response = client.get(server.url("/v1/orders/1")).send().await.unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["id"], "1");
    }
}

#[tokio::test]
async fn an_http2_preface_sent_in_pieces_still_selects_http2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket.set_nodelay(true).unwrap();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    socket.write_all(&preface[..5]).await.unwrap();
    // The server decides on the first bytes it sees: give it the chance to see only these.
    // (An ordering hint, not a timing assertion.)
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(&preface[5..]).await.unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    socket
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut head = [0; 9];
    tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut head))
        .await
        .expect("the server answers")
        .expect("a frame header");
    assert_eq!(
        head[3], 4,
        "an HTTP/2 server starts with SETTINGS: {head:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sent_nothing_does_not_hold_up_shutdown() {
    use tokio::io::AsyncReadExt;
    let mut config = polyport::config::Config::default();
    // Long enough that the test would hang visibly if the silent connection held the drain.
    config.server.shutdown_grace = Duration::from_secs(120);
    let server = TestServer::with_config(config).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // It is accepted (a request on another connection is answered after it).
    server.get("/healthz").send().await.unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(30), server.stop()).await;
    assert!(stopped.expect("the drain did not wait for it").is_ok());
    let mut byte = [0; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection is closed: {read:?}"
    );
}

#[tokio::test]
async fn healthz_and_readyz_answer_without_setup() {
    let server = TestServer::start().await;
    let health: serde_json::Value = server
        .get("/healthz")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let response = server.get("/readyz").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let ready: serde_json::Value = response.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["orders"], 24);
}

#[tokio::test]
async fn the_problem_table_is_served_and_every_type_link_resolves() {
    let server = TestServer::start().await;
    let table: serde_json::Value = server
        .get("/problems")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = table["data"].as_array().unwrap();
    assert!(rows.len() >= 10);
    for row in rows {
        let uri = row["type"].as_str().unwrap();
        let one: serde_json::Value = server.get(uri).send().await.unwrap().json().await.unwrap();
        assert_eq!(&one, row);
        assert!(row["grpc_code"].is_string() && row["graphql_code"].is_string());
    }
    common::expect_problem(
        server.get("/problems/nope").send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_then_refuses_new_connections() {
    let server = TestServer::empty().await;
    let addr = server.addr;
    let customer: serde_json::Value = server
        .post("/v1/customers")
        .json(&serde_json::json!({"name": "Ada", "email": "ada@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = format!(
        r#"{{"customer_id":"{}","items":[{{"product_id":"1","quantity":1}}]}}"#,
        customer["id"].as_str().unwrap()
    );
    let (first, rest) = body.split_at(10);
    let (first, rest) = (first.to_owned(), rest.to_owned());

    // A request whose body arrives in two parts, with the shutdown signal in between.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(2);
    tx.send(Ok(first)).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    // Warm the connection first, so the streamed request below runs on an accepted connection.
    server.get("/healthz").send().await.unwrap();
    let request = server
        .post("/v1/orders")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let in_flight = tokio::spawn(request);
    // Give the server a moment to parse the headers; the handler then waits for the body.
    // (An ordering hint, not a timing assertion: nothing here measures speed.)
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(Ok(rest)).await.unwrap();
    drop(tx);

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 201);
    stopping.await.unwrap().expect("the server stops cleanly");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}

fn polyport() -> Command {
    Command::new(env!("CARGO_BIN_EXE_polyport"))
}

#[test]
fn help_explains_every_flag() {
    let output = polyport().args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--addr",
        "--config",
        "--no-demo-data",
        "--demo-orders",
        "POLYPORT_ADDR",
        "POLYPORT_CONFIG",
        "--api-key",
        "POLYPORT_API_KEYS",
        "--insecure-no-auth",
        "--no-rate-limit",
        "--no-access-log",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}:\n{help}");
    }
    let top = polyport().arg("--help").output().unwrap();
    assert!(String::from_utf8(top.stdout).unwrap().contains("serve"));
}

/// Starts the binary, returns it and the address it logged. Without credentials configured
/// it runs in dev mode; [`dev_key`] reads the admin key it prints.
fn spawn_binary(args: &[&str], envs: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut child = polyport()
        .args(args)
        .env_remove("POLYPORT_API_KEYS")
        .envs(envs.iter().copied())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server logs its address before anything else ends")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// The dev-mode admin key the binary printed on stdout (before it logged its address).
fn dev_key(child: &mut std::process::Child) -> String {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    first
        .trim()
        .strip_prefix("POLYPORT_DEV_KEY=")
        .unwrap_or_else(|| panic!("dev mode prints its key first, got {first:?}"))
        .to_owned()
}

fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap()
}

#[tokio::test]
async fn the_binary_logs_its_port_zero_address_serves_and_exits_zero_on_sigterm() {
    let (mut child, addr) = spawn_binary(
        &["serve", "--addr", "127.0.0.1:0", "--demo-orders", "5"],
        &[],
    );
    assert!(!addr.ends_with(":0"), "the real port is logged, got {addr}");
    let key = dev_key(&mut child);
    let ready: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{addr}/readyz"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["orders"], 5);
    let status = terminate(&mut child);
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn polyport_addr_from_the_environment_is_used_and_no_demo_data_starts_empty() {
    let (mut child, addr) = spawn_binary(
        &["serve", "--no-demo-data"],
        &[("POLYPORT_ADDR", "127.0.0.1:0")],
    );
    let key = dev_key(&mut child);
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("http://{addr}{path}"))
            .bearer_auth(&key)
            .send()
    };
    let orders: serde_json::Value = get("/v1/orders").await.unwrap().json().await.unwrap();
    assert_eq!(orders["data"], serde_json::json!([]));
    let products: serde_json::Value = get("/v1/products?limit=100")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        products["data"].as_array().unwrap().len() >= 20,
        "the catalog is always there"
    );
    assert_eq!(terminate(&mut child).code(), Some(0));
}

#[test]
fn a_bad_config_file_stops_start_up_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("polyport-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[server]\nadress = \"127.0.0.1:0\"\n").unwrap();
    let output = polyport()
        .args(["serve", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("adress"), "{stderr}");
}

#[test]
fn the_config_file_sets_values_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!("polyport-test-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("small.toml");
    std::fs::write(
        &path,
        "[data]\ndemo_orders = 3\n[pagination]\ndefault_limit = 2\n",
    )
    .unwrap();
    let (mut child, addr) = spawn_binary(
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--config",
            path.to_str().unwrap(),
        ],
        &[],
    );
    let key = dev_key(&mut child);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let page: serde_json::Value = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{addr}/v1/orders"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    assert_eq!(terminate(&mut child).code(), Some(0));
}

#[tokio::test]
async fn shutdown_ends_live_streams_with_unavailable_instead_of_waiting_out_the_grace_period() {
    use polyport::protocols::grpc::pb;
    let mut config = polyport::config::Config::default();
    // Long enough that the test would hang visibly if streams held the drain open.
    config.server.shutdown_grace = Duration::from_secs(120);
    let server = TestServer::with_config(config).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = pb::orders_client::OrdersClient::new(channel);
    let mut stream = client
        .watch_orders(pb::WatchOrdersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server.app.streams.count(), 1);
    let app = server.app.clone();

    let stopped = tokio::time::timeout(Duration::from_secs(30), server.stop()).await;
    assert!(
        stopped
            .expect("the drain did not wait for the stream")
            .is_ok()
    );
    assert!(!app.is_ready());
    let ended = stream
        .message()
        .await
        .expect_err("the stream ends with a status");
    assert_eq!(ended.code(), tonic::Code::Unavailable);
    // The stream's task ends right after sending that status.
    for _ in 0..500 {
        if app.streams.count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the stream's task is still running after shutdown");
}

#[tokio::test]
async fn dev_mode_prints_an_admin_key_and_refuses_requests_without_it() {
    let (mut child, addr) = spawn_binary(&["serve", "--addr", "127.0.0.1:0"], &[]);
    let key = dev_key(&mut child);
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/orders/1");
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let wrong = client
        .get(&url)
        .bearer_auth("pp_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let admin = client.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(admin.status(), 200);
    let probe = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200, "probes need no credentials");
    assert_eq!(terminate(&mut child).code(), Some(0));
}

#[test]
fn a_non_loopback_address_without_credentials_refuses_to_start() {
    let output = polyport()
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env_remove("POLYPORT_API_KEYS")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("refusing to listen"), "{stderr}");
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");
}

#[tokio::test]
async fn keys_from_the_environment_and_insecure_no_auth_work_as_documented() {
    let (mut child, addr) = spawn_binary(
        &["serve", "--addr", "0.0.0.0:0"],
        &[(
            "POLYPORT_API_KEYS",
            "ops:readonly:ops-secret-1,ada:customer:ada-secret-1:1",
        )],
    );
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let client = reqwest::Client::new();
    let read = client
        .get(url("/v1/orders/2"))
        .header("x-api-key", "ops-secret-1")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let write = client
        .delete(url("/v1/orders/2"))
        .header("x-api-key", "ops-secret-1")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403, "readonly writes nothing");
    assert_eq!(terminate(&mut child).code(), Some(0));

    let (mut open, addr) = spawn_binary(
        &["serve", "--addr", "127.0.0.1:0", "--insecure-no-auth"],
        &[],
    );
    let anyone = reqwest::get(format!("http://{addr}/v1/orders/1"))
        .await
        .unwrap();
    assert_eq!(anyone.status(), 200);
    assert_eq!(terminate(&mut open).code(), Some(0));
}
