//! The table's gRPC rendering: a `tonic::Status` with rich details and the trace id, for the
//! adapter's own errors and for the gate's refusals alike.
//!
//! A validation failure carries `google.rpc.BadRequest` with one field violation per bad field;
//! every error carries `google.rpc.ErrorInfo` (reason = the problem slug shared with REST, e.g.
//! `version-mismatch`, and the problem type) and `x-trace-id` metadata.

use std::collections::HashMap;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{ApiError, kind};
use crate::gateway::trace::TraceId;

/// The metadata key carrying the trace id.
pub const TRACE_ID: &str = "x-trace-id";

/// The response headers a gRPC-Web page on another origin may read.
pub const EXPOSED_HEADERS: &[&str] = &[
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-trace-id",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
];

/// The status for `error`.
pub fn from_api(error: &ApiError, trace_id: Option<&TraceId>) -> Status {
    let code = error.kind.grpc;
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
    if let Some(delay) = error.retry_after {
        details.set_retry_info(Some(delay));
    }
    let mut status = Status::with_error_details(code, error.detail.clone(), details);
    if let Some(trace_id) = trace_id
        && let Ok(value) = MetadataValue::try_from(trace_id.as_str())
    {
        status.metadata_mut().insert(TRACE_ID, value);
    }
    if let Some(delay) = error.retry_after {
        // Whole seconds, as HTTP's Retry-After; RetryInfo above has the exact delay.
        let seconds = super::whole_seconds(delay);
        status
            .metadata_mut()
            .insert("retry-after", MetadataValue::from(seconds));
    }
    status
}

/// Statuses tonic's codec produces for bad input, mapped to the rows the table uses for the
/// same faults over REST: a message over the size limit is `payload-too-large`,
/// RESOURCE_EXHAUSTED (tonic says OUT_OF_RANGE); bytes that are not the expected protobuf
/// message, and a body that is not well-framed gRPC ([`CLIENT_FRAMING_FAULTS`]), are
/// `malformed-body`, INVALID_ARGUMENT (tonic says INTERNAL, which we keep for our own bugs);
/// the bare UNIMPLEMENTED, with no message, that tonic's generated router answers for a method
/// a service does not have is `route-not-found`, as an unknown service already is. Only tonic's own statuses,
/// which carry no details, are rewritten; other statuses pass through.
pub fn from_codec(status: Status, trace_id: Option<&TraceId>) -> Status {
    let bare = status.details().is_empty();
    let kind = match status.code() {
        Code::OutOfRange if status.message().contains("message length too large") => {
            &kind::PAYLOAD_TOO_LARGE
        }
        Code::Internal if bare && is_client_input_fault(status.message()) => &kind::MALFORMED_BODY,
        // The generated router's answer has no message. tonic's other bare UNIMPLEMENTED, a
        // `grpc-encoding` the server does not take, passes through with its
        // `grpc-accept-encoding`: the method exists.
        Code::Unimplemented if bare && status.message().is_empty() => {
            let detail = "no such gRPC method on this service";
            return from_api(&ApiError::new(&kind::ROUTE_NOT_FOUND, detail), trace_id);
        }
        _ => return status,
    };
    from_api(&ApiError::new(kind, status.message().to_owned()), trace_id)
}

/// How tonic and tonic-web begin the INTERNAL messages they give a request whose body is not
/// well-framed gRPC: the client's fault, so `malformed-body`. Each is checked through the socket
/// by `tests/grpc.rs::a_badly_framed_request_is_the_clients_fault_invalid_argument_and_creates_nothing`,
/// which fails if a tonic upgrade rewords one.
///
/// The gRPC compression document says a message with the compressed flag set and no
/// `grpc-encoding` "MUST fail with INTERNAL"; we answer INVALID_ARGUMENT, as for any other
/// request the client framed wrongly, so that INTERNAL always means a bug of ours.
pub const CLIENT_FRAMING_FAULTS: &[&str] = &[
    // A protobuf decode error (tonic-prost: "failed to decode Protobuf message: ...").
    "failed to decode",
    // A length prefix promising more bytes than the body has, or a frame header cut short.
    "Unexpected EOF decoding stream",
    // A unary call whose body holds no message.
    "Missing request message",
    // The compressed flag with no compression negotiated, or a flag other than 0 and 1.
    "protocol error: received message with",
    // gRPC-Web text that is not base64 (or a request body that failed to arrive).
    "tonic-web: ",
];

fn is_client_input_fault(message: &str) -> bool {
    CLIENT_FRAMING_FAULTS
        .iter()
        .any(|start| message.starts_with(start))
}

/// Middleware for the same mapping on a trailers-only response (a unary call whose request
/// failed to decode before our handler ran): rewrites its status headers.
pub async fn fix_codec_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let trace_id = request.extensions().get::<TraceId>().cloned();
    let mut response = next.run(request).await;
    // tonic reads its own trailers-only status back (and percent-decodes the message).
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let (code, bare) = (status.code(), status.details().is_empty());
    let fixed = from_codec(status, trace_id.as_ref());
    if fixed.code() != code || (bare && !fixed.details().is_empty()) {
        let (parts, _) = fixed.into_http::<axum::body::Body>().into_parts();
        for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
            match parts.headers.get(name) {
                Some(value) => response.headers_mut().insert(name, value.clone()),
                None => response.headers_mut().remove(name),
            };
        }
    }
    response
}
