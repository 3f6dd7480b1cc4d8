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

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::domain::events::Event;
use crate::domain::feed::EventFilter;
use crate::domain::{DomainError, FieldViolation};
use crate::gateway::ApiError;
use crate::gateway::error::kind;
use crate::protocols::state::{AppState, StreamGuard};
use crate::wire::event_json;

/// The push routes, to be nested under `/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(sse::all_events))
        .route("/orders/{id}/events", get(sse::order_events))
        .route("/events/poll", get(poll::poll))
        .route("/ws", get(ws::upgrade))
}

/// The JSON text of the most recent events, rendered once and shared by every subscriber that
/// sends it as it is (SSE's `data:`): with 10 000 subscribers an event is serialized once, not
/// 10 000 times (serializing was most of the server's cost per delivery, see BENCHMARKS.md).
/// Bounded: it keeps the last few events only; an older one (a replay) is rendered again.
#[derive(Debug)]
pub struct RenderedEvents {
    recent: std::sync::Mutex<std::collections::VecDeque<(u64, std::sync::Arc<str>)>>,
}

impl RenderedEvents {
    /// How many events are kept rendered.
    pub const KEEP: usize = 64;

    /// An empty cache.
    pub fn new() -> Self {
        Self {
            recent: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(Self::KEEP)),
        }
    }

    /// `event` as [`event_json`] text, rendered at most once while it is recent.
    pub fn text(&self, event: &Event) -> std::sync::Arc<str> {
        let cached = |recent: &std::collections::VecDeque<(u64, std::sync::Arc<str>)>| {
            recent
                .iter()
                .rev()
                .find(|(seq, _)| *seq == event.seq)
                .map(|(_, text)| std::sync::Arc::clone(text))
        };
        // A poisoned lock only means another subscriber panicked mid-push: the data is fine.
        let lock = || self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(text) = cached(&lock()) {
            return text;
        }
        let text: std::sync::Arc<str> = event_json(event).to_string().into();
        let mut recent = lock();
        if let Some(raced) = cached(&recent) {
            return raced;
        }
        if recent.len() == Self::KEEP {
            recent.pop_front();
        }
        recent.push_back((event.seq, std::sync::Arc::clone(&text)));
        text
    }
}

impl Default for RenderedEvents {
    fn default() -> Self {
        Self::new()
    }
}

/// The notice that events were lost to this client: re-read state, then carry on.
pub fn missed_json(requested_after: u64, resumed_after: u64) -> Value {
    json!({ "requested_after": requested_after, "resumed_after": resumed_after })
}

/// Takes a place for a new stream, or refuses it when the configured maximum is reached (503,
/// retry later). The stream holds the guard for as long as it runs.
pub fn admit(app: &AppState) -> Result<StreamGuard, ApiError> {
    app.streams
        .try_enter(app.config.push.max_streams)
        .ok_or_else(|| {
            ApiError::new(
                &kind::UNAVAILABLE,
                format!(
                    "the server holds its maximum of {} streams; retry later",
                    app.config.push.max_streams
                ),
            )
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
        if name == "access_token" {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::domain::events::Change;
    use crate::domain::model::{CustomerId, Order, OrderId, OrderStatus};

    fn event(seq: u64) -> Event {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        Event {
            seq,
            occurred_at: now,
            order_id: OrderId(1),
            change: Change::Created,
            order: Order {
                id: OrderId(1),
                customer_id: CustomerId(1),
                status: OrderStatus::Pending,
                items: Vec::new(),
                currency: "USD".into(),
                created_at: now,
                updated_at: now,
                version: 1,
                cancellation: None,
                next_item_id: 1,
            },
        }
    }

    #[test]
    fn an_event_is_rendered_once_and_shared_and_old_ones_are_forgotten() {
        let rendered = RenderedEvents::new();
        let first = rendered.text(&event(1));
        assert_eq!(*first, event_json(&event(1)).to_string());
        assert!(Arc::ptr_eq(&first, &rendered.text(&event(1))), "shared");
        for seq in 2..=(RenderedEvents::KEEP as u64 + 1) {
            rendered.text(&event(seq));
        }
        let again = rendered.text(&event(1));
        assert!(
            !Arc::ptr_eq(&first, &again),
            "seq 1 was evicted and rendered anew"
        );
        assert_eq!(first, again);
    }
}
