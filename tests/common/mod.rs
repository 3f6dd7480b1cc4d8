//! Test support: start the real server on 127.0.0.1:0 and talk to it over the socket.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use polyport::app::App;
use polyport::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running server; dropping it shuts the server down.
pub struct TestServer {
    pub addr: SocketAddr,
    pub app: App,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server with the demo data (24 products, 8 customers, 24 orders).
    pub async fn start() -> Self {
        Self::with_config(Config::default()).await
    }

    /// A server with the catalog only: no customers, no orders.
    pub async fn empty() -> Self {
        let mut config = Config::default();
        config.data.demo = false;
        Self::with_config(config).await
    }

    /// A server with `config` (its `server.addr` is ignored: the port is picked by the OS).
    /// Authentication and rate limits are off (every caller is an admin): these are the tests
    /// of everything else. `tests/auth.rs` uses [`TestServer::with_auth`].
    pub async fn with_config(mut config: Config) -> Self {
        config.auth.insecure_no_auth = true;
        config.rate_limit.enabled = false;
        Self::with_auth(config).await
    }

    /// A server with `config` exactly, authentication included.
    pub async fn with_auth(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let app = App::new(config);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.clone().run(listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            app,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `https://127.0.0.1:PORT{path}`, for a server started with `[tls]` configured.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.put(self.url(path))
    }

    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.patch(self.url(path))
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path))
    }

    /// Signals shutdown and waits for the server to finish draining.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task
            .take()
            .expect("running")
            .await
            .expect("server task")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Asserts `response` is an RFC 9457 problem with `status` and problem `slug`, and returns its body.
pub async fn expect_problem(
    response: reqwest::Response,
    status: u16,
    slug: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let trace_header = response
        .headers()
        .get("x-trace-id")
        .expect("every response carries x-trace-id")
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["type"], format!("/problems/{slug}"), "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(body["detail"].is_string(), "{body}");
    assert!(body["instance"].is_string(), "{body}");
    assert_eq!(body["trace_id"], trace_header, "{body}");
    body
}

/// Streaming support shared by the streaming protocols' tests.
impl TestServer {
    /// A gRPC (HTTP/2) channel to this server.
    pub async fn grpc_channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(self.url(""))
            .expect("a valid URI")
            .connect()
            .await
            .expect("connect")
    }

    /// Waits until exactly `expected` streaming calls are in progress on the server, polling
    /// briefly; panics (naming `context`) if that has not happened after a few seconds. Not a
    /// timing assertion: the bound only turns a stream that never stops (or never starts) into
    /// a failure instead of a hang.
    pub async fn wait_for_streams(&self, expected: usize, context: &str) {
        for _ in 0..200 {
            if self.app.streams.count() == expected {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!(
            "{context}: {} streams in progress on the server, expected {expected}",
            self.app.streams.count()
        );
    }
}
