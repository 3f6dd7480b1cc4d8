//! The SSE driver: a subscriber on `GET /v1/events` that reads the `text/event-stream` body as
//! it arrives and reports each `order.created` event's order id.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use http::header::ACCEPT;
use http_body_util::BodyExt;
use serde_json::Value;

use super::http::{HttpClient, Version};
use super::outcome::{OpError, expect_status};
use super::wire::WireCounters;

/// Follows `order.created` events of `customer_id`: calls `ready` once the stream's first
/// frame arrived (the server fixes "from now on" before sending it), then `on_event` with each
/// event's order id until it returns false.
pub async fn watch(
    addr: SocketAddr,
    counters: &Arc<WireCounters>,
    api_key: Option<&str>,
    customer_id: &str,
    ready: impl FnOnce(),
    mut on_event: impl FnMut(&str) -> bool,
) -> Result<(), OpError> {
    let mut http = HttpClient::connect(addr, Version::H1, counters, api_key).await?;
    let mut request = http.get(&format!(
        "/v1/events?types=order.created&customer_id={customer_id}"
    ))?;
    request
        .headers_mut()
        .insert(ACCEPT, http::HeaderValue::from_static("text/event-stream"));
    let response = http.send(request).await?;
    expect_status(response.status(), StatusCode::OK)?;
    let mut body = response.into_body();
    let mut ready = Some(ready);
    let mut parser = FrameParser::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| OpError::Io(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if let Some(ready) = ready.take() {
            ready();
        }
        for event in parser.push(&data) {
            if event.event == "order.created"
                && let Ok(json) = serde_json::from_str::<Value>(&event.data)
                && let Some(order_id) = json["order_id"].as_str()
                && !on_event(order_id)
            {
                return Ok(());
            }
        }
    }
    Err(OpError::Io("the event stream ended".into()))
}

/// One parsed SSE event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (empty when absent).
    pub event: String,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// Splits a byte stream into SSE events (frames end with a blank line; chunks may cut a frame
/// anywhere, even inside a UTF-8 character, so bytes are buffered until a frame is whole).
#[derive(Debug, Default)]
pub struct FrameParser {
    buffer: Vec<u8>,
}

impl FrameParser {
    /// Adds a chunk and returns the events it completed (comments and keep-alives are dropped).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&frame);
            let mut event = SseEvent::default();
            let mut data = Vec::new();
            for line in text.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    event.event = value.trim_start().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
                }
            }
            if !data.is_empty() {
                event.data = data.join("\n");
                events.push(event);
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cut_anywhere_are_reassembled_and_comments_dropped() {
        let stream = b": polyport event stream\nretry: 3000\n\nid: 5\nevent: order.created\ndata: {\"order_id\":\"9\"}\n\n: ping\n\n";
        let mut parser = FrameParser::default();
        let mut events = Vec::new();
        for chunk in stream.chunks(7) {
            events.extend(parser.push(chunk));
        }
        assert_eq!(
            events,
            vec![SseEvent {
                event: "order.created".into(),
                data: "{\"order_id\":\"9\"}".into()
            }]
        );
    }
}
