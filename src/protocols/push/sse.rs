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
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::Stream;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use tokio::time::{Instant, Sleep};

use super::{admit, filter, missed_json, query_params, seq};
use crate::domain::Principal;
use crate::domain::events::Event;
use crate::domain::feed::{self, FeedItem, Follower};
use crate::domain::model::OrderId;
use crate::gateway::ApiError;
use crate::gateway::auth::{Caller, Peer};
use crate::gateway::error::kind;
use crate::protocols::AppState;
use crate::protocols::state::StreamGuard;
use crate::wire::event_json;

/// `GET /v1/events`
pub async fn all_events(
    State(app): State<AppState>,
    Caller(who): Caller,
    Peer(peer): Peer,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = query_params(query, &["types", "customer_id", "last_event_id"])?;
    let customer = params.get("customer_id").map_or("", String::as_str);
    let filter = filter(params.get("types").map(String::as_str), "", customer)?;
    stream(
        app,
        who,
        peer,
        &headers,
        params.get("last_event_id"),
        filter,
    )
}

/// `GET /v1/orders/{id}/events`: 404 unless the order exists.
pub async fn order_events(
    State(app): State<AppState>,
    Caller(who): Caller,
    Peer(peer): Peer,
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
    stream(
        app,
        who,
        peer,
        &headers,
        params.get("last_event_id"),
        filter,
    )
}

fn stream(
    app: AppState,
    who: Principal,
    peer: Option<IpAddr>,
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
    let streaming = admit(&app, Some(&who), peer)?;
    // "From now on" is fixed before the first frame goes out, so an event written right after
    // the client sees that frame is never lost.
    let after = after.or_else(|| Some(app.core.events().last_seq()));

    let follower = Follower::new(Arc::clone(app.core.events()), who, after, filter);
    let hello = format!(
        "retry: {}\n: polyport event stream\n\n",
        app.config.push.sse_retry.as_millis()
    );
    let keepalive = app.config.push.sse_keepalive;
    let body = EventStream {
        hello: Some(Bytes::from(hello)),
        frames: Box::pin(frames(app, follower)),
        keepalive: Box::pin(tokio::time::sleep(keepalive)),
        interval: keepalive,
        last_sent: Instant::now(),
        _streaming: streaming,
    };
    let mut response = Response::new(Body::new(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell buffering proxies (nginx) to pass frames through as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The frames of one stream, pulled from its follower as the connection asks for them: no task
/// and no queue per subscriber, so an idle one costs its connection and this state only. Ends
/// at shutdown (how SSE says "going away": `EventSource` reconnects) and when the follower
/// does (its token expired).
fn frames(app: AppState, follower: Follower) -> impl Stream<Item = Bytes> + Send {
    let draining = app.draining.subscribe();
    let frames = futures_util::stream::unfold(
        (app, follower, draining),
        |(app, mut follower, mut draining)| async move {
            let item = tokio::select! {
                item = follower.next() => item?,
                _ = draining.wait_for(|d| *d) => return None,
            };
            let frame = match item {
                FeedItem::Event(event) => app.sse_frames.get(&event, frame),
                FeedItem::Missed {
                    requested_after,
                    resumed_after,
                } => Bytes::from(format!(
                    "id: {resumed_after}\nevent: reset\ndata: {}\n\n",
                    missed_json(requested_after, resumed_after)
                )),
            };
            Some((frame, (app, follower, draining)))
        },
    );
    // Ended for good once it has ended, however often it is asked again.
    futures_util::StreamExt::fuse(frames)
}

/// `event` as one SSE frame, the same bytes for every subscriber. Compact JSON has no line
/// breaks, so it is one `data:` line.
fn frame(event: &Event) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.seq,
        event.change.event_type(),
        event_json(event)
    ))
}

/// The keep-alive comment.
const PING: &[u8] = b": ping\n\n";

/// The response body of an event stream: the hello frame, then the follower's frames, with a
/// `: ping` comment whenever `interval` passes with nothing sent.
struct EventStream<S> {
    hello: Option<Bytes>,
    frames: Pin<Box<S>>,
    keepalive: Pin<Box<Sleep>>,
    interval: Duration,
    last_sent: Instant,
    _streaming: StreamGuard,
}

impl<S: Stream<Item = Bytes>> http_body::Body for EventStream<S> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some(hello) = this.hello.take() {
            return Poll::Ready(Some(Ok(Frame::data(hello))));
        }
        if let Poll::Ready(frame) = this.frames.as_mut().poll_next(cx) {
            // The timer is not moved per frame (that costs a timer-wheel update per delivery);
            // when it fires it looks at when the last frame went out.
            this.last_sent = Instant::now();
            return Poll::Ready(frame.map(|f| Ok(Frame::data(f))));
        }
        while this.keepalive.as_mut().poll(cx).is_ready() {
            let due = this.last_sent + this.interval;
            if Instant::now() >= due {
                this.last_sent = Instant::now();
                this.keepalive
                    .as_mut()
                    .reset(this.last_sent + this.interval);
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(PING)))));
            }
            this.keepalive.as_mut().reset(due);
        }
        Poll::Pending
    }
}
