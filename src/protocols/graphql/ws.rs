//! `/graphql/ws`: GraphQL subscriptions over WebSocket (`graphql-transport-ws` and the legacy
//! `graphql-ws`), with the caller authenticated like every other request.
//!
//! The caller comes from the upgrade request (a header, or `?access_token=` since browsers
//! cannot set headers on a WebSocket) or, failing that, from the `connection_init` payload:
//! `{"authorization": "Bearer <API key or token>"}` (or `{"token": "..."}`). Without valid
//! credentials the connection closes with 4401; without a `connection_init` within
//! `auth.first_message_timeout` it closes with 4408, as the `graphql-transport-ws` protocol
//! says; a session whose token expires or is revoked closes with 4401 at that moment. Every message counts against the caller's rate limit; one over it closes with 4429. A
//! message over `push.ws_max_message_bytes` closes with 1009, as on `/v1/ws`; both close
//! reasons carry the connection's trace id. async-graphql runs the protocol itself; this file
//! only feeds it the socket and translates its closes.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_graphql::Data;
use async_graphql::http::{
    ALL_WEBSOCKET_PROTOCOLS, WebSocket as GqlWebSocket, WebSocketProtocols, WsMessage,
};
use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt, future};
use http::HeaderMap;
use http::header::SEC_WEBSOCKET_PROTOCOL;

use super::{GraphqlState, PolyportSchema};
use crate::domain::Principal;
use crate::gateway::ApiError;
use crate::gateway::auth::Peer;
use crate::gateway::trace::TraceId;
use crate::protocols::AppState;
use crate::protocols::push::ws::close_reason;

/// Close code: no valid credentials.
pub const CLOSE_UNAUTHENTICATED: u16 = 4401;
/// Close code: no `connection_init` in time (`graphql-transport-ws`).
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;
/// Close code: a message over the caller's rate limit.
pub const CLOSE_RATE_LIMITED: u16 = 4429;

/// Starts every refusal message of `connection_init`, so the close can be told apart.
const REFUSED: &str = "unauthenticated: ";

/// `GET /graphql/ws`
pub(super) async fn upgrade(
    State(state): State<GraphqlState>,
    Extension(trace_id): Extension<TraceId>,
    who: Option<Extension<Principal>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let protocol = headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|list| {
            list.split(',')
                .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
        })
        .ok_or_else(|| {
            ApiError::from(crate::domain::FieldViolation::new(
                "Sec-WebSocket-Protocol",
                "must offer graphql-transport-ws or graphql-ws",
            ))
        })?;
    let who = who.map(|Extension(who)| who);
    // The same message bound as /v1/ws: a subscribe payload is a whole GraphQL document.
    let max = state.app.config.push.ws_max_message_bytes;
    Ok(upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            serve(
                state.app,
                state.schema.full,
                protocol,
                (who, peer),
                trace_id,
                socket,
            )
        })
        .into_response())
}

async fn serve(
    app: AppState,
    schema: PolyportSchema,
    protocol: WebSocketProtocols,
    (who, peer): (Option<Principal>, Option<IpAddr>),
    trace_id: TraceId,
    socket: WebSocket,
) {
    let (mut sink, mut stream) = socket.split();
    // The caller once known (at the upgrade, or after connection_init), for the rate limiter:
    // every message counts against the caller's quota, as a request would (the gate's keying:
    // the principal, or the address with authentication off). A message over it ends the
    // input, and the connection closes with 4429.
    let caller: Arc<OnceLock<Principal>> = Arc::default();
    if let Some(who) = &who {
        let _ = caller.set(who.clone());
    }
    // Told when connection_init has named the caller, so the session can end when its token
    // lapses.
    let known = Arc::new(tokio::sync::Notify::new());
    let limited = Arc::new(AtomicBool::new(false));
    // A read error ends the input too, and says how to close: 1009 for a message over
    // push.ws_max_message_bytes (as /v1/ws does), 1002 for anything else.
    let broken: Arc<OnceLock<(u16, &'static str)>> = Arc::default();
    // The input borrows the stream, so that once the session is over the stream can still be
    // read for the client's answering Close (see `close_and_linger`).
    let input = (&mut stream)
        .take_while({
            let broken = Arc::clone(&broken);
            move |received| {
                if let Err(error) = received {
                    let text = error.to_string();
                    let _ = broken.set(if text.contains("too long") || text.contains("too big") {
                        (1009, "message too big")
                    } else {
                        (1002, "protocol error")
                    });
                }
                future::ready(received.is_ok())
            }
        })
        .filter_map(|received| {
            future::ready(match received {
                Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        })
        .take_while({
            let (caller, limited, gate) = (
                Arc::clone(&caller),
                Arc::clone(&limited),
                Arc::clone(&app.gate),
            );
            move |_| {
                let over = caller
                    .get()
                    .is_some_and(|who| !gate.charge(Some(who), peer).allowed);
                if over {
                    limited.store(true, Ordering::Relaxed);
                }
                future::ready(!over)
            }
        });
    let initialised = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicBool::new(false));
    let mut data = Data::default();
    data.insert(trace_id.clone());
    if let Some(peer) = peer {
        // For the per-caller share of subscriptions when authentication is off.
        data.insert(peer);
    }
    let on_init = {
        let (initialised, refused) = (Arc::clone(&initialised), Arc::clone(&refused));
        let (caller, known) = (Arc::clone(&caller), Arc::clone(&known));
        let auth = Arc::clone(&app.gate.auth);
        let core = Arc::clone(&app.core);
        move |payload: serde_json::Value| async move {
            let who = match who {
                Some(who) => Ok(who),
                None => match token(&payload) {
                    Some(token) => auth
                        .verify_secret(&token)
                        .map_err(|e| format!("{REFUSED}{}", e.to_api().detail)),
                    None => Err(format!(
                        "{REFUSED}send credentials in the upgrade request or connection_init: {{\"authorization\": \"Bearer <key>\"}}"
                    )),
                },
            };
            match who {
                Ok(who) => {
                    initialised.store(true, Ordering::Relaxed);
                    let _ = caller.set(who.clone());
                    known.notify_one();
                    let mut data = Data::default();
                    super::loaders::insert(&mut data, &core, &who);
                    data.insert(who);
                    Ok(data)
                }
                Err(message) => {
                    refused.store(true, Ordering::Relaxed);
                    Err(async_graphql::Error::new(message))
                }
            }
        }
    };
    let mut closed = false;
    // The close frame the server still has to send, if any.
    let ending = {
        let output = GqlWebSocket::new(schema, input, protocol)
            .connection_data(data)
            .on_connection_init(on_init)
            .map(|message| match message {
                WsMessage::Text(text) => Message::Text(text.into()),
                WsMessage::Close(code, reason) => {
                    // async-graphql closes a refused init with 1002, and a subscribe before any
                    // init with 1011; graphql-transport-ws says 4401 for both.
                    let code = if reason.starts_with(REFUSED) || code == 1011 {
                        CLOSE_UNAUTHENTICATED
                    } else {
                        code
                    };
                    close(code, &reason)
                }
            });
        futures_util::pin_mut!(output);
        let deadline = tokio::time::sleep(app.config.auth.first_message_timeout);
        tokio::pin!(deadline);
        // The session ends (4401) the moment its token expires or is revoked.
        let lapsed = async {
            if caller.get().is_none() {
                known.notified().await;
            }
            match caller.get() {
                Some(who) => who.lapsed().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(lapsed);
        loop {
            tokio::select! {
                message = output.next() => match message {
                    Some(message) => {
                        closed |= matches!(message, Message::Close(_));
                        if sink.send(message).await.is_err() {
                            return;
                        }
                    }
                    None => break None,
                },
                () = &mut deadline, if !initialised.load(Ordering::Relaxed) => {
                    break Some(close(CLOSE_INIT_TIMEOUT, "connection initialisation timeout"));
                }
                () = app.drained() => break Some(close(1001, "server shutting down")),
                lapse = &mut lapsed => {
                    let reason = format!("{} (trace id {})", lapse.message(), trace_id.as_str());
                    break Some(close(CLOSE_UNAUTHENTICATED, &reason));
                }
            }
        }
    };
    // Refusals name the trace id in their reason, as the other protocols' refusals carry it.
    let ending = ending.or_else(|| {
        if closed {
            None
        } else if limited.load(Ordering::Relaxed) {
            let reason = format!("rate limited (trace id {})", trace_id.as_str());
            Some(close(CLOSE_RATE_LIMITED, &reason))
        } else if let Some((code, reason)) = broken.get() {
            let reason = format!("{reason} (trace id {})", trace_id.as_str());
            Some(close(*code, &reason))
        } else if refused.load(Ordering::Relaxed) {
            // The legacy protocol reports a refused init with a message, not a close.
            Some(close(CLOSE_UNAUTHENTICATED, "not authenticated"))
        } else {
            None
        }
    });
    if let Some(frame) = ending {
        closed = sink.send(frame).await.is_ok();
    }
    if closed {
        close_and_linger(&mut stream).await;
    }
}

/// How long a closing session reads on for the client's Close, as `/v1/ws` waits.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads what the client still sends until its Close (or [`CLOSE_GRACE`]) after ours went out.
/// Dropping a socket with unread messages in it makes the kernel reset the connection, and a
/// reset can overtake the Close frame: a client that had sent much (over its quota, say)
/// would see 1006 instead of the code.
async fn close_and_linger<S>(stream: &mut S)
where
    S: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// The token in a `connection_init` payload: `authorization` (any case, `Bearer ` optional)
/// or `token`.
fn token(payload: &serde_json::Value) -> Option<String> {
    let object = payload.as_object()?;
    object.iter().find_map(|(name, value)| {
        let value = value.as_str()?.trim();
        if name.eq_ignore_ascii_case("authorization") {
            let value = match value.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                _ => value,
            };
            Some(value.to_owned())
        } else if name == "token" || name == "api_key" {
            Some(value.to_owned())
        } else {
            None
        }
    })
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: close_reason(reason).into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_are_read_from_the_usual_payload_shapes() {
        for payload in [
            json!({"authorization": "Bearer k1"}),
            json!({"Authorization": "bearer k1"}),
            json!({"authorization": "k1"}),
            json!({"token": "k1"}),
        ] {
            assert_eq!(token(&payload).as_deref(), Some("k1"), "{payload}");
        }
        assert_eq!(token(&json!({})), None);
        assert_eq!(token(&json!(null)), None);
    }

    #[test]
    fn close_reasons_fit_in_a_frame() {
        assert!(close_reason(&"é".repeat(200)).len() <= 123);
    }
}
