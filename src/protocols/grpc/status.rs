//! gRPC statuses from the one error table, with rich details and the trace id.
//!
//! A validation failure carries `google.rpc.BadRequest` with one field violation per bad field;
//! every error carries `google.rpc.ErrorInfo` (reason = the problem slug shared with REST, e.g.
//! `version-mismatch`, and the problem type) and `x-trace-id` metadata.

use std::collections::HashMap;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::gateway::ApiError;
use crate::gateway::error::kind;
use crate::gateway::trace::TraceId;

/// The metadata key carrying the trace id.
pub const TRACE_ID: &str = "x-trace-id";

/// The status for `error`.
pub fn from_api(error: &ApiError, trace_id: Option<&TraceId>) -> Status {
    let code = Code::from_i32(error.kind.grpc as i32);
    let mut details = ErrorDetails::new();
    if !error.violations.is_empty() {
        details.set_bad_request(
            error
                .violations
                .iter()
                .map(|v| tonic_types::FieldViolation::new(v.field.clone(), v.message.clone()))
                .collect::<Vec<_>>(),
        );
    }
    let mut info = HashMap::from([("type".to_owned(), error.kind.type_uri())]);
    if let Some(trace_id) = trace_id {
        info.insert("trace_id".to_owned(), trace_id.to_string());
    }
    details.set_error_info(error.kind.slug, "polyport", info);
    let mut status = Status::with_error_details(code, error.detail.clone(), details);
    if let Some(trace_id) = trace_id
        && let Ok(value) = MetadataValue::try_from(trace_id.as_str())
    {
        status.metadata_mut().insert(TRACE_ID, value);
    }
    status
}

/// Statuses tonic's codec produces for bad input, mapped to the codes the table uses for the
/// same faults over REST: a message over the size limit is RESOURCE_EXHAUSTED (tonic says
/// OUT_OF_RANGE), bytes that are not the expected protobuf message are INVALID_ARGUMENT
/// (tonic says INTERNAL, which we keep for our own bugs).
pub fn from_codec(status: Status) -> Status {
    match status.code() {
        Code::OutOfRange if status.message().contains("message length too large") => Status::new(
            Code::from_i32(kind::PAYLOAD_TOO_LARGE.grpc as i32),
            status.message().to_owned(),
        ),
        Code::Internal if status.message().contains("decode") => Status::new(
            Code::InvalidArgument,
            format!("malformed protobuf message: {}", status.message()),
        ),
        _ => status,
    }
}

/// The same mapping for a trailers-only response (a unary call whose request failed to decode
/// before our handler ran): rewrites its `grpc-status` header.
pub async fn fix_codec_errors(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| m.replace("%20", " "))
        .unwrap_or_default();
    if let Some(code) = code {
        let fixed = from_codec(Status::new(Code::from_i32(code), message));
        if fixed.code() as i32 != code {
            headers.insert("grpc-status", http::HeaderValue::from(fixed.code() as i32));
            if let Ok(value) = http::HeaderValue::from_str(&fixed.message().replace(' ', "%20")) {
                headers.insert("grpc-message", value);
            }
        }
    }
    response
}
