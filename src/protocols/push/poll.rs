//! Long polling: `GET /v1/events/poll?since=<seq>&timeout=30s`.
//!
//! If events after `since` are retained, they come back at once (up to `limit`). Otherwise the
//! request is held until one arrives (answered at once) or the timeout passes (200 with an empty
//! list). Either way the client polls again with `since=<next_since>`, so it never misses or
//! repeats an event; if `since` is older than the log retains, the answer says so in `reset`.
//!
//! ```json
//! {"events": [...], "next_since": 42, "reset": {"requested_after": 3, "resumed_after": 17}}
//! ```

use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CACHE_CONTROL;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{admit, filter, missed_json, query_params, seq};
use crate::domain::FieldViolation;
use crate::gateway::ApiError;
use crate::gateway::auth::{Caller, Peer};
use crate::protocols::AppState;
use crate::wire::event_json;

/// `GET /v1/events/poll`
pub async fn poll(
    State(app): State<AppState>,
    Caller(who): Caller,
    Peer(peer): Peer,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = query_params(
        query,
        &[
            "since",
            "timeout",
            "limit",
            "types",
            "order_id",
            "customer_id",
        ],
    )?;
    let push = &app.config.push;
    let since = params
        .get("since")
        .map(|raw| seq(raw, "since"))
        .transpose()?
        .unwrap_or(0);
    let timeout = match params.get("timeout") {
        Some(raw) => parse_timeout(raw)?.min(push.long_poll_max_timeout),
        None => push.long_poll_timeout,
    };
    let limit = match params.get("limit") {
        Some(raw) => crate::domain::pagination::Limit::parse(raw, push.long_poll_max_events)?.get(),
        None => push.long_poll_max_events,
    };
    let filter = filter(
        params.get("types").map(String::as_str),
        params.get("order_id").map_or("", String::as_str),
        params.get("customer_id").map_or("", String::as_str),
    )?;
    let _streaming = admit(&app, Some(&who), peer)?;
    let deadline = tokio::time::Instant::now() + timeout;

    let log = app.core.events();
    let subscription = log.subscribe(Some(since));
    let mut events: Vec<Value> = Vec::new();
    // The last seq looked at (matching or not): the next poll starts after it.
    let mut next_since = since;
    let mut reset = subscription
        .missed
        .map(|m| missed_json(m.requested_after, m.oldest_retained - 1));
    if since > subscription.position {
        // A seq from the future: the log restarted (it is in memory). Say where it is now.
        reset = Some(missed_json(since, subscription.position));
        next_since = subscription.position;
    }
    for event in &subscription.replay {
        if events.len() == limit {
            break;
        }
        next_since = event.seq;
        if filter.matches(&who, event) {
            events.push(event_json(event));
        }
    }
    if events.is_empty() && reset.is_none() {
        // Nothing yet: hold the request until a matching event, the timeout, or shutdown.
        let mut live = subscription.live;
        next_since = subscription.position;
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) if event.seq <= next_since => {}
                    Ok(event) => {
                        next_since = event.seq;
                        if filter.matches(&who, &event) {
                            events.push(event_json(&event));
                            // Take whatever else has already arrived, up to the limit.
                            while events.len() < limit {
                                match live.try_recv() {
                                    Ok(more) if more.seq > next_since => {
                                        next_since = more.seq;
                                        if filter.matches(&who, &more) {
                                            events.push(event_json(&more));
                                        }
                                    }
                                    Ok(_) => {}
                                    Err(_) => break,
                                }
                            }
                            break;
                        }
                    }
                    // Fell behind while waiting: answer now; the next poll replays from the log.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
                () = app.drained() => break,
            }
        }
    }
    let mut body = json!({ "events": events, "next_since": next_since });
    if let Some(reset) = reset {
        body["reset"] = reset;
    }
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `30s`, `1m`, `500ms`, or plain seconds (`30`).
fn parse_timeout(raw: &str) -> Result<Duration, ApiError> {
    let raw = raw.trim();
    raw.parse::<u64>()
        .map(Duration::from_secs)
        .or_else(|_| humantime::parse_duration(raw))
        .map_err(|_| {
            FieldViolation::new(
                "timeout",
                "must be a duration like 30s or 500ms, or plain seconds",
            )
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_take_units_or_plain_seconds() {
        assert_eq!(parse_timeout("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("-1").is_err());
    }
}
