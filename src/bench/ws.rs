//! The WebSocket driver: one `/v1/ws` session per connection, speaking its JSON `op` protocol
//! (`get_order`, `create_order`, `subscribe`), with tokio-tungstenite over a counted socket.
//!
//! The session has no `list` command, so the WebSocket row is absent from the list scenario;
//! and `create_order` has no idempotency key (the protocol has none), which the report notes.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::fixtures::Fixtures;
use super::http::bearer;
use super::outcome::OpError;
use super::wire::{self, Counted, WireCounters};

/// One WebSocket session.
pub struct Ws {
    socket: WebSocketStream<Counted<TcpStream>>,
    next_id: u64,
}

impl Ws {
    /// Connects and upgrades (the upgrade request carries the API key).
    pub async fn connect(
        addr: SocketAddr,
        counters: &Arc<WireCounters>,
        api_key: Option<&str>,
    ) -> Result<Self, OpError> {
        let stream = wire::connect(addr, counters)
            .await
            .map_err(|e| OpError::Connect(e.to_string()))?;
        let mut request = format!("ws://{addr}/v1/ws")
            .into_client_request()
            .map_err(|e| OpError::Connect(e.to_string()))?;
        if let Some(value) = bearer(api_key)? {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        let (socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(response) => {
                    OpError::Http(response.status().as_u16())
                }
                e => OpError::Connect(e.to_string()),
            })?;
        Ok(Self { socket, next_id: 0 })
    }

    /// Sends one command and waits for its answer (`result` or `error` with the same id),
    /// passing over anything else (events of other subscriptions, pongs).
    async fn command(&mut self, mut command: Value) -> Result<Value, OpError> {
        self.next_id += 1;
        let id = format!("c{}", self.next_id);
        command["id"] = json!(id);
        self.socket
            .send(Message::Text(command.to_string().into()))
            .await
            .map_err(|e| OpError::Io(e.to_string()))?;
        loop {
            let message = self.next_json().await?;
            if message["id"] != id.as_str() {
                continue;
            }
            return match message["op"].as_str() {
                Some("result") => Ok(message),
                Some("error") => Err(OpError::WsError(
                    message["status"].as_u64().unwrap_or(0) as u16
                )),
                _ => Err(OpError::Invalid(format!("unexpected answer {message}"))),
            };
        }
    }

    /// The next text message, parsed.
    async fn next_json(&mut self) -> Result<Value, OpError> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|e| OpError::Invalid(format!("not JSON: {e}")));
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(OpError::Io("the server closed the session".into()));
                }
                Some(Ok(_)) => {} // pings are answered by tungstenite itself
                Some(Err(e)) => return Err(OpError::Io(e.to_string())),
            }
        }
    }

    /// `get_order`.
    pub async fn get(&mut self, id: &str) -> Result<(), OpError> {
        let answer = self
            .command(json!({ "op": "get_order", "order_id": id }))
            .await?;
        super::rest::check_order(&answer["order"], Some(id))
    }

    /// `create_order` (the session protocol takes no idempotency key).
    pub async fn create(&mut self, fixtures: &Fixtures) -> Result<(), OpError> {
        let items: Vec<Value> = fixtures
            .new_items()
            .iter()
            .map(|(p, q)| json!({ "product_id": p, "quantity": q }))
            .collect();
        let answer = self
            .command(json!({ "op": "create_order", "customer_id": fixtures.customer_id, "items": items }))
            .await?;
        super::rest::check_order(&answer["order"], None)
    }

    /// Subscribes to `order.created` events of `customer_id`: calls `ready` once the server
    /// confirmed, then `on_event` with each event's order id until it returns false.
    pub async fn watch(
        &mut self,
        customer_id: &str,
        ready: impl FnOnce(),
        mut on_event: impl FnMut(&str) -> bool,
    ) -> Result<(), OpError> {
        self.command(json!({
            "op": "subscribe",
            "topic": "orders",
            "filter": { "types": ["order.created"], "customer_id": customer_id },
        }))
        .await?;
        ready();
        loop {
            let message = self.next_json().await?;
            if message["op"] == "event"
                && let Some(order_id) = message["order_id"].as_str()
                && !on_event(order_id)
            {
                return Ok(());
            }
        }
    }
}
