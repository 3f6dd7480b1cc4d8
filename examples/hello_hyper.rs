//! Baseline for the REST speed bar: a bare hyper 1 server that answers every request with a
//! small constant JSON body, nothing else (no router, no layers, no domain).
//!
//! It has the shape of polyport's own accept loop (`src/gateway/serve.rs`): one listener,
//! hyper-util's `auto` builder (HTTP/1.1 or HTTP/2 detected per connection), `TCP_NODELAY`,
//! one task per connection, on tokio's default multi-threaded runtime. So the ratio
//! "polyport req/s / hello_hyper req/s" is the price of polyport's router, layers and domain,
//! not of a different server design. Build it with the same release profile:
//!
//! ```text
//! cargo build --release --example hello_hyper
//! target/release/examples/hello_hyper --addr 127.0.0.1:8081   # or HELLO_ADDR=...; default 127.0.0.1:0
//! ```
//! It prints `listening on http://ADDR` once bound, and runs until killed.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"message":"hello"}"#;

/// `--addr ADDR`, else `HELLO_ADDR`, else a free port on 127.0.0.1.
fn addr() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("HELLO_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
}

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(BODY)))
        .expect("a constant response"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(addr()).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                eprintln!("accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service_fn(hello))
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
