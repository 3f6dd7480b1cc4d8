//! How each protocol says "no" before its adapter runs: the shared layers (authentication,
//! rate limiting) refuse requests here, in the idiom of the protocol that asked, through the
//! same renderings of the error table the adapters use (`error::{problem, grpc, graphql}`).
//!
//! - gRPC (and gRPC-Web): HTTP 200 with a trailers-only status (`grpc-status`, `grpc-message`,
//!   rich details), because gRPC clients read the status, not the HTTP code.
//! - GraphQL over HTTP: the HTTP status with a GraphQL error list, `extensions.code` from the
//!   table, as GraphQL clients expect `{"errors": [...]}`.
//! - Everything else (REST, SSE, long polling, WebSocket upgrades): RFC 9457 problem+json,
//!   written by the trace layer like every other error.
//!
//! The fault is the same row of the error table on every protocol, with the same trace id.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

use crate::gateway::ApiError;
use crate::gateway::error::{graphql, grpc};
use crate::gateway::trace::TraceId;

/// The protocol a request speaks, as far as refusing it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idiom {
    /// `content-type: application/grpc...` (gRPC and gRPC-Web).
    Grpc,
    /// `/graphql` over HTTP.
    Graphql,
    /// REST and the plain-HTTP streams.
    Problem,
}

impl Idiom {
    /// Recognises the protocol from the request line and headers.
    pub fn of(method: &Method, path: &str, headers: &HeaderMap) -> Self {
        let grpc = headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if grpc {
            Idiom::Grpc
        } else if path == "/graphql" && (method == Method::POST || method == Method::GET) {
            Idiom::Graphql
        } else {
            Idiom::Problem
        }
    }
}

/// The refusal of a request in `idiom`, with `extra` headers (a challenge, rate-limit fields).
/// `request_headers` are the request's (for the gRPC-Web content type).
pub fn refuse(
    idiom: Idiom,
    error: &ApiError,
    trace_id: Option<&TraceId>,
    request_headers: &HeaderMap,
    extra: HeaderMap,
) -> Response {
    let mut response = match idiom {
        Idiom::Grpc => {
            let status = grpc::from_api(error, trace_id);
            let mut response: Response = status.into_http::<Body>();
            if let Some(content_type) = request_headers.get(CONTENT_TYPE) {
                // gRPC-Web clients expect their own content type back.
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, content_type.clone());
            }
            if request_headers.contains_key(http::header::ORIGIN) {
                // A gRPC-Web page on another origin: refused before the CORS layer, so say
                // here what it would, or the page sees a network error instead of the status.
                let headers = response.headers_mut();
                headers.insert(
                    http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
                if let Ok(exposed) = HeaderValue::from_str(&grpc::EXPOSED_HEADERS.join(", ")) {
                    headers.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed);
                }
            }
            response
        }
        Idiom::Graphql => {
            let body = json!({ "errors": [graphql::request_error(error, trace_id)] });
            let mut response = Response::new(Body::from(body.to_string()));
            *response.status_mut() = error.kind.status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(delay) = error.retry_after {
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(crate::gateway::error::whole_seconds(delay)),
                );
            }
            response
        }
        Idiom::Problem => error.clone().into_response(),
    };
    debug_assert!(idiom == Idiom::Grpc || response.status() != StatusCode::OK);
    response.headers_mut().extend(extra);
    response
}
