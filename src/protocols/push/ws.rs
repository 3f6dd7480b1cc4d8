//! WebSocket: `GET /v1/ws`, a small JSON protocol in which every message, both ways, is one
//! JSON object with an `op` field.
//!
//! Client to server:
//! ```text
//! {"op":"auth","token":"<API key or access token>"}   first, unless the upgrade request had credentials
//! {"op":"subscribe","id":"s1","topic":"orders","filter":{"types":[...],"order_id":"7","customer_id":"2"},"after_seq":N}
//! {"op":"unsubscribe","id":"s1"}
//! {"op":"ping","id":"p1"}
//! {"op":"create_order","id":"c1","customer_id":"7","items":[{"product_id":"3","quantity":1}]}
//! {"op":"cancel_order","id":"c2","order_id":"12","reason":"..."}
//! {"op":"get_order","id":"c3","order_id":"12"}
//! ```
//! Server to client:
//! ```text
//! {"op":"result","id":"c1","order":{...}}               a command's answer
//! {"op":"result","id":"s1","subscribed":{"last_seq":N}}  a subscription started
//! {"op":"event","subscription":"s1","seq":N,"type":"order.created",...}
//! {"op":"reset","subscription":"s1","requested_after":N,"resumed_after":M}   events lost to it
//! {"op":"error","id":"c1","type":"/problems/...","status":400,"detail":"...","errors":[...]}
//! {"op":"pong","id":"p1"}
//! ```
//! `after_seq` resumes a subscription exactly as SSE's Last-Event-ID does (replay, then live;
//! `reset` when too old); without it the subscription starts with new events.
//!
//! A client whose upgrade request carried no credentials (browsers cannot set headers) must
//! send `auth` as its first message within `auth.first_message_timeout`; anything else, a bad
//! token or silence closes the connection with 4401. A command the caller's role does not allow
//! gets an `error` message (403, `forbidden`) and the connection stays open.
//!
//! Messages count against the caller's rate limit like requests do: the first one over the
//! limit gets an `error` message (429, `rate-limited`, with `retry_after`); another one before
//! the quota has room again closes the connection with 4429.
//!
//! A session authenticated with an access token ends (4401) the moment the token expires or
//! is revoked (`POST /v1/auth/revoke`), whatever it is doing.
//!
//! Close codes: 4401 not authenticated; 4429 rate limited; 1001 the server is shutting down; 1009 a message over
//! `push.ws_max_message_bytes`; 4000 no sign of life from the client for `push.ws_idle_timeout`
//! (the server pings every `push.ws_ping_interval`, and browsers answer pings by themselves);
//! 4008 slow consumer: the client's queue of `push.ws_queue` messages stayed full for
//! `push.ws_send_timeout` (a replay or a burst may fill it; only a client that stops reading
//! keeps it full). The queue is
//! per connection, so one slow client never holds up anyone else. A malformed message gets an
//! `error` message and the connection stays open.

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_stream::StreamMap;

use super::{admit, missed_json};
use crate::domain::feed::{EventFilter, FeedItem, Follower};
use crate::domain::model::OrderId;
use crate::domain::{FieldViolation, Lapse, NewOrder, Principal};
use crate::gateway::ApiError;
use crate::gateway::auth::Peer;
use crate::gateway::error::problem::problem_body;
use crate::gateway::gate::rate_limited;
use crate::gateway::trace::TraceId;
use crate::protocols::rest::body::from_value;
use crate::protocols::rest::v1::dto::NewItemV1;
use crate::protocols::state::{AppState, StreamGuard};
use crate::wire::OrderV1;
use crate::wire::event_json;

/// Close code: no valid credentials (in the upgrade request or the first message).
pub const CLOSE_UNAUTHENTICATED: u16 = 4401;
/// Close code: the client kept sending after being told it was over its rate limit.
pub const CLOSE_RATE_LIMITED: u16 = 4429;
/// Close code: no sign of life from the client.
pub const CLOSE_IDLE: u16 = 4000;
/// Close code: the client reads too slowly; its queue overflowed.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// The most subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 32;

/// `GET /v1/ws`: upgrades to a WebSocket session.
pub async fn upgrade(
    State(app): State<AppState>,
    Extension(trace_id): Extension<TraceId>,
    who: Option<Extension<Principal>>,
    Peer(peer): Peer,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let who = who.map(|Extension(who)| who);
    let streaming = admit(&app, who.as_ref(), peer)?;
    let push = &app.config.push;
    let max = push.ws_max_message_bytes;
    // Buffer sizes decide what an idle connection costs (see push.ws_read_buffer_bytes).
    let (read_buffer, write_buffer) = (push.ws_read_buffer_bytes, push.ws_write_buffer_bytes);
    Ok(upgrade
        .read_buffer_size(read_buffer)
        .write_buffer_size(write_buffer)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| Session::run(app, (who, peer), trace_id, streaming, socket)))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    Auth {
        #[serde(default)]
        id: Option<String>,
        token: String,
    },
    Subscribe {
        id: String,
        #[serde(default)]
        topic: Option<String>,
        #[serde(default)]
        filter: FilterV1,
        #[serde(default)]
        after_seq: Option<u64>,
    },
    Unsubscribe {
        id: String,
    },
    Ping {
        #[serde(default)]
        id: Option<String>,
    },
    CreateOrder {
        id: String,
        customer_id: String,
        items: Vec<NewItemV1>,
    },
    CancelOrder {
        id: String,
        order_id: String,
        #[serde(default)]
        reason: Option<String>,
    },
    GetOrder {
        id: String,
        order_id: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterV1 {
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    customer_id: Option<String>,
}

struct Session {
    app: AppState,
    /// The caller; `None` until an `auth` message when the upgrade carried no credentials.
    who: Option<Principal>,
    /// The client's address: the rate limiter's key when authentication is off.
    peer: Option<IpAddr>,
    /// Set by a command that ends the session (a failed `auth`): the close code and reason.
    closing: Option<(u16, String)>,
    /// The last message was refused by the rate limiter (the next refusal closes).
    limited: bool,
    trace_id: TraceId,
    /// Everything this client is sent waits here, oldest first, until its socket takes it.
    /// Bounded by `push.ws_queue`: while it is full the subscriptions are not read (their
    /// events wait in the log), and a client that keeps it full is closed, instead of growing
    /// it or blocking anyone else.
    outbox: VecDeque<Message>,
    /// The subscriptions by id, each the client's place in the event log. They are polled by
    /// the session itself: no task and no queue per subscription.
    subscriptions: StreamMap<String, Subscription>,
}

/// One subscription's items, pulled from its follower.
type Subscription = Pin<Box<dyn Stream<Item = FeedItem> + Send>>;

/// How long a closing session waits for its Close frame to go out and the client's to come back.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

impl Session {
    async fn run(
        app: AppState,
        (who, peer): (Option<Principal>, Option<IpAddr>),
        trace_id: TraceId,
        streaming: StreamGuard,
        socket: WebSocket,
    ) {
        let _streaming = streaming;
        let push = app.config.push.clone();
        let (mut sink, mut stream) = socket.split();
        let auth_deadline = tokio::time::sleep(app.config.auth.first_message_timeout);
        tokio::pin!(auth_deadline);
        // Made once, not per turn of the loop below (which turns twice per delivered event).
        let shutdown = app.clone();
        let drained = shutdown.drained();
        tokio::pin!(drained);
        let mut session = Session {
            app,
            who,
            peer,
            closing: None,
            limited: false,
            trace_id,
            outbox: VecDeque::new(),
            subscriptions: StreamMap::new(),
        };
        let mut ping = tokio::time::interval_at(
            Instant::now() + push.ws_ping_interval,
            push.ws_ping_interval,
        );
        let mut last_heard = Instant::now();
        // Messages handed to the socket but not flushed yet.
        let mut unflushed = false;
        // Since when the outbox has been full, if it is.
        let mut full_since: Option<Instant> = None;
        let slow = || {
            Some((
                CLOSE_SLOW_CONSUMER,
                format!("slow consumer: more than {} messages waited", push.ws_queue),
            ))
        };
        // Ends the session (4401) the moment its token expires or is revoked.
        let mut lapsed: Option<Pin<Box<dyn Future<Output = Lapse> + Send>>> = None;
        let close = loop {
            if lapsed.is_none()
                && let Some(who) = session.who.as_ref().filter(|who| who.can_lapse())
            {
                let who = who.clone();
                lapsed = Some(Box::pin(async move { who.lapsed().await }));
            }
            if session.outbox.len() < push.ws_queue {
                full_since = None;
            } else if full_since.is_none() {
                full_since = Some(Instant::now());
            }
            let room = full_since.is_none();
            let writing = !session.outbox.is_empty() || unflushed;
            tokio::select! {
                // Only this branch waits on the client's socket; while it does, commands are
                // still read and the slow-consumer clock still runs.
                written = write(&mut sink, &mut session.outbox, &mut unflushed), if writing => {
                    if written.is_err() {
                        // The client is gone.
                        break None;
                    }
                }
                Some((subscription, item)) = session.subscriptions.next(), if room => {
                    let message = session.event_message(&subscription, item);
                    session.outbox.push_back(message);
                    // The socket nearly always takes it at once: hand it over now, not at the
                    // next turn of the loop (which polls every branch again).
                    if let Some(Err(_)) =
                        write(&mut sink, &mut session.outbox, &mut unflushed).now_or_never()
                    {
                        break None;
                    }
                }
                () = tokio::time::sleep_until(full_since.unwrap_or_else(Instant::now) + push.ws_send_timeout), if !room => {
                    // A full queue is back-pressure, not yet a slow consumer: a replay or a
                    // burst fills it faster than any client reads. The client is slow when the
                    // queue stays full for push.ws_send_timeout.
                    tracing::info!("closing a slow WebSocket consumer");
                    break slow();
                }
                received = stream.next() => match received {
                    None | Some(Ok(Message::Close(_))) => break None,
                    Some(Err(error)) => {
                        let text = error.to_string();
                        break Some(if text.contains("too long") || text.contains("too big") {
                            (1009, "message too big".to_owned())
                        } else {
                            (1002, "protocol error".to_owned())
                        });
                    }
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        let reply = match message {
                            Message::Text(text) => session.command(text.as_str()),
                            Message::Binary(_) if session.who.is_none() => {
                                session.close_unauthenticated();
                                None
                            }
                            Message::Binary(_) => Some(session.error(None, &FieldViolation::new(
                                "message", "binary frames are not supported; send JSON text").into())),
                            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => None,
                        };
                        if let Some(closing) = session.closing.take() {
                            break Some(closing);
                        }
                        if let Some(reply) = reply
                            && !session.send(Message::Text(reply.to_string().into()))
                        {
                            break slow();
                        }
                    }
                },
                lapse = lapse_of(&mut lapsed) => {
                    break Some((CLOSE_UNAUTHENTICATED, lapse.message().to_owned()));
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= push.ws_idle_timeout {
                        break Some((CLOSE_IDLE, "no answer to pings".to_owned()));
                    }
                    if !session.send(Message::Ping(Default::default())) {
                        break slow();
                    }
                }
                () = &mut drained => break Some((1001, "server shutting down".to_owned())),
                () = &mut auth_deadline, if session.who.is_none() => {
                    break Some((CLOSE_UNAUTHENTICATED, "authentication timeout: send {\"op\":\"auth\",\"token\":...} first".to_owned()));
                }
            }
        };
        session.subscriptions = StreamMap::new();
        if let Some((code, reason)) = close {
            // Close cleanly when the socket takes it: our Close frame goes ahead of anything
            // still queued, then we wait (briefly) for the client's. A client whose socket is
            // full gets the connection dropped after the grace period instead.
            session.outbox.clear();
            let frame = Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                if sink.send(frame).await.is_ok() {
                    while let Some(Ok(message)) = stream.next().await {
                        if matches!(message, Message::Close(_)) {
                            break;
                        }
                    }
                }
            })
            .await;
        }
    }

    /// Queues `message` for the client; false when the queue is full (a slow consumer).
    fn send(&mut self, message: Message) -> bool {
        if self.outbox.len() >= self.app.config.push.ws_queue {
            return false;
        }
        self.outbox.push_back(message);
        true
    }

    /// What a subscription's item says on the wire. An event's JSON is rendered once for every
    /// subscriber (with 10 000 of them, serializing it per subscriber was most of the cost of a
    /// delivery); each gets it behind its own `op` and `subscription`.
    fn event_message(&self, subscription: &str, item: FeedItem) -> Message {
        let text = match item {
            FeedItem::Event(event) => {
                let body = self.app.event_texts.get(&event, |event| {
                    Arc::from(event_json(event).to_string().as_str())
                });
                let id = Value::from(subscription);
                // `body` is a JSON object: its fields follow ours.
                format!(r#"{{"op":"event","subscription":{id},{}"#, &body[1..])
            }
            FeedItem::Missed {
                requested_after,
                resumed_after,
            } => tagged(
                json!({ "op": "reset", "subscription": subscription }),
                missed_json(requested_after, resumed_after),
            )
            .to_string(),
        };
        Message::Text(text.into())
    }

    /// Handles one text message; returns the reply to send, if it was not queued already.
    fn command(&mut self, text: &str) -> Option<Value> {
        if self.who.is_none() {
            // Until `auth`, nothing else is answered: anything else, even malformed, closes.
            let auth = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|value| from_value::<Command>(&value).ok());
            if let Some(Command::Auth { id, token }) = auth {
                return Some(self.authenticate(id, &token));
            }
            self.close_unauthenticated();
            return None;
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => {
                let error = crate::protocols::rest::body::shape_error(".", &error);
                return Some(self.error(None, &error));
            }
        };
        let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
        if let Some(who) = &self.who {
            let decision = self.app.gate.charge(Some(who), self.peer);
            if !decision.allowed {
                if self.limited {
                    self.closing = Some((CLOSE_RATE_LIMITED, "rate limited".into()));
                    return None;
                }
                self.limited = true;
                return Some(self.error(id.as_deref(), &rate_limited(&decision)));
            }
            self.limited = false;
        }
        let command: Command = match from_value(&value) {
            Ok(command) => command,
            Err(error) => return Some(self.error(id.as_deref(), &error)),
        };
        self.execute(command)
            .unwrap_or_else(|error| Some(self.error(id.as_deref(), &error)))
    }

    fn execute(&mut self, command: Command) -> Result<Option<Value>, ApiError> {
        let who = match (&self.who, &command) {
            (Some(who), _) if let Some(lapse) = who.lapse() => {
                self.closing = Some((CLOSE_UNAUTHENTICATED, lapse.message().into()));
                return Ok(None);
            }
            (Some(who), _) => who.clone(),
            (None, Command::Auth { id, token }) => {
                let (id, token) = (id.clone(), token.clone());
                return Ok(Some(self.authenticate(id, &token)));
            }
            (None, _) => {
                self.close_unauthenticated();
                return Ok(None);
            }
        };
        let core = &self.app.core;
        let order_reply = |id: String, order: &crate::domain::model::Order| json!({ "op": "result", "id": id, "order": OrderV1::from(order) });
        Ok(Some(match command {
            Command::Ping { id } => json!({ "op": "pong", "id": id }),
            // A session has one caller, whose subscriptions are already running.
            Command::Auth { .. } => {
                return Err(
                    FieldViolation::new("op", "this connection is already authenticated").into(),
                );
            }
            Command::GetOrder { id, order_id } => {
                let order = core.order(&who, OrderId::parse(&order_id)?)?;
                order_reply(id, &order)
            }
            Command::CreateOrder {
                id,
                customer_id,
                items,
            } => {
                let command = NewOrder::parse(
                    &customer_id,
                    items.iter().map(|i| (i.product_id.as_str(), i.quantity)),
                )
                .map_err(ApiError::invalid)?;
                order_reply(id, &core.create_order(&who, command)?)
            }
            Command::CancelOrder {
                id,
                order_id,
                reason,
            } => {
                let order = core.cancel_order(
                    &who,
                    OrderId::parse(&order_id)?,
                    reason,
                    &crate::domain::Expect::Any,
                )?;
                order_reply(id, &order)
            }
            Command::Unsubscribe { id } => match self.subscriptions.remove(&id) {
                Some(_follower) => json!({ "op": "result", "id": id, "unsubscribed": true }),
                None => {
                    return Err(FieldViolation::new("id", format!("no subscription '{id}'")).into());
                }
            },
            Command::Subscribe {
                id,
                topic,
                filter,
                after_seq,
            } => {
                if topic.as_deref().is_some_and(|t| t != "orders") {
                    return Err(FieldViolation::new("topic", "the only topic is \"orders\"").into());
                }
                let filter = EventFilter::parse(
                    filter.types.iter().map(String::as_str),
                    filter.order_id.as_deref().unwrap_or(""),
                    filter.customer_id.as_deref().unwrap_or(""),
                    "filter.types",
                )
                .map_err(ApiError::invalid)?;
                // Resubscribing under the same id replaces the subscription.
                if self.subscriptions.remove(&id).is_none()
                    && self.subscriptions.len() >= MAX_SUBSCRIPTIONS
                {
                    return Err(FieldViolation::new(
                        "id",
                        format!("a connection holds at most {MAX_SUBSCRIPTIONS} subscriptions"),
                    )
                    .into());
                }
                let last_seq = self.app.core.events().last_seq();
                // The confirmation is the reply: it is queued before the first event can be.
                let log = Arc::clone(self.app.core.events());
                let follower = Follower::new(log, who, after_seq.or(Some(last_seq)), filter);
                let items = futures_util::stream::unfold(follower, |mut follower| async move {
                    let item = follower.next().await?;
                    Some((item, follower))
                });
                self.subscriptions.insert(id.clone(), Box::pin(items));
                json!({ "op": "result", "id": id, "subscribed": { "last_seq": last_seq } })
            }
        }))
    }

    fn close_unauthenticated(&mut self) {
        self.closing = Some((
            CLOSE_UNAUTHENTICATED,
            "not authenticated: the first message must be {\"op\":\"auth\",\"token\":...}".into(),
        ));
    }

    /// `{"op":"auth"}`: the session's caller from then on, or the end of the session.
    fn authenticate(&mut self, id: Option<String>, token: &str) -> Value {
        match self.app.gate.auth.verify_secret(token) {
            Ok(who) => {
                let reply = json!({
                    "op": "result",
                    "id": id,
                    "authenticated": { "principal": &*who.name, "role": who.role.name() },
                });
                self.who = Some(who);
                reply
            }
            Err(error) => {
                self.closing = Some((CLOSE_UNAUTHENTICATED, close_reason(&error.to_api().detail)));
                Value::Null
            }
        }
    }

    fn error(&self, id: Option<&str>, error: &ApiError) -> Value {
        tagged(
            json!({ "op": "error", "id": id }),
            problem_body(error, None, Some(self.trace_id.as_str())),
        )
    }
}

/// `text` cut to fit a close frame's reason (at most 123 bytes), on a character boundary.
pub fn close_reason(text: &str) -> String {
    let mut reason = String::new();
    for c in text.chars() {
        if reason.len() + c.len_utf8() > 120 {
            break;
        }
        reason.push(c);
    }
    reason
}

/// Hands the queued messages to the socket as it takes them, then flushes them; ready once all
/// are out, or with the error that ends the session. Cancel-safe: a message leaves `outbox`
/// only when the socket has taken it.
async fn write<S>(
    sink: &mut S,
    outbox: &mut VecDeque<Message>,
    unflushed: &mut bool,
) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    std::future::poll_fn(|cx| {
        while !outbox.is_empty() {
            match sink.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    let message = outbox.pop_front().expect("not empty");
                    sink.start_send_unpin(message)?;
                    *unflushed = true;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if *unflushed {
            std::task::ready!(sink.poll_flush_unpin(cx))?;
            *unflushed = false;
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// `head`'s fields (the `op` and its addressing) followed by `body`'s.
fn tagged(mut head: Value, body: Value) -> Value {
    if let (Some(head), Value::Object(body)) = (head.as_object_mut(), body) {
        head.extend(body);
    }
    head
}

/// Completes when the session's credential lapses; never while it has none that can.
async fn lapse_of(lapsed: &mut Option<Pin<Box<dyn Future<Output = Lapse> + Send>>>) -> Lapse {
    match lapsed {
        Some(lapsed) => lapsed.as_mut().await,
        None => std::future::pending().await,
    }
}
