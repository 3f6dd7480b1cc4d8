//! The outermost HTTP layer: a trace id for every request, a log line for every response, and
//! the one place where an error a handler returned becomes its problem+json body
//! (`error::problem`).
//!
//! The trace id comes from an incoming W3C `traceparent` header when there is a valid one, so a
//! caller's distributed trace continues here; otherwise a fresh random one is made. It is sent
//! back in `x-trace-id` on every response and in every problem body, and it is a field of the
//! request's tracing span, so every log line of the request carries it.

use std::fmt;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue};
use tracing::Instrument;

use super::error::ApiError;
use super::error::problem::render_problem;

/// The response header that carries the trace id.
pub const TRACE_ID_HEADER: HeaderName = HeaderName::from_static("x-trace-id");

/// A W3C trace id: 32 lowercase hex digits, not all zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceId(String);

impl TraceId {
    /// A fresh random trace id, from the thread's own generator (seeded from the OS RNG): no
    /// system call per request.
    pub fn random() -> Self {
        let id = rand::random::<u128>().max(1); // all zeros is not a valid trace id
        Self(super::random::hex(&id.to_be_bytes()))
    }

    /// The trace id of a valid `traceparent` (`00-<trace id>-<parent id>-<flags>`), if it is one.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // Version ff is forbidden; later versions may append fields, version 00 may not.
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && hex(parent, 16)
            && parent.bytes().any(|b| b != b'0')
            && hex(flags, 2);
        valid.then(|| Self(trace.to_owned()))
    }

    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether every response gets an info-level log line (`server.access_log`).
#[derive(Debug, Clone, Copy)]
pub struct AccessLog(pub bool);

/// Middleware: assigns the trace id, runs the request inside a span, renders problems, logs.
pub async fn layer(
    axum::extract::State(AccessLog(access_log)): axum::extract::State<AccessLog>,
    mut request: Request,
    next: Next,
) -> Response {
    let trace_id = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceId::from_traceparent)
        .unwrap_or_else(TraceId::random);
    request.extensions_mut().insert(trace_id.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let version = request.version();
    let span = tracing::info_span!(
        "request",
        trace_id = %trace_id,
        %method,
        %path,
        principal = tracing::field::Empty
    );
    let started = Instant::now();

    let mut response = next.run(request).instrument(span.clone()).await;

    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        render_problem(&mut response, &error, trace_id.as_str(), &path);
    } else if response.status().as_u16() >= 400 && !is_problem(&response) {
        // Produced outside our handlers (e.g. the router's own 405): same shape regardless.
        let mut error = ApiError::for_status(response.status());
        if let Some(allow) = response
            .headers()
            .get(http::header::ALLOW)
            .and_then(|v| v.to_str().ok())
        {
            error.detail = format!("{method} is not allowed here; allowed: {allow}");
        }
        render_problem(&mut response, &error, trace_id.as_str(), &path);
    }
    response.headers_mut().insert(
        TRACE_ID_HEADER,
        HeaderValue::from_str(trace_id.as_str()).expect("hex digits are a valid header value"),
    );
    // Errors are logged where they happen, in the span, whatever this says.
    if access_log {
        span.in_scope(|| {
            tracing::info!(
                status = response.status().as_u16(),
                ?version,
                latency_us = started.elapsed().as_micros() as u64,
                "response"
            );
        });
    }
    response
}

/// True when a protocol already wrote its own error body (a problem, a GraphQL response):
/// only bare or plain-text error responses are turned into problems.
fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| !v.as_bytes().starts_with(b"text/plain"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_gives_its_trace_id() {
        let id =
            TraceId::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(id.unwrap().as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceId::from_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn random_trace_ids_are_valid_w3c_ids() {
        let id = TraceId::random();
        let header = format!("00-{id}-00f067aa0ba902b7-01");
        assert_eq!(TraceId::from_traceparent(&header), Some(id));
    }
}
