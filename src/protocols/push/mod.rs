//! Server push over plain HTTP: Server-Sent Events, WebSocket and long polling, side by side.
//!
//! All three follow the one event log through `domain::feed` (as gRPC's WatchOrders does), so
//! a change made over any protocol reaches subscribers of every protocol with the same `seq`,
//! and all three resume the same way: "everything after seq N", with an explicit notice when
//! N is older than the log retains.
//!
//! ```text
//! GET /v1/events                 SSE: every order event     (?types=&customer_id=&last_event_id=)
//! GET /v1/orders/{id}/events     SSE: one order's events
//! GET /v1/events/poll            long polling               (?since=&timeout=&limit=&types=&customer_id=&order_id=)
//! GET /v1/ws                     WebSocket: JSON messages with an "op" field (see ws.rs)
//! ```

pub mod poll;
pub mod sse;
pub mod ws;

use std::net::IpAddr;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::domain::Principal;
use crate::domain::feed::EventFilter;
use crate::domain::{DomainError, FieldViolation};
use crate::gateway::ApiError;
use crate::gateway::error::kind;
use crate::gateway::shares::Full;
use crate::protocols::state::{AppState, StreamGuard};

/// The push routes, to be nested under `/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(sse::all_events))
        .route("/orders/{id}/events", get(sse::order_events))
        .route("/events/poll", get(poll::poll))
        .route("/ws", get(ws::upgrade))
}

/// The notice that events were lost to this client: re-read state, then carry on.
pub fn missed_json(requested_after: u64, resumed_after: u64) -> Value {
    json!({ "requested_after": requested_after, "resumed_after": resumed_after })
}

/// Takes a place for a new stream of `who` (or of the client at `peer`, keyed like the rate
/// limit), or refuses it when the server holds `push.max_streams` or this caller its share,
/// `push.max_streams_per_caller` (503, retry later). The stream holds the guard for as long as
/// it runs.
pub fn admit(
    app: &AppState,
    who: Option<&Principal>,
    peer: Option<IpAddr>,
) -> Result<StreamGuard, ApiError> {
    let push = &app.config.push;
    let caller = app.gate.caller(who, peer);
    app.streams
        .take(caller)
        .map_err(|full| {
            let detail = match full {
                Full::All => format!(
                    "the server holds its maximum of {} streams; retry later",
                    push.max_streams
                ),
                Full::Key => format!(
                    "this caller holds its share of {} streams (push.max_streams_per_caller); close one or retry later",
                    push.max_streams_per_caller
                ),
            };
            let mut error = ApiError::new(&kind::UNAVAILABLE, detail);
            error.retry_after = Some(std::time::Duration::from_secs(1));
            error
        })
}

/// Parses the filter parameters shared by the push endpoints.
pub fn filter(
    types: Option<&str>,
    order_id: &str,
    customer_id: &str,
) -> Result<EventFilter, ApiError> {
    let types: Vec<&str> = types
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    EventFilter::parse(types, order_id, customer_id, "types").map_err(ApiError::invalid)
}

/// Parses a seq given by a client (`Last-Event-ID`, `since`, `after_seq`).
pub fn seq(raw: &str, field: &str) -> Result<u64, ApiError> {
    raw.trim().parse().map_err(|_| {
        FieldViolation::new(field, "must be an event seq (a non-negative integer)").into()
    })
}

/// Splits query pairs into known parameters, refusing unknown and repeated ones.
pub fn query_params(
    pairs: Vec<(String, String)>,
    known: &[&str],
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let mut seen = std::collections::BTreeMap::new();
    let mut violations = Vec::new();
    for (name, value) in pairs {
        if name == "access_token" || name == "ticket" {
            // A credential, read by the gate (browsers' EventSource cannot set headers).
            continue;
        }
        if !known.contains(&name.as_str()) {
            violations.push(FieldViolation::new(
                name,
                format!(
                    "unknown parameter; this endpoint takes {}",
                    known.join(", ")
                ),
            ));
        } else if seen.insert(name.clone(), value).is_some() {
            violations.push(FieldViolation::new(name, "given more than once"));
        }
    }
    if violations.is_empty() {
        Ok(seen)
    } else {
        Err(DomainError::Invalid(violations).into())
    }
}
