//! The gate every request passes before any protocol adapter: who is calling, and may they
//! call now. One layer for every protocol, so REST, gRPC, GraphQL, SSE, long polling and the
//! WebSocket upgrades are protected in exactly the same way.
//!
//! In order:
//! 0. Refuse a header field over `server.max_header_field_bytes` (431), and, past
//!    `server.max_requests_in_flight` requests being handled, shed the request at once (503
//!    with `Retry-After`, gRPC `UNAVAILABLE`) rather than queue it. Probes are never shed.
//! 1. Work out the caller from the request's credentials (`gateway::auth`). This is cheap (a
//!    hash, or a signature check) and tells the limiter whose quota to charge.
//! 2. Rate limit: an authenticated caller draws on its principal's quota
//!    (`rate_limit.caller`), anyone else, including a request with bad credentials, on its IP
//!    address's (`rate_limit.anonymous`), so guessing keys is slowed down too. Over quota: 429
//!    (or the protocol's equivalent) with `Retry-After`.
//! 3. Refuse (in the protocol's idiom, [`refusal`](super::refusal)) what needs credentials and has
//!    none or bad ones, with a `WWW-Authenticate` challenge.
//! 4. Put the [`Principal`] on the request for the adapter, which hands it to the domain core.
//!
//! Every response that passed the limiter carries the `RateLimit-Policy`, `RateLimit` and
//! `X-RateLimit-*` fields. The probes (`/healthz`, `/readyz`, gRPC health) are not limited:
//! a load balancer must always be able to ask.
//!
//! Open without credentials: the probes, the problem-type documentation, the GraphiQL page,
//! the workshop page (`/` and its assets under `/ui/`),
//! the OAuth endpoints (their clients authenticate in the request itself), signed inbound
//! webhooks (the signature is the credential) and gRPC health. The WebSocket endpoints may
//! also be opened without credentials; the client then authenticates in its first message.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method};

use crate::domain::Principal;
use crate::gateway::ApiError;
use crate::gateway::auth::{AuthError, Authenticator};
use crate::gateway::error::kind;
use crate::gateway::ratelimit::{Decision, Policy, RateLimiter};
use crate::gateway::refusal::{Idiom, refuse};
use crate::gateway::tls::ClientCertificate;
use crate::gateway::trace::TraceId;

/// What the gate needs: who may call (credentials) and how often (quotas). It owns nothing
/// of the adapters, so it stands under them; the adapters hold it too, for the checks a
/// WebSocket or gRPC session makes per message.
pub struct Gate {
    /// API keys, tokens, certificates.
    pub auth: Arc<Authenticator>,
    /// Requests and messages per caller.
    pub limiter: Arc<RateLimiter>,
    /// What one request may be, and how many may be handled at once.
    pub requests: RequestLimits,
    /// Faults injected for teaching; off unless configured (one atomic load per request).
    pub chaos: Arc<crate::gateway::chaos::Chaos>,
}

/// The limits every request meets before anything else: the size of one header field, and
/// how many requests may be handled at once (load shedding).
#[derive(Debug)]
pub struct RequestLimits {
    max_header_field_bytes: usize,
    max_in_flight: usize,
    in_flight: AtomicUsize,
}

/// One request being handled; dropping it gives its place back.
#[derive(Debug)]
pub struct Handling<'a>(&'a AtomicUsize);

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RequestLimits {
    /// Header fields of at most `max_header_field_bytes` (name and value), and at most
    /// `max_in_flight` requests handled at once (0: no cap).
    pub fn new(max_header_field_bytes: usize, max_in_flight: usize) -> Self {
        Self {
            max_header_field_bytes,
            max_in_flight: if max_in_flight == 0 {
                usize::MAX
            } else {
                max_in_flight
            },
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The refusal of a request one of whose header fields is too long.
    pub fn oversized_field(&self, headers: &HeaderMap) -> Option<ApiError> {
        let max = self.max_header_field_bytes;
        let (name, _) = headers
            .iter()
            .find(|(name, value)| name.as_str().len() + value.len() > max)?;
        Some(ApiError::new(
            &kind::HEADERS_TOO_LARGE,
            format!(
                "the header field {name} is longer than {max} bytes (server.max_header_field_bytes)"
            ),
        ))
    }

    /// A place for one more request, unless the maximum are being handled.
    pub fn enter(&self) -> Result<Handling<'_>, ApiError> {
        let max = self.max_in_flight;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| Handling(&self.in_flight))
            .map_err(|_| {
                let mut error = ApiError::new(
                    &kind::UNAVAILABLE,
                    format!("the server is handling its maximum of {max} requests (server.max_requests_in_flight); retry shortly"),
                );
                error.retry_after = Some(SHED_RETRY_AFTER);
                error
            })
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// When a shed request may try again: soon, since the requests ahead of it are short.
const SHED_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Gate {
    /// Charges one request or message to its caller's quota: the principal's, or the
    /// client address's when there is no principal, or when authentication is off (then
    /// everyone is the same "anonymous" admin, and one quota shared by all would let one
    /// client starve the rest). The one keying rule for every path, HTTP and per-message.
    pub fn charge(&self, who: Option<&Principal>, peer: Option<IpAddr>) -> Decision {
        match self.caller(who, peer) {
            Caller::Principal(name) => self.limiter.check(Policy::Caller, &name),
            Caller::Address(ip, policy) => self.limiter.check(policy, &ip),
        }
    }

    /// Whose share a request or stream draws on: the keying rule of [`Gate::charge`], also
    /// used for the per-caller share of streams (`push.max_streams_per_caller`).
    pub fn caller(&self, who: Option<&Principal>, peer: Option<IpAddr>) -> Caller {
        let ip = || peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        match who {
            Some(_) if self.auth.is_off() => Caller::Address(ip(), Policy::Caller),
            Some(principal) => Caller::Principal(Arc::clone(&principal.name)),
            None => Caller::Address(ip(), Policy::Anonymous),
        }
    }
}

/// Whose quota and share a request draws on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// An authenticated principal, by name.
    Principal(Arc<str>),
    /// A client address (no principal, or authentication off), under the policy it pays by.
    Address(String, Policy),
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: anyone may call it.
    Open,
    /// Credentials, now or in the first WebSocket message.
    Deferrable,
    /// Credentials on the request.
    Protected,
}

/// What `method path` needs (with `headers`, to tell the GraphiQL page from a query).
pub fn access(method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap) -> Access {
    let upgrade = headers
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    // A CORS preflight never carries credentials (the browser sends them, if allowed, with
    // the request that follows); the CORS layer behind the gate answers it.
    let preflight = method == Method::OPTIONS
        && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
    match path {
        _ if preflight => Access::Open,
        "/healthz" | "/readyz" | "/problems" | "/v1/auth/token" | "/v1/auth/revoke" => Access::Open,
        _ if path.starts_with("/problems/") => Access::Open,
        _ if path.starts_with("/grpc.health.v1.Health/") => Access::Open,
        _ if method == Method::POST && path.starts_with("/v1/webhooks/inbound/") => Access::Open,
        "/graphql" if method == Method::GET && query.is_none() && accepts_html(headers) => {
            Access::Open
        }
        // The workshop page and its assets; what the page calls is guarded as usual.
        "/" if method == Method::GET => Access::Open,
        _ if method == Method::GET && path.starts_with("/ui/") => Access::Open,
        "/v1/ws" | "/graphql/ws" if upgrade => Access::Deferrable,
        _ => Access::Protected,
    }
}

/// True for the GET endpoints a browser opens with `EventSource` or `WebSocket`, which cannot
/// set headers: they also take `?access_token=`.
fn takes_query_token(method: &Method, path: &str) -> bool {
    method == Method::GET
        && (matches!(
            path,
            "/v1/events" | "/v1/events/poll" | "/v1/ws" | "/graphql/ws"
        ) || (path.starts_with("/v1/orders/") && path.ends_with("/events")))
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The `access_token` or `ticket` (a stream ticket, `auth::tickets`) query parameter, if present.
fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "access_token" || name == "ticket")
        .map(|(_, value)| value.into_owned())
}

/// True for the probes, which are never limited.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz") || path.starts_with("/grpc.health.v1.Health/")
}

/// Middleware: authenticates and rate-limits the request, refusing it in its protocol's idiom
/// if it must.
pub async fn layer(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let refuse_now = |request: &Request, error: &ApiError| {
        tracing::info!(%path, problem = error.kind.slug, "refused: {}", error.detail);
        refuse(
            Idiom::of(&method, &path, request.headers()),
            error,
            request.extensions().get::<TraceId>(),
            request.headers(),
            HeaderMap::new(),
        )
    };
    if let Some(error) = gate.requests.oversized_field(request.headers()) {
        return refuse_now(&request, &error);
    }
    if is_probe(&path) {
        return next.run(request).await;
    }
    // A waiting long poll is not work: it counts against `push.max_streams` instead.
    let _handling = match path.as_str() {
        "/v1/events/poll" => None,
        _ => match gate.requests.enter() {
            Ok(handling) => Some(handling),
            Err(error) => return refuse_now(&request, &error),
        },
    };
    let query = request.uri().query().map(str::to_owned);
    let needs = access(&method, &path, query.as_deref(), request.headers());
    let caller = if needs == Access::Open {
        Ok(None)
    } else {
        let token = if takes_query_token(&method, &path) {
            query_token(query.as_deref())
        } else {
            None
        };
        gate.auth.authenticate(
            request.headers(),
            token.as_deref(),
            request.extensions().get::<ClientCertificate>(),
        )
    };

    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // A request with bad credentials is charged to its address, like one with none.
    let decision = gate.charge(caller.as_ref().ok().and_then(Option::as_ref), peer);
    let mut limit_headers = HeaderMap::new();
    decision.apply_to(&mut limit_headers);
    if !decision.allowed {
        tracing::info!(%path, policy = decision.policy.name(), "refused: rate limited");
        return refuse(
            Idiom::of(&method, &path, request.headers()),
            &rate_limited(&decision),
            request.extensions().get::<TraceId>(),
            request.headers(),
            limit_headers,
        );
    }

    let failure = match caller {
        Ok(Some(principal)) => {
            tracing::Span::current().record("principal", &*principal.name);
            request.extensions_mut().insert::<Principal>(principal);
            None
        }
        Ok(None) if needs != Access::Protected => None,
        Ok(None) => Some(AuthError::Missing),
        Err(error) => Some(error),
    };
    if let Some(failure) = failure {
        let mut extra = limit_headers;
        if let Ok(challenge) = HeaderValue::from_str(&failure.challenge()) {
            extra.insert(http::header::WWW_AUTHENTICATE, challenge);
        }
        tracing::info!(%path, reason = ?failure, "refused: not authenticated");
        return refuse(
            Idiom::of(&method, &path, request.headers()),
            &failure.to_api(),
            request.extensions().get::<TraceId>(),
            request.headers(),
            extra,
        );
    }
    let mut response = if gate.chaos.armed() {
        gate.chaos.run(request, next).await
    } else {
        next.run(request).await
    };
    response.headers_mut().extend(limit_headers);
    response
}

/// The error for a refused `decision`, the same on every protocol.
pub fn rate_limited(decision: &Decision) -> ApiError {
    let mut error = ApiError::new(
        &kind::RATE_LIMITED,
        format!(
            "too many requests: the '{}' policy allows {} per {} s; retry in {} s",
            decision.policy.name(),
            decision.limit,
            decision.window.as_secs().max(1),
            decision.retry_after_seconds().unwrap_or(1)
        ),
    );
    error.retry_after = decision.retry_after;
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_the_table_says() {
        let html = {
            let mut h = HeaderMap::new();
            h.insert(http::header::ACCEPT, HeaderValue::from_static("text/html"));
            h
        };
        let ws = {
            let mut h = HeaderMap::new();
            h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
            h
        };
        let none = HeaderMap::new();
        let cases = [
            (Method::GET, "/healthz", None, &none, Access::Open),
            (Method::GET, "/readyz", None, &none, Access::Open),
            (
                Method::GET,
                "/problems/not-found",
                None,
                &none,
                Access::Open,
            ),
            (Method::POST, "/v1/auth/token", None, &none, Access::Open),
            (
                Method::POST,
                "/v1/webhooks/inbound/demo",
                None,
                &none,
                Access::Open,
            ),
            (
                Method::GET,
                "/v1/webhooks/inbound",
                None,
                &none,
                Access::Protected,
            ),
            (Method::GET, "/graphql", None, &html, Access::Open),
            (Method::GET, "/", None, &none, Access::Open),
            (Method::GET, "/ui/app.js", None, &none, Access::Open),
            (Method::POST, "/", None, &none, Access::Protected),
            (
                Method::POST,
                "/v1/stream-tickets",
                None,
                &none,
                Access::Protected,
            ),
            (
                Method::GET,
                "/graphql",
                Some("query={a}"),
                &html,
                Access::Protected,
            ),
            (Method::POST, "/graphql", None, &none, Access::Protected),
            (Method::GET, "/v1/ws", None, &ws, Access::Deferrable),
            (Method::GET, "/v1/ws", None, &none, Access::Protected),
            (Method::GET, "/graphql/ws", None, &ws, Access::Deferrable),
            (Method::GET, "/v1/orders", None, &none, Access::Protected),
            (
                Method::POST,
                "/grpc.health.v1.Health/Check",
                None,
                &none,
                Access::Open,
            ),
            (
                Method::POST,
                "/polyport.orders.v1.Orders/GetOrder",
                None,
                &none,
                Access::Protected,
            ),
        ];
        for (method, path, query, headers, expected) in cases {
            assert_eq!(
                access(&method, path, query, headers),
                expected,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn only_browser_streams_take_a_query_token() {
        assert!(takes_query_token(&Method::GET, "/v1/events"));
        assert!(takes_query_token(&Method::GET, "/v1/orders/3/events"));
        assert!(takes_query_token(&Method::GET, "/graphql/ws"));
        assert!(!takes_query_token(&Method::GET, "/v1/orders"));
        assert!(!takes_query_token(&Method::POST, "/v1/events"));
        assert_eq!(
            query_token(Some("a=1&access_token=pp%2Bx")),
            Some("pp+x".into())
        );
        assert_eq!(query_token(Some("a=1")), None);
    }
}
