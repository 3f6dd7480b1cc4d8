//! Server-Sent Events: `GET /v1/events` and `GET /v1/orders/{id}/events`.
//!
//! Each frame is `id: <seq>`, `event: <type>`, `data: <json>`. The first frame carries a
//! `retry:` hint; a `: ping` comment follows every `push.sse_keepalive` of silence so proxies
//! keep the stream open. To resume, a client sends `Last-Event-ID` (browsers' `EventSource` does
//! it by itself on reconnect) or `?last_event_id=` (the header wins): every retained event after
//! that seq is replayed, then live ones follow, with no gap and no duplicate. If that seq is older
//! than the log retains, an `event: reset` frame says which seqs were lost, and carries the seq
//! the stream resumed after as its `id`. Without either, the stream starts with new events.
//! At shutdown the stream ends; the client reconnects elsewhere with its last id.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use http::header::ACCEPT;
use http::{HeaderMap, HeaderValue};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{admit, filter, missed_json, query_params, seq};
use crate::domain::Principal;
use crate::domain::feed::{self, FeedItem};
use crate::domain::model::OrderId;
use crate::gateway::ApiError;
use crate::gateway::auth::Caller;
use crate::gateway::error::kind;
use crate::protocols::AppState;

/// Frames queued for a slow reader before the follower waits for it.
const BUFFER: usize = 64;

/// `GET /v1/events`
pub async fn all_events(
    State(app): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = query_params(query, &["types", "customer_id", "last_event_id"])?;
    let customer = params.get("customer_id").map_or("", String::as_str);
    let filter = filter(params.get("types").map(String::as_str), "", customer)?;
    stream(app, who, &headers, params.get("last_event_id"), filter)
}

/// `GET /v1/orders/{id}/events`: 404 unless the order exists.
pub async fn order_events(
    State(app): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let order = app.core.order(&who, OrderId::parse(&id)?)?;
    let params = query_params(query, &["types", "last_event_id"])?;
    let filter = filter(
        params.get("types").map(String::as_str),
        &order.id.to_string(),
        "",
    )?;
    stream(app, who, &headers, params.get("last_event_id"), filter)
}

fn stream(
    app: AppState,
    who: Principal,
    headers: &HeaderMap,
    query_last_id: Option<&String>,
    filter: feed::EventFilter,
) -> Result<Response, ApiError> {
    let accepts = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .collect::<Vec<_>>();
    if !accepts.is_empty()
        && !accepts
            .iter()
            .any(|t| t == "text/event-stream" || t == "text/*" || t == "*/*")
    {
        return Err(ApiError::new(
            &kind::NOT_ACCEPTABLE,
            "this endpoint sends text/event-stream; send Accept: text/event-stream",
        ));
    }
    // The header wins over the query parameter.
    let after = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(raw) => Some(seq(raw, "Last-Event-ID")?),
        None => query_last_id
            .map(|raw| seq(raw, "last_event_id"))
            .transpose()?,
    };
    let streaming = admit(&app)?;
    // "From now on" is fixed before the first frame goes out, so an event written right after
    // the client sees that frame is never lost.
    let after = after.or_else(|| Some(app.core.events().last_seq()));

    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(BUFFER);
    let retry = app.config.push.sse_retry;
    let keepalive = KeepAlive::new()
        .interval(app.config.push.sse_keepalive)
        .text("ping");
    tokio::spawn(async move {
        let _streaming = streaming;
        let hello = SseEvent::default()
            .retry(retry)
            .comment("polyport event stream");
        if tx.send(Ok(hello)).await.is_err() {
            return;
        }
        let follow = feed::follow(app.core.events(), &who, after, &filter, |item| {
            let frame = match item {
                FeedItem::Event(event) => SseEvent::default()
                    .id(event.seq.to_string())
                    .event(event.change.event_type())
                    .data(&*app.rendered_events.text(&event)),
                FeedItem::Missed {
                    requested_after,
                    resumed_after,
                } => SseEvent::default()
                    .id(resumed_after.to_string())
                    .event("reset")
                    .data(missed_json(requested_after, resumed_after).to_string()),
            };
            let tx = &tx;
            async move { tx.send(Ok(frame)).await.is_ok() }
        });
        tokio::select! {
            () = follow => {}
            () = tx.closed() => {}
            // Ending the stream is how SSE says "going away"; EventSource reconnects.
            () = app.drained() => {}
        }
    });

    let mut response = Sse::new(ReceiverStream::new(rx))
        .keep_alive(keepalive)
        .into_response();
    // Tell buffering proxies (nginx) to pass frames through as they come.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
