//! One HTTP connection (HTTP/1.1 or HTTP/2 with prior knowledge) over a counted socket, with
//! hyper's low-level connection API: the drivers for REST, GraphQL, SSE and long polling share it.
//!
//! One connection per load-generator worker, opened before the measured window and reused for
//! every request (keep-alive), which is what a real client pool converges to.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::outcome::OpError;
use super::wire::{self, WireCounters};

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1 with keep-alive.
    H1,
    /// HTTP/2 over cleartext with prior knowledge (h2c), as gRPC does.
    H2,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// A connection and what every request on it carries.
pub struct HttpClient {
    sender: Sender,
    authority: String,
    authorization: Option<HeaderValue>,
}

impl HttpClient {
    /// Connects to `addr`; `api_key` becomes `authorization: Bearer KEY` on every request.
    pub async fn connect(
        addr: SocketAddr,
        version: Version,
        counters: &Arc<WireCounters>,
        api_key: Option<&str>,
    ) -> Result<Self, OpError> {
        let io = TokioIo::new(
            wire::connect(addr, counters)
                .await
                .map_err(|e| OpError::Connect(e.to_string()))?,
        );
        let sender = match version {
            Version::H1 => {
                let (sender, conn) = http1::handshake(io)
                    .await
                    .map_err(|e| OpError::Connect(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::H1(sender)
            }
            Version::H2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| OpError::Connect(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::H2(sender)
            }
        };
        Ok(Self {
            sender,
            authority: addr.to_string(),
            authorization: bearer(api_key)?,
        })
    }

    /// A request to `path_and_query` with the headers every request carries. HTTP/1.1 sends
    /// the path and a `Host` header; HTTP/2 the full URI (hyper turns it into `:authority`).
    pub fn request(&self, method: Method, path_and_query: &str) -> http::request::Builder {
        let mut builder = Request::builder().method(method);
        builder = match self.sender {
            Sender::H1(_) => builder
                .uri(path_and_query)
                .header(HOST, self.authority.as_str()),
            Sender::H2(_) => builder.uri(format!("http://{}{path_and_query}", self.authority)),
        };
        if let Some(value) = &self.authorization {
            builder = builder.header(AUTHORIZATION, value.clone());
        }
        builder
    }

    /// A JSON POST.
    pub fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Request<Full<Bytes>>, OpError> {
        self.request(Method::POST, path)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| OpError::Invalid(e.to_string()))
    }

    /// A GET with an empty body.
    pub fn get(&self, path: &str) -> Result<Request<Full<Bytes>>, OpError> {
        self.request(Method::GET, path)
            .body(Full::new(Bytes::new()))
            .map_err(|e| OpError::Invalid(e.to_string()))
    }

    /// Sends `request` and returns the response with its body still streaming.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, OpError> {
        let result = match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await.map_err(io_error)?;
                sender.send_request(request).await
            }
            Sender::H2(sender) => {
                sender.ready().await.map_err(io_error)?;
                sender.send_request(request).await
            }
        };
        result.map_err(io_error)
    }

    /// Sends `request` and reads the whole response body.
    pub async fn call(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), OpError> {
        let response = self.send(request).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(io_error)?
            .to_bytes();
        Ok((status, body))
    }
}

/// `Bearer KEY` as a header value (a key with characters a header cannot carry is refused).
pub fn bearer(api_key: Option<&str>) -> Result<Option<HeaderValue>, OpError> {
    api_key
        .map(|key| {
            HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| OpError::Invalid("the API key cannot be sent in a header".into()))
        })
        .transpose()
}

fn io_error(error: hyper::Error) -> OpError {
    OpError::Io(error.to_string())
}
