//! HTTPS and mutual TLS through real sockets: certificates from `polyport dev-certs`' own code,
//! the real server with `[tls]` set, and reqwest and tonic clients with and without client
//! certificates.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestServer;
use polyport::config::{ClientAuth, Config};
use polyport::devcerts::{ClientCert, DevCerts};
use polyport::protocols::grpc::pb::GetOrderRequest;
use polyport::protocols::grpc::pb::orders_client::OrdersClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("polyport-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Certificates written to disk, as `polyport dev-certs` writes them.
struct Certs {
    dir: TempDir,
    certs: DevCerts,
}

impl Certs {
    fn new(clients: &[&str]) -> Self {
        let dir = TempDir::new();
        let clients: Vec<String> = clients.iter().map(|c| (*c).to_owned()).collect();
        let certs = DevCerts::generate(&clients).unwrap();
        certs.write(&dir.0, false).unwrap();
        Self { dir, certs }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn client(&self, name: &str) -> &ClientCert {
        self.certs.clients.iter().find(|c| c.name == name).unwrap()
    }

    /// A configuration serving HTTPS with these certificates, asking for client certificates
    /// in `mode`.
    fn config(&self, mode: ClientAuth) -> Config {
        let mut config = Config::default();
        config.tls.cert_file = self.path("server.pem");
        config.tls.key_file = self.path("server-key.pem");
        config.tls.client_ca_file = self.path("ca.pem");
        config.tls.client_auth = mode;
        config
    }
}

/// A reqwest client trusting only the dev CA, presenting `identity` if given.
fn client(ca_pem: &str, identity: Option<&ClientCert>) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    if let Some(identity) = identity {
        let pem = format!("{}{}", identity.cert_pem, identity.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder
}

async fn get(client: reqwest::ClientBuilder, url: &str) -> reqwest::Result<reqwest::Response> {
    client.build().unwrap().get(url).send().await
}

#[tokio::test]
async fn a_client_with_a_valid_certificate_is_served_over_http1_and_over_http2_by_alpn() {
    let certs = Certs::new(&["workshop-admin"]);
    let server = TestServer::with_config(certs.config(ClientAuth::Required)).await;
    let admin = Some(certs.client("workshop-admin"));
    let cases = [
        (
            "HTTP/1.1 only",
            client(&certs.certs.ca_pem, admin).http1_only(),
            http::Version::HTTP_11,
        ),
        (
            "ALPN picks h2",
            client(&certs.certs.ca_pem, admin),
            http::Version::HTTP_2,
        ),
    ];
    for (case, builder, version) in cases {
        let response = get(builder, &server.https_url("/v1/orders?limit=1"))
            .await
            .unwrap_or_else(|e| panic!("{case}: {e:?}"));
        assert_eq!(response.status(), 200, "{case}");
        assert_eq!(response.version(), version, "{case}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), 1, "{case}");
    }
    // The server certificate also names localhost.
    let by_name = client(&certs.certs.ca_pem, admin).resolve("localhost", server.addr);
    let url = format!("https://localhost:{}/healthz", server.addr.port());
    assert_eq!(get(by_name, &url).await.unwrap().status(), 200);
}

#[tokio::test]
async fn without_a_client_certificate_the_handshake_fails_when_one_is_required() {
    let certs = Certs::new(&["workshop-admin"]);
    let server = TestServer::with_config(certs.config(ClientAuth::Required)).await;
    let result = get(
        client(&certs.certs.ca_pem, None),
        &server.https_url("/healthz"),
    )
    .await;
    assert!(result.is_err(), "served without a certificate: {result:?}");
    // The server is unharmed: a client with a certificate is still served.
    let admin = client(&certs.certs.ca_pem, Some(certs.client("workshop-admin")));
    assert_eq!(
        get(admin, &server.https_url("/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_in_both_modes() {
    let certs = Certs::new(&["workshop-admin"]);
    let stranger = DevCerts::generate(&["mallory".to_owned()]).unwrap();
    for mode in [ClientAuth::Required, ClientAuth::Optional] {
        let server = TestServer::with_config(certs.config(mode)).await;
        let builder = client(&certs.certs.ca_pem, Some(&stranger.clients[0]));
        let result = get(builder, &server.https_url("/healthz")).await;
        assert!(
            result.is_err(),
            "{mode:?}: a foreign certificate was accepted"
        );
    }
}

#[tokio::test]
async fn in_optional_mode_a_client_without_a_certificate_is_served() {
    let certs = Certs::new(&["workshop-admin"]);
    let server = TestServer::with_config(certs.config(ClientAuth::Optional)).await;
    for identity in [None, Some(certs.client("workshop-admin"))] {
        let response = get(
            client(&certs.certs.ca_pem, identity),
            &server.https_url("/v1/orders"),
        )
        .await
        .unwrap();
        assert_eq!(
            response.status(),
            200,
            "with a certificate: {}",
            identity.is_some()
        );
    }
}

#[tokio::test]
async fn https_without_client_certificates_serves_anyone() {
    let certs = Certs::new(&[]);
    let mut config = certs.config(ClientAuth::Required);
    config.tls.client_ca_file = PathBuf::new();
    let server = TestServer::with_config(config).await;
    let response = get(
        client(&certs.certs.ca_pem, None),
        &server.https_url("/healthz"),
    )
    .await;
    assert_eq!(response.unwrap().status(), 200);
}

#[tokio::test]
async fn plaintext_http_to_the_tls_port_fails_cleanly_and_the_server_keeps_serving() {
    let certs = Certs::new(&["workshop-admin"]);
    let server = TestServer::with_config(certs.config(ClientAuth::Required)).await;

    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    raw.write_all(b"GET /healthz HTTP/1.1\r\nhost: polyport\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // Bounded so a server that never closes fails the test instead of hanging it.
    let read = tokio::time::timeout(Duration::from_secs(20), raw.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server kept a plaintext connection open");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plaintext was answered: {}",
        String::from_utf8_lossy(&answer)
    );
    assert!(reqwest::get(server.url("/healthz")).await.is_err());

    let admin = client(&certs.certs.ca_pem, Some(certs.client("workshop-admin")));
    assert_eq!(
        get(admin, &server.https_url("/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_silent_client_neither_holds_up_other_connections_nor_stays_open() {
    let certs = Certs::new(&["workshop-admin"]);
    let mut config = certs.config(ClientAuth::Required);
    config.tls.handshake_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;

    // Connects and never starts the handshake.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let admin = client(&certs.certs.ca_pem, Some(certs.client("workshop-admin")));
    assert_eq!(
        get(admin, &server.https_url("/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );

    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buffer)).await;
    match read {
        Ok(Ok(n)) => assert_eq!(n, 0, "the server sent bytes to a client that said nothing"),
        Ok(Err(_)) => {} // reset: closed as well
        Err(_) => panic!("the server never closed a connection that did not start its handshake"),
    }
}

#[tokio::test]
async fn a_grpc_call_over_tls_with_a_client_certificate_succeeds() {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let certs = Certs::new(&["workshop-admin"]);
    let server = TestServer::with_config(certs.config(ClientAuth::Required)).await;
    let admin = certs.client("workshop-admin");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&certs.certs.ca_pem))
        .identity(Identity::from_pem(&admin.cert_pem, &admin.key_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(server.https_url(""))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS channel (tonic insists on h2 by ALPN)");
    let order = OrdersClient::new(channel)
        .get_order(GetOrderRequest { id: "1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.id, "1");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_over_tls_finish() {
    let certs = Certs::new(&["workshop-admin"]);
    let mut config = certs.config(ClientAuth::Required);
    config.data.demo = false;
    let server = TestServer::with_config(config).await;
    let client = client(&certs.certs.ca_pem, Some(certs.client("workshop-admin")))
        .build()
        .unwrap();
    let customer: serde_json::Value = client
        .post(server.https_url("/v1/customers"))
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

    // A request whose body arrives in two parts, with the shutdown signal in between, on a
    // connection whose handshake is long done.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(2);
    tx.send(Ok(first)).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let request = client
        .post(server.https_url("/v1/orders"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let in_flight = tokio::spawn(request);
    // An ordering hint, not a timing assertion: let the server start on the request.
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
}

fn polyport() -> Command {
    Command::new(env!("CARGO_BIN_EXE_polyport"))
}

#[test]
fn dev_certs_writes_the_files_once_and_prints_how_to_use_them() {
    let dir = TempDir::new();
    let out = dir.0.join("certs");
    let out_arg = out.to_str().unwrap();
    let first = polyport()
        .args([
            "dev-certs",
            "--out",
            out_arg,
            "--client",
            "alice",
            "--client",
            "bob",
        ])
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let printed = String::from_utf8(first.stdout).unwrap();
    for expected in [
        "polyport serve --config",
        "mtls.toml",
        "curl --cacert",
        "client-alice.pem",
        "client-bob-key.pem",
    ] {
        assert!(
            printed.contains(expected),
            "missing {expected:?} in:\n{printed}"
        );
    }
    for file in [
        "ca.pem",
        "ca-key.pem",
        "server.pem",
        "server-key.pem",
        "client-alice.pem",
        "client-alice-key.pem",
        "client-bob.pem",
        "client-bob-key.pem",
        "mtls.toml",
    ] {
        assert!(out.join(file).is_file(), "{file} was not written");
    }
    // The config file it writes serves mutual TLS with alice as an admin, bob as readonly.
    let config = polyport::config::Config::load(&out.join("mtls.toml")).unwrap();
    assert!(config.tls.enabled());
    let principals: Vec<(&str, &str)> = config
        .auth
        .certificates
        .iter()
        .map(|c| (c.common_name.as_str(), c.role.as_str()))
        .collect();
    assert_eq!(principals, [("alice", "admin"), ("bob", "readonly")]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("client-alice-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let ca_before = std::fs::read(out.join("ca.pem")).unwrap();
    let again = polyport()
        .args(["dev-certs", "--out", out_arg])
        .output()
        .unwrap();
    assert!(!again.status.success(), "overwrote without --force");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), ca_before);

    let forced = polyport()
        .args(["dev-certs", "--out", out_arg, "--force"])
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert_ne!(std::fs::read(out.join("ca.pem")).unwrap(), ca_before);
    assert!(
        out.join("client-workshop-admin.pem").is_file(),
        "the default client"
    );
}

/// Starts `polyport serve` with `args`, returns it and the https address it logged.
fn spawn_https_binary(args: &[&str]) -> (std::process::Child, String) {
    let mut child = polyport()
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        if let Some(rest) = line.split("listening on https://").nth(1) {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[tokio::test]
async fn the_binary_serves_mutual_tls_from_its_flags() {
    let certs = Certs::new(&["workshop-admin"]);
    let arg = |name: &str| certs.path(name).to_str().unwrap().to_owned();
    let (mut child, addr) = spawn_https_binary(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--tls-cert",
        &arg("server.pem"),
        "--tls-key",
        &arg("server-key.pem"),
        "--tls-client-ca",
        &arg("ca.pem"),
    ]);
    let url = format!("https://{addr}/healthz");
    let admin = client(&certs.certs.ca_pem, Some(certs.client("workshop-admin")));
    let served = get(admin, &url).await.map(|r| r.status());
    let refused = get(client(&certs.certs.ca_pem, None), &url).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(served.unwrap(), 200);
    assert!(refused.is_err(), "served without a client certificate");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_missing_certificate_file_stops_start_up_with_a_clear_message() {
    let dir = TempDir::new();
    let missing = dir.0.join("nope.pem");
    let missing = missing.to_str().unwrap();
    let cases: [(&[&str], &str); 2] = [
        (
            &["--tls-cert", missing, "--tls-key", missing],
            "tls.cert_file: cannot read",
        ),
        (&["--tls-cert", missing], "--tls-key"),
    ];
    for (flags, expected) in cases {
        let output = polyport()
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{flags:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_client_certificate_is_a_credential_its_common_name_maps_to_a_principal() {
    use polyport::config::CertificateConfig;
    let certs = Certs::new(&["workshop-admin", "auditor", "stranger"]);
    let mut config = certs.config(ClientAuth::Optional);
    config.auth.certificates = vec![
        CertificateConfig {
            common_name: "workshop-admin".into(),
            role: "admin".into(),
            customer_id: None,
        },
        CertificateConfig {
            common_name: "auditor".into(),
            role: "readonly".into(),
            customer_id: None,
        },
    ];
    config.rate_limit.enabled = false;
    // Authentication on: a certificate is the only credential configured.
    let server = TestServer::with_auth(config).await;
    let ca = &certs.certs.ca_pem;
    let as_client = |name: &str| client(ca, Some(certs.client(name))).build().unwrap();

    let admin = as_client("workshop-admin");
    let read = admin
        .get(server.https_url("/v1/orders/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let auditor = as_client("auditor");
    let read = auditor
        .get(server.https_url("/v1/orders/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let write = auditor
        .delete(server.https_url("/v1/orders/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        write.status(),
        403,
        "the certificate's principal is readonly"
    );

    // A valid certificate whose name is not configured authenticates nobody.
    let stranger = as_client("stranger");
    let refused = stranger
        .get(server.https_url("/v1/orders/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("CN=stranger"),
        "{body}"
    );
    // No certificate (optional mode) and no key: no credentials.
    let nobody = client(ca, None).build().unwrap();
    let refused = nobody
        .get(server.https_url("/v1/orders/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
