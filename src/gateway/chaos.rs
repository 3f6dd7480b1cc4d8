//! Chaos knobs for teaching: latency, errors and dropped streams injected on purpose, so a room
//! can watch retries, deadlines, idempotent replays and stream resumption do their work.
//!
//! Off by default. Rules come from `[chaos]` in the configuration or from the REST API
//! (`GET`, `PUT` and `DELETE /v1/chaos`, admins only); every change is logged with who made it.
//! A rule matches by protocol, path prefix and a request header, and then delays the request,
//! answers it with a row of the error table (in the protocol's own idiom, with a trace id, so
//! the same injected fault looks the same on REST, gRPC and GraphQL as a real one would), or
//! ends its streaming response after a while.
//!
//! Cost when off: the gate reads one relaxed atomic (`Chaos::armed`) per request, nothing
//! else. The chaos API, the probes and the workshop page are never touched, so a knob can
//! always be turned off again. WebSocket sessions are not dropped: an upgraded connection has
//! no response body to cut (an error rule refuses the upgrade itself).
//!
//! A teaching shortcut: production fault injection (a service mesh's, say) also samples a
//! percentage of requests; here a rule applies to every request it matches.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderMap;
use http_body::Frame;
use serde::Serialize;

use crate::config::{ChaosConfig, ChaosRule};
use crate::domain::access::Action;
use crate::domain::{FieldViolation, Principal};
use crate::gateway::ApiError;
use crate::gateway::auth::Caller;
use crate::gateway::error::ProblemKind;
use crate::gateway::error::kind;
use crate::gateway::error::kind::ALL as KINDS;
use crate::gateway::refusal::{Idiom, refuse};
use crate::gateway::trace::TraceId;

/// The protocols a rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// REST under `/v1` (and anything else over plain HTTP).
    Rest,
    /// gRPC and gRPC-Web.
    Grpc,
    /// GraphQL over HTTP.
    Graphql,
    /// Server-Sent Events.
    Sse,
    /// `/v1/ws` and `/graphql/ws`.
    Websocket,
    /// `/v1/events/poll`.
    LongPoll,
}

impl Protocol {
    const NAMES: [(&'static str, Protocol); 6] = [
        ("rest", Protocol::Rest),
        ("grpc", Protocol::Grpc),
        ("graphql", Protocol::Graphql),
        ("sse", Protocol::Sse),
        ("websocket", Protocol::Websocket),
        ("long_poll", Protocol::LongPoll),
    ];

    /// The protocol of a request, from its path and content type.
    fn of(path: &str, headers: &HeaderMap) -> Self {
        let grpc = headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        match path {
            _ if grpc => Protocol::Grpc,
            "/graphql" => Protocol::Graphql,
            "/v1/ws" | "/graphql/ws" => Protocol::Websocket,
            "/v1/events/poll" => Protocol::LongPoll,
            "/v1/events" => Protocol::Sse,
            _ if path.starts_with("/v1/orders/") && path.ends_with("/events") => Protocol::Sse,
            _ => Protocol::Rest,
        }
    }
}

/// A rule, parsed: what it matches and what it does.
#[derive(Debug)]
struct Rule {
    protocols: Vec<Protocol>,
    path_prefix: String,
    header: Option<(http::HeaderName, Option<String>)>,
    latency: Duration,
    error: Option<&'static ProblemKind>,
    drop_after: Option<Duration>,
}

impl Rule {
    /// Parses rule `i` of a list, or says which field is wrong.
    fn parse(i: usize, rule: &ChaosRule) -> Result<Self, FieldViolation> {
        let field = |name: &str| format!("rules[{i}].{name}");
        let protocols = rule
            .protocols
            .iter()
            .map(|name| {
                Protocol::NAMES
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, p)| *p)
                    .ok_or_else(|| {
                        FieldViolation::new(
                            field("protocols"),
                            format!(
                                "unknown protocol '{name}'; one of rest, grpc, graphql, sse, websocket, long_poll"
                            ),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let header = match rule.header.trim() {
            "" => None,
            spec => {
                let (name, value) = match spec.split_once('=') {
                    Some((name, value)) => (name, Some(value.trim().to_owned())),
                    None => (spec, None),
                };
                let name = http::HeaderName::try_from(name.trim()).map_err(|_| {
                    FieldViolation::new(field("header"), "must be a header name, or name=value")
                })?;
                Some((name, value))
            }
        };
        let error = match rule.error.trim() {
            "" => None,
            slug => Some(*KINDS.iter().find(|k| k.slug == slug).ok_or_else(|| {
                FieldViolation::new(
                    field("error"),
                    format!("no row '{slug}' in the error table (GET /problems lists them)"),
                )
            })?),
        };
        let parsed = Rule {
            protocols,
            path_prefix: rule.path_prefix.trim().to_owned(),
            header,
            latency: Duration::from_millis(rule.latency_ms),
            error,
            drop_after: (rule.drop_after_ms > 0).then(|| Duration::from_millis(rule.drop_after_ms)),
        };
        if parsed.latency.is_zero() && parsed.error.is_none() && parsed.drop_after.is_none() {
            return Err(FieldViolation::new(
                field("latency_ms"),
                "a rule must do something: latency_ms, error or drop_after_ms",
            ));
        }
        Ok(parsed)
    }

    fn matches(&self, protocol: Protocol, path: &str, headers: &HeaderMap) -> bool {
        (self.protocols.is_empty() || self.protocols.contains(&protocol))
            && path.starts_with(&self.path_prefix)
            && self.header.as_ref().is_none_or(|(name, value)| {
                headers.get(name).is_some_and(|v| {
                    value
                        .as_deref()
                        .is_none_or(|want| v.to_str().is_ok_and(|v| v.trim() == want))
                })
            })
    }
}

/// The knobs: the rules in force, and whether there are any.
#[derive(Debug, Default)]
pub struct Chaos {
    /// True while there are rules: the one thing the gate reads when chaos is off.
    armed: AtomicBool,
    rules: RwLock<(Vec<ChaosRule>, Vec<Rule>)>,
}

impl Chaos {
    /// The knobs `config` sets (none by default), or which rule is wrong.
    pub fn from_config(config: &ChaosConfig) -> Result<Self, String> {
        let chaos = Chaos::default();
        chaos
            .set(config.rules.clone(), "configuration")
            .map_err(|v| format!("chaos.{}: {}", v.field, v.message))?;
        Ok(chaos)
    }

    /// True when any rule is in force. A relaxed load: a request that races a change sees the
    /// old or the new rules, either of which is fine.
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// Replaces the rules (an empty list turns chaos off), logging the change and `by` whom.
    fn set(&self, rules: Vec<ChaosRule>, by: &str) -> Result<(), FieldViolation> {
        let parsed = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| Rule::parse(i, rule))
            .collect::<Result<Vec<_>, _>>()?;
        let mut held = self.rules.write().unwrap_or_else(|e| e.into_inner());
        if rules.is_empty() {
            if !held.0.is_empty() {
                tracing::warn!(by, "chaos: off, no faults injected");
            }
        } else {
            let text = serde_json::to_string(&rules).unwrap_or_default();
            tracing::warn!(by, rules = %text, "chaos: ON, faults are being injected");
        }
        self.armed.store(!rules.is_empty(), Ordering::Relaxed);
        *held = (rules, parsed);
        Ok(())
    }

    fn snapshot(&self) -> Vec<ChaosRule> {
        self.rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Runs `request` through the first rule that matches it (the gate calls this only while
    /// [`Chaos::armed`]).
    pub async fn run(&self, request: Request, next: Next) -> Response {
        let path = request.uri().path();
        if exempt(path) {
            return next.run(request).await;
        }
        let protocol = Protocol::of(path, request.headers());
        let effect = {
            let held = self.rules.read().unwrap_or_else(|e| e.into_inner());
            held.1
                .iter()
                .position(|rule| rule.matches(protocol, path, request.headers()))
                .map(|at| {
                    let rule = &held.1[at];
                    (at, rule.latency, rule.error, rule.drop_after)
                })
        };
        let Some((at, latency, error, drop_after)) = effect else {
            return next.run(request).await;
        };
        tracing::info!(rule = at, path, ?protocol, "chaos: injecting");
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(row) = error {
            let error = ApiError::new(row, format!("injected by chaos rule {at} (GET /v1/chaos)"));
            return refuse(
                Idiom::of(request.method(), request.uri().path(), request.headers()),
                &error,
                request.extensions().get::<TraceId>(),
                request.headers(),
                HeaderMap::new(),
            );
        }
        let response = next.run(request).await;
        match drop_after {
            Some(after) => response.map(|body| Body::new(Dropped::new(body, after))),
            None => response,
        }
    }
}

/// What chaos never touches: its own API (so it can be turned off), the probes and the page.
fn exempt(path: &str) -> bool {
    path == "/v1/chaos"
        || path == "/"
        || path.starts_with("/ui/")
        || matches!(path, "/healthz" | "/readyz")
        || path.starts_with("/grpc.health.v1.Health/")
}

/// A response body that ends, as if the connection dropped, `after` its first poll.
struct Dropped {
    body: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Dropped {
    fn new(body: Body, after: Duration) -> Self {
        Self {
            body,
            deadline: Box::pin(tokio::time::sleep(after)),
        }
    }
}

impl http_body::Body for Dropped {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new("dropped by a chaos rule"))));
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }
}

/// `GET`, `PUT` and `DELETE /v1/chaos`, for admins.
pub fn routes(chaos: Arc<Chaos>) -> Router {
    Router::new()
        .route("/v1/chaos", get(read).put(replace).delete(clear))
        .with_state(chaos)
}

#[derive(Serialize)]
struct Knobs {
    rules: Vec<ChaosRule>,
}

fn admin(who: &Principal) -> Result<(), ApiError> {
    who.may(Action::ConfigureChaos).map_err(ApiError::from)
}

async fn read(State(chaos): State<Arc<Chaos>>, Caller(who): Caller) -> Result<Response, ApiError> {
    admin(&who)?;
    Ok(axum::Json(Knobs {
        rules: chaos.snapshot(),
    })
    .into_response())
}

async fn replace(
    State(chaos): State<Arc<Chaos>>,
    Caller(who): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin(&who)?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        rules: Vec<ChaosRule>,
    }
    let body: Body = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            &kind::MALFORMED_BODY,
            format!("expected {{\"rules\": [...]}}: {e}"),
        )
    })?;
    chaos
        .set(body.rules, &who.name)
        .map_err(|v| ApiError::invalid(vec![v]))?;
    read(State(chaos), Caller(who)).await
}

async fn clear(State(chaos): State<Arc<Chaos>>, Caller(who): Caller) -> Result<Response, ApiError> {
    admin(&who)?;
    chaos
        .set(Vec::new(), &who.name)
        .map_err(|v| ApiError::invalid(vec![v]))?;
    Ok(http::StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(f: impl FnOnce(&mut ChaosRule)) -> ChaosRule {
        let mut rule = ChaosRule {
            error: "unavailable".into(),
            ..ChaosRule::default()
        };
        f(&mut rule);
        rule
    }

    #[test]
    fn a_rule_matches_by_protocol_path_and_header() {
        let parsed = Rule::parse(
            0,
            &rule(|r| {
                r.protocols = vec!["rest".into(), "grpc".into()];
                r.path_prefix = "/v1/orders".into();
                r.header = "x-chaos=on".into();
            }),
        )
        .unwrap();
        let mut on = HeaderMap::new();
        on.insert("x-chaos", "on".parse().unwrap());
        let mut off = HeaderMap::new();
        off.insert("x-chaos", "off".parse().unwrap());
        assert!(parsed.matches(Protocol::Rest, "/v1/orders/1", &on));
        assert!(!parsed.matches(Protocol::Rest, "/v1/orders/1", &off));
        assert!(!parsed.matches(Protocol::Rest, "/v1/customers", &on));
        assert!(!parsed.matches(Protocol::Graphql, "/v1/orders", &on));
        let everything = Rule::parse(0, &rule(|_| {})).unwrap();
        assert!(everything.matches(Protocol::Sse, "/v1/events", &HeaderMap::new()));
    }

    #[test]
    fn a_rule_that_names_nothing_known_or_does_nothing_is_refused() {
        for (bad, field) in [
            (
                rule(|r| r.protocols = vec!["smtp".into()]),
                "rules[0].protocols",
            ),
            (rule(|r| r.error = "no-such-row".into()), "rules[0].error"),
            (rule(|r| r.header = "bad header".into()), "rules[0].header"),
            (rule(|r| r.error = String::new()), "rules[0].latency_ms"),
        ] {
            assert_eq!(Rule::parse(0, &bad).unwrap_err().field, field, "{bad:?}");
        }
    }

    #[test]
    fn chaos_is_armed_exactly_while_there_are_rules() {
        let chaos = Chaos::from_config(&ChaosConfig::default()).unwrap();
        assert!(!chaos.armed());
        chaos.set(vec![rule(|_| {})], "test").unwrap();
        assert!(chaos.armed());
        assert!(
            chaos
                .set(vec![rule(|r| r.error = "nope".into())], "test")
                .is_err()
        );
        assert!(
            chaos.armed(),
            "a refused change leaves the rules as they were"
        );
        chaos.set(Vec::new(), "test").unwrap();
        assert!(!chaos.armed());
    }

    #[test]
    fn requests_are_told_apart_by_protocol() {
        let mut grpc = HeaderMap::new();
        grpc.insert(
            http::header::CONTENT_TYPE,
            "application/grpc-web+proto".parse().unwrap(),
        );
        let none = HeaderMap::new();
        for (path, headers, expected) in [
            ("/polyport.orders.v1.Orders/GetOrder", &grpc, Protocol::Grpc),
            ("/graphql", &none, Protocol::Graphql),
            ("/graphql/ws", &none, Protocol::Websocket),
            ("/v1/events/poll", &none, Protocol::LongPoll),
            ("/v1/orders/3/events", &none, Protocol::Sse),
            ("/v1/orders/3", &none, Protocol::Rest),
        ] {
            assert_eq!(Protocol::of(path, headers), expected, "{path}");
        }
    }
}
