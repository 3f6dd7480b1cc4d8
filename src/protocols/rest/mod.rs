//! The REST adapter: resource-oriented JSON over HTTP, versioned in the URL.
//!
//! Version-independent HTTP machinery lives here (bodies, conditional requests, list parameters,
//! idempotency binding, response helpers); each version owns its routes and wire types in its own
//! module, so a `/v2` can be added beside `/v1` without touching it.

pub mod body;
pub mod conditional;
pub mod idempotent;
pub mod listing;
pub mod problems;
pub mod v1;

use axum::Router;
use axum::extract::OriginalUri;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, LOCATION};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use crate::gateway::ApiError;
use crate::gateway::error::kind;
use crate::gateway::refusal::{Idiom, refuse};
use crate::gateway::trace::TraceId;
use crate::protocols::AppState;

/// Every REST route: the versions and the problem-type documents.
pub fn routes() -> Router<AppState> {
    Router::new()
        .nest("/v1", v1::routes().merge(super::push::routes()))
        .merge(problems::routes())
}

/// The fallback for paths no route matches: the table's `route-not-found` row in the caller's
/// idiom. A gRPC client gets UNIMPLEMENTED in gRPC's own form (HTTP 200 with `grpc-status`,
/// rich details and the trace id); everyone else a problem+json 404.
pub async fn route_not_found(
    OriginalUri(uri): OriginalUri,
    method: http::Method,
    trace_id: Option<axum::Extension<TraceId>>,
    headers: HeaderMap,
) -> Response {
    let idiom = Idiom::of(&method, uri.path(), &headers);
    let detail = match idiom {
        Idiom::Grpc => format!("no method {}", uri.path()),
        _ => format!("no endpoint at {}; the API lives under /v1", uri.path()),
    };
    let error = ApiError::new(&kind::ROUTE_NOT_FOUND, detail);
    let trace_id = trace_id.map(|axum::Extension(t)| t);
    refuse(idiom, &error, trace_id.as_ref(), &headers, HeaderMap::new())
}

/// How clients and proxies may cache a GET.
#[derive(Debug, Clone, Copy)]
pub enum Caching {
    /// Catalog data: anyone may cache it for a minute.
    Public,
    /// Orders and customers: per user, and revalidate (with the ETag) before every use.
    Private,
}

impl Caching {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Public => "public, max-age=60",
            Self::Private => "private, no-cache",
        })
    }
}

/// A JSON response builder: status, body, and the headers REST cares about.
pub struct JsonResponse {
    status: StatusCode,
    body: Vec<u8>,
    headers: HeaderMap,
}

impl JsonResponse {
    /// `status` with `body` serialized as JSON.
    pub fn new(status: StatusCode, body: &impl Serialize) -> Self {
        Self {
            status,
            body: serde_json::to_vec(body).expect("wire types always serialize"),
            headers: HeaderMap::new(),
        }
    }

    /// 200 OK.
    pub fn ok(body: &impl Serialize) -> Self {
        Self::new(StatusCode::OK, body)
    }

    /// A read of a resource whose ETag is its content: 200 with a strong ETag digested from
    /// the body and `caching`, or 304 when the client's `If-None-Match` already holds it.
    pub fn representation(body: &impl Serialize, caching: Caching, request: &HeaderMap) -> Self {
        let response = Self::ok(body);
        let etag = conditional::content_etag(&response.body);
        response
            .etag(&etag)
            .caching(caching)
            .or_not_modified(request)
    }

    /// 201 Created, with the new resource's `Location`.
    pub fn created(location: &str, body: &impl Serialize) -> Self {
        Self::new(StatusCode::CREATED, body).header(LOCATION, location)
    }

    /// Adds a header.
    pub fn header(mut self, name: http::HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    /// Adds `ETag`.
    pub fn etag(self, etag: &str) -> Self {
        self.header(ETAG, etag)
    }

    /// Adds `Cache-Control`.
    pub fn caching(mut self, caching: Caching) -> Self {
        self.headers.insert(CACHE_CONTROL, caching.header());
        self
    }

    /// For a GET: 304 Not Modified (same ETag and caching headers, no body) when the client's
    /// `If-None-Match` already holds this representation.
    pub fn or_not_modified(mut self, request: &HeaderMap) -> Self {
        let etag = self.headers.get(ETAG).and_then(|v| v.to_str().ok());
        if etag.is_some_and(|etag| conditional::not_modified(request, etag)) {
            self.status = StatusCode::NOT_MODIFIED;
            self.body.clear();
        }
        self
    }
}

impl IntoResponse for JsonResponse {
    fn into_response(self) -> Response {
        let mut response = if self.status == StatusCode::NOT_MODIFIED {
            self.status.into_response()
        } else {
            let mut r = (self.status, self.body).into_response();
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        };
        response.headers_mut().extend(self.headers);
        response
    }
}
