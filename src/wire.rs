//! JSON wire forms that more than one adapter sends, so they are written once: RFC 3339
//! timestamps, an order as v1 shows it, and the event envelope that SSE, WebSocket, long
//! polling and webhook deliveries all carry, with the cache that renders each event's text once
//! for every SSE subscriber.
//!
//! It sits under the adapters and the webhook sender (both import it; it imports only the
//! domain), so a subscriber over SSE and a webhook receiver read byte-for-byte the same event.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::events::{Change, Event};
use crate::domain::model::{Cancellation, Item, Order};

/// RFC 3339 with milliseconds, UTC: `2026-11-23T21:40:00.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// An order as v1 shows it.
#[derive(Debug, Serialize)]
pub struct OrderV1 {
    /// Opaque id.
    pub id: String,
    /// The customer's id.
    pub customer_id: String,
    /// `pending`, `paid`, `shipped`, `delivered` or `cancelled`.
    pub status: &'static str,
    /// The lines.
    pub items: Vec<ItemV1>,
    /// Sum of the lines, in cents.
    pub total_cents: i64,
    /// ISO 4217.
    pub currency: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Grows by one on every change; the ETag.
    pub version: u64,
    /// Present once cancelled.
    pub cancellation: Option<CancellationV1>,
}

impl From<&Order> for OrderV1 {
    fn from(order: &Order) -> Self {
        Self {
            id: order.id.to_string(),
            customer_id: order.customer_id.to_string(),
            status: order.status.as_str(),
            items: order.items.iter().map(ItemV1::from).collect(),
            total_cents: order.total_cents(),
            currency: order.currency.clone(),
            created_at: timestamp(order.created_at),
            updated_at: timestamp(order.updated_at),
            version: order.version,
            cancellation: order.cancellation.as_ref().map(CancellationV1::from),
        }
    }
}

/// One line of an order.
#[derive(Debug, Serialize)]
pub struct ItemV1 {
    /// Unique within the order.
    pub id: String,
    /// The product's id.
    pub product_id: String,
    /// How many.
    pub quantity: u32,
    /// The price of one, when added.
    pub unit_price_cents: i64,
}

impl From<&Item> for ItemV1 {
    fn from(item: &Item) -> Self {
        Self {
            id: item.id.to_string(),
            product_id: item.product_id.to_string(),
            quantity: item.quantity.get(),
            unit_price_cents: item.unit_price_cents,
        }
    }
}

/// Why and when an order was cancelled.
#[derive(Debug, Serialize)]
pub struct CancellationV1 {
    /// As given, or null.
    pub reason: Option<String>,
    /// RFC 3339.
    pub cancelled_at: String,
}

impl From<&Cancellation> for CancellationV1 {
    fn from(c: &Cancellation) -> Self {
        Self {
            reason: c.reason.clone(),
            cancelled_at: timestamp(c.cancelled_at),
        }
    }
}

/// An event as JSON, the same on SSE, WebSocket, long polling and webhooks.
pub fn event_json(event: &Event) -> Value {
    let mut body = json!({
        "seq": event.seq,
        "type": event.change.event_type(),
        "order_id": event.order_id.to_string(),
        "occurred_at": timestamp(event.occurred_at),
        "order": OrderV1::from(&event.order),
    });
    match &event.change {
        Change::StatusChanged { from, .. } | Change::Cancelled { from } => {
            body["from_status"] = json!(from.as_str());
        }
        Change::ItemAdded { item_id } => body["item_id"] = json!(item_id.to_string()),
        Change::Created | Change::Updated | Change::Deleted => {}
    }
    body
}

/// The most recent events as one protocol renders them (SSE: the whole frame around
/// [`event_json`]), rendered once and shared by every subscriber that sends them as they are:
/// with 10 000 subscribers an event is serialized once, not 10 000 times (serializing was most
/// of the server's cost per delivery, see BENCHMARKS.md). Bounded: it keeps the last few events
/// only; an older one (a replay) is rendered again.
#[derive(Debug)]
pub struct RenderedEvents<T> {
    recent: std::sync::Mutex<std::collections::VecDeque<(u64, T)>>,
}

impl<T: Clone> RenderedEvents<T> {
    /// How many events are kept rendered.
    pub const KEEP: usize = 64;

    /// An empty cache.
    pub fn new() -> Self {
        Self {
            recent: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(Self::KEEP)),
        }
    }

    /// `event` as `render` renders it, rendered at most once while it is recent.
    pub fn get(&self, event: &Event, render: impl FnOnce(&Event) -> T) -> T {
        let cached = |recent: &std::collections::VecDeque<(u64, T)>| {
            recent
                .iter()
                .rev()
                .find(|(seq, _)| *seq == event.seq)
                .map(|(_, rendered)| rendered.clone())
        };
        // A poisoned lock only means another subscriber panicked mid-push: the data is fine.
        let lock = || self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rendered) = cached(&lock()) {
            return rendered;
        }
        let rendered = render(event);
        let mut recent = lock();
        if let Some(raced) = cached(&recent) {
            return raced;
        }
        if recent.len() == Self::KEEP {
            recent.pop_front();
        }
        recent.push_back((event.seq, rendered.clone()));
        rendered
    }
}

impl<T: Clone> Default for RenderedEvents<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::domain::model::{Order, OrderId};

    fn event(seq: u64) -> Event {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        Event {
            seq,
            occurred_at: now,
            order_id: OrderId(1),
            change: Change::Created,
            order: Order::sample(1, 1, now),
        }
    }

    #[test]
    fn an_event_is_rendered_once_and_shared_and_old_ones_are_forgotten() {
        let rendered = RenderedEvents::<Arc<str>>::new();
        let render = |e: &Event| Arc::<str>::from(event_json(e).to_string());
        let first = rendered.get(&event(1), render);
        assert_eq!(*first, event_json(&event(1)).to_string());
        assert!(
            Arc::ptr_eq(&first, &rendered.get(&event(1), render)),
            "shared"
        );
        for seq in 2..=(RenderedEvents::<Arc<str>>::KEEP as u64 + 1) {
            rendered.get(&event(seq), render);
        }
        let again = rendered.get(&event(1), render);
        assert!(
            !Arc::ptr_eq(&first, &again),
            "seq 1 was evicted and rendered anew"
        );
        assert_eq!(first, again);
    }
}
