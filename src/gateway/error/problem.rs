//! The table's HTTP rendering: RFC 9457 `application/problem+json`, for REST, the plain-HTTP
//! streams and every refusal that is neither gRPC nor GraphQL.

use axum::body::Body;
use axum::response::Response;
use http::HeaderValue;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};

use super::{ApiError, whole_seconds};

/// The RFC 9457 body for `error`. `instance` and `trace_id` are left out when not given (e.g.
/// for one element's error inside a bulk response, whose envelope carries them).
pub fn problem_body(error: &ApiError, instance: Option<&str>, trace_id: Option<&str>) -> Value {
    let mut body = json!({
        "type": error.kind.type_uri(),
        "title": error.kind.title,
        "status": error.kind.status.as_u16(),
        "detail": error.detail,
    });
    if let Some(instance) = instance {
        body["instance"] = json!(instance);
    }
    if let Some(trace_id) = trace_id {
        body["trace_id"] = json!(trace_id);
    }
    if let Some(delay) = error.retry_after {
        body["retry_after"] = json!(whole_seconds(delay));
    }
    if !error.violations.is_empty() {
        body["errors"] = error
            .violations
            .iter()
            .map(|v| json!({ "field": v.field, "message": v.message }))
            .collect();
    }
    body
}

/// Writes the problem body for `error` into `response`, keeping its other headers.
pub(crate) fn render_problem(
    response: &mut Response,
    error: &ApiError,
    trace_id: &str,
    path: &str,
) {
    let body = problem_body(error, Some(path), Some(trace_id));
    let bytes = serde_json::to_vec(&body).expect("a JSON value always serializes");
    *response.status_mut() = error.kind.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    if let Some(delay) = error.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(whole_seconds(delay)));
    }
    *response.body_mut() = Body::from(bytes);
}
