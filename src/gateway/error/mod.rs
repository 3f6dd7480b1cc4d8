//! The one error table: every fault, domain or gateway, with its HTTP status and problem type,
//! its gRPC code and its GraphQL `extensions.code`.
//!
//! Adapters never choose codes themselves. REST renders an [`ApiError`] as RFC 9457
//! `application/problem+json`; the gRPC and GraphQL adapters read the same [`ProblemKind`], so
//! the same fault gets the same answer, in each protocol's idiom, on every protocol. The table is
//! also served at `GET /problems` so a workshop can look at it.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tonic::Code;

use crate::domain::{DomainError, FieldViolation};

pub mod graphql;
pub mod grpc;
pub mod problem;

/// The canonical upper-case name of a gRPC code (`INVALID_ARGUMENT`), as grpcurl prints it
/// and `/problems` lists it: tonic's variant name in the specification's spelling.
pub fn grpc_code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// One row of the table.
#[derive(Debug, PartialEq, Eq)]
pub struct ProblemKind {
    /// The last segment of the problem type URI, `/problems/{slug}`.
    pub slug: &'static str,
    /// A short, fixed summary (RFC 9457 `title`).
    pub title: &'static str,
    /// The HTTP status.
    pub status: StatusCode,
    /// The gRPC status code.
    pub grpc: Code,
    /// The GraphQL `extensions.code`.
    pub graphql: &'static str,
    /// When it happens and what the client should do.
    pub description: &'static str,
}

impl ProblemKind {
    /// The RFC 9457 `type`: a relative URI this server answers (`GET /problems/{slug}`).
    pub fn type_uri(&self) -> String {
        format!("/problems/{}", self.slug)
    }
}

macro_rules! kinds {
    ($($name:ident = $slug:literal, $status:ident, $grpc:ident, $graphql:literal, $title:literal, $description:literal;)*) => {
        $(
            #[doc = $title]
            pub const $name: ProblemKind = ProblemKind {
                slug: $slug,
                title: $title,
                status: StatusCode::$status,
                grpc: Code::$grpc,
                graphql: $graphql,
                description: $description,
            };
        )*
        /// Every row, in the order the table is served.
        pub const ALL: &[&ProblemKind] = &[$(&$name),*];
    };
}

/// The rows of the table.
pub mod kind {
    use super::{Code, ProblemKind, StatusCode};

    kinds! {
        VALIDATION = "validation", BAD_REQUEST, InvalidArgument, "BAD_USER_INPUT",
            "Invalid request",
            "A field or parameter has a wrong value; `errors` names each one. Fix the request; retrying it unchanged fails again.";
        MALFORMED_BODY = "malformed-body", BAD_REQUEST, InvalidArgument, "BAD_REQUEST",
            "Malformed request body",
            "The body is not valid JSON (REST) or not the expected protobuf message (gRPC). Nothing was changed.";
        NOT_FOUND = "not-found", NOT_FOUND, NotFound, "NOT_FOUND",
            "Resource not found",
            "The order, customer, product or item does not exist (ids are opaque: an id this server never issued names nothing).";
        ROUTE_NOT_FOUND = "route-not-found", NOT_FOUND, Unimplemented, "NOT_FOUND",
            "No such endpoint",
            "No endpoint has this path. The API lives under /v1.";
        METHOD_NOT_ALLOWED = "method-not-allowed", METHOD_NOT_ALLOWED, Unimplemented, "METHOD_NOT_ALLOWED",
            "Method not allowed",
            "The path exists but not with this method; the Allow header lists the methods it takes.";
        UNAUTHENTICATED = "unauthenticated", UNAUTHORIZED, Unauthenticated, "UNAUTHENTICATED",
            "Not authenticated",
            "The request lacks valid credentials; for inbound webhooks, a valid webhook-signature.";
        FORBIDDEN = "forbidden", FORBIDDEN, PermissionDenied, "FORBIDDEN",
            "Not allowed for this role",
            "The caller is authenticated but its role does not allow this (readonly callers write nothing; customers read, create and cancel their own orders).";
        ILLEGAL_TRANSITION = "illegal-transition", CONFLICT, FailedPrecondition, "ILLEGAL_TRANSITION",
            "Illegal status transition",
            "The order's status cannot move that way (pending -> paid -> shipped -> delivered; cancelled only from pending or paid).";
        INVALID_STATE = "invalid-state", CONFLICT, FailedPrecondition, "INVALID_STATE",
            "Not allowed in the order's current state",
            "For example, items change only while the order is pending.";
        ALREADY_EXISTS = "already-exists", CONFLICT, AlreadyExists, "ALREADY_EXISTS",
            "Already exists",
            "A resource with the same unique key (such as a customer's email) exists.";
        IDEMPOTENCY_IN_FLIGHT = "idempotency-in-flight", CONFLICT, Aborted, "IDEMPOTENCY_IN_FLIGHT",
            "Request with this Idempotency-Key still running",
            "The first request with this key has not finished. Retry shortly to get its result.";
        VERSION_MISMATCH = "version-mismatch", PRECONDITION_FAILED, Aborted, "CONFLICT",
            "Version mismatch",
            "The If-Match ETag is not the resource's current one: someone else changed it. Re-read and retry.";
        NOT_ACCEPTABLE = "not-acceptable", NOT_ACCEPTABLE, InvalidArgument, "BAD_REQUEST",
            "Not acceptable",
            "The endpoint cannot answer in a media type the Accept header allows (event streams send text/event-stream).";
        PAYLOAD_TOO_LARGE = "payload-too-large", PAYLOAD_TOO_LARGE, ResourceExhausted, "PAYLOAD_TOO_LARGE",
            "Request body too large",
            "The body exceeds the configured limit (REST: server.body_limit_bytes; gRPC: grpc.max_message_bytes; 1 MiB each by default; a GraphQL query text: graphql.max_document_bytes, 64 KiB).";
        UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type", UNSUPPORTED_MEDIA_TYPE, InvalidArgument, "BAD_REQUEST",
            "Unsupported media type",
            "Send JSON with Content-Type: application/json (PATCH also takes application/merge-patch+json).";
        QUERY_INVALID = "query-invalid", BAD_REQUEST, InvalidArgument, "GRAPHQL_VALIDATION_FAILED",
            "Invalid GraphQL document",
            "The GraphQL query did not parse or validate against the schema, or it is over the depth or complexity limit. Nothing ran.";
        PERSISTED_QUERY_NOT_FOUND = "persisted-query-not-found", NOT_FOUND, NotFound, "PERSISTED_QUERY_NOT_FOUND",
            "Persisted query not found",
            "The server does not know this persisted query's hash (Apollo APQ). Send the query text with the hash once; later requests may send the hash alone.";
        IDEMPOTENCY_KEY_REUSED = "idempotency-key-reused", UNPROCESSABLE_ENTITY, InvalidArgument, "IDEMPOTENCY_KEY_REUSED",
            "Idempotency-Key reused with a different request",
            "This key was used for a different request. Use a new key for a new request.";
        RATE_LIMITED = "rate-limited", TOO_MANY_REQUESTS, ResourceExhausted, "RATE_LIMITED",
            "Too many requests",
            "The caller used up its quota (per principal, or per client IP without credentials). Wait for Retry-After (gRPC: the RetryInfo delay) before retrying; every response's RateLimit header says how much quota is left.";
        INTERNAL = "internal", INTERNAL_SERVER_ERROR, Internal, "INTERNAL_SERVER_ERROR",
            "Internal server error",
            "A bug on our side. The trace id identifies the request in the server's logs.";
        DEADLINE_EXCEEDED = "deadline-exceeded", GATEWAY_TIMEOUT, DeadlineExceeded, "DEADLINE_EXCEEDED",
            "Deadline exceeded",
            "The call's deadline (gRPC grpc-timeout) passed before it finished. Retry with a longer deadline; a write may or may not have been made, so retry it with its idempotency key.";
        REQUEST_TIMEOUT = "request-timeout", REQUEST_TIMEOUT, DeadlineExceeded, "REQUEST_TIMEOUT",
            "Request timeout",
            "The request's headers did not all arrive within server.header_read_timeout (10 s by default), so the connection was closed. Send each request whole and promptly.";
        HEADERS_TOO_LARGE = "headers-too-large", REQUEST_HEADER_FIELDS_TOO_LARGE, ResourceExhausted, "HEADERS_TOO_LARGE",
            "Request headers too large",
            "A header field is longer than server.max_header_field_bytes (16 KiB by default), or all of them together than server.max_header_bytes (64 KiB). Nothing ran.";
        UNAVAILABLE = "unavailable", SERVICE_UNAVAILABLE, Unavailable, "SERVICE_UNAVAILABLE",
            "Service unavailable",
            "The server is starting or shutting down, holds its maximum of streams, or has its maximum of requests in flight (server.max_requests_in_flight). Retry after Retry-After, against another instance or later.";
    }
}

/// `delay` in whole seconds, rounded up and at least 1, as `Retry-After` wants it.
pub fn whole_seconds(delay: std::time::Duration) -> u64 {
    (delay.as_secs() + u64::from(delay.subsec_nanos() > 0)).max(1)
}

/// A fault to report: a row of the table, a detail for this occurrence, and field violations.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Which row.
    pub kind: &'static ProblemKind,
    /// What happened this time, for a human; never internal details.
    pub detail: String,
    /// For validation problems, each bad field.
    pub violations: Vec<FieldViolation>,
    /// When retrying makes sense again (a rate limit): `Retry-After` on HTTP, `RetryInfo` on
    /// gRPC, `extensions.retry_after` on GraphQL.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// A fault of `kind` with `detail`.
    pub fn new(kind: &'static ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            violations: Vec::new(),
            retry_after: None,
        }
    }

    /// A validation problem listing `violations`.
    pub fn invalid(violations: Vec<FieldViolation>) -> Self {
        let detail = match violations.as_slice() {
            [one] => one.to_string(),
            many => format!("{} fields are invalid", many.len()),
        };
        Self {
            kind: &kind::VALIDATION,
            detail,
            violations,
            retry_after: None,
        }
    }

    /// The row for a bare HTTP status (for responses produced outside our handlers).
    pub fn for_status(status: StatusCode) -> Self {
        let kind = kind::ALL
            .iter()
            .copied()
            .find(|k| k.status == status)
            .unwrap_or(if status.is_server_error() {
                &kind::INTERNAL
            } else {
                &kind::VALIDATION
            });
        Self::new(kind, kind.title)
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let kind: &'static ProblemKind = match &error {
            DomainError::NotFound { .. } => &kind::NOT_FOUND,
            DomainError::Invalid(violations) => return Self::invalid(violations.clone()),
            DomainError::IllegalTransition { .. } => &kind::ILLEGAL_TRANSITION,
            DomainError::InvalidState(_) => &kind::INVALID_STATE,
            DomainError::VersionMismatch { .. } => &kind::VERSION_MISMATCH,
            DomainError::AlreadyExists(_) => &kind::ALREADY_EXISTS,
            DomainError::Forbidden(_) => &kind::FORBIDDEN,
            DomainError::Internal(cause) => {
                // Log the cause here, inside the request's span (which carries the trace id);
                // the client only gets the generic message and the trace id.
                tracing::error!(cause = %cause, "internal error");
                return Self::new(&kind::INTERNAL, "an unexpected error occurred");
            }
        };
        Self::new(kind, error.to_string())
    }
}

impl From<FieldViolation> for ApiError {
    fn from(violation: FieldViolation) -> Self {
        Self::invalid(vec![violation])
    }
}

/// Handlers return `ApiError`; the response carries it as an extension and the trace layer
/// (`gateway::trace`) renders the problem body, adding the trace id and the request path.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.kind.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_a_unique_slug_and_an_error_status() {
        let mut slugs: Vec<_> = kind::ALL.iter().map(|k| k.slug).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), kind::ALL.len());
        assert!(kind::ALL.iter().all(|k| k.status.as_u16() >= 400));
    }

    #[test]
    fn a_bare_429_is_the_rate_limited_row_on_every_protocol() {
        let api = ApiError::for_status(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(api.kind.slug, "rate-limited");
        assert_eq!(grpc_code_name(api.kind.grpc), "RESOURCE_EXHAUSTED");
        assert_eq!(api.kind.graphql, "RATE_LIMITED");
    }

    #[test]
    fn domain_errors_map_to_the_documented_rows() {
        let cases: &[(DomainError, u16, &str, &str)] = &[
            (
                DomainError::not_found("order", 9),
                404,
                "NOT_FOUND",
                "NOT_FOUND",
            ),
            (
                DomainError::invalid("x", "bad"),
                400,
                "INVALID_ARGUMENT",
                "BAD_USER_INPUT",
            ),
            (
                DomainError::IllegalTransition {
                    from: "shipped",
                    to: "cancelled",
                },
                409,
                "FAILED_PRECONDITION",
                "ILLEGAL_TRANSITION",
            ),
            (
                DomainError::InvalidState("x".into()),
                409,
                "FAILED_PRECONDITION",
                "INVALID_STATE",
            ),
            (
                DomainError::VersionMismatch { actual: 3 },
                412,
                "ABORTED",
                "CONFLICT",
            ),
            (
                DomainError::AlreadyExists("x".into()),
                409,
                "ALREADY_EXISTS",
                "ALREADY_EXISTS",
            ),
            (
                DomainError::Internal("secret".into()),
                500,
                "INTERNAL",
                "INTERNAL_SERVER_ERROR",
            ),
        ];
        for (error, status, grpc, graphql) in cases {
            let api = ApiError::from(error.clone());
            assert_eq!(api.kind.status.as_u16(), *status, "{error:?}");
            assert_eq!(grpc_code_name(api.kind.grpc), *grpc, "{error:?}");
            assert_eq!(api.kind.graphql, *graphql, "{error:?}");
        }
        assert!(
            !ApiError::from(DomainError::Internal("secret".into()))
                .detail
                .contains("secret")
        );
    }
}
