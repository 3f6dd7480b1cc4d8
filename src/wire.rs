//! JSON wire forms that more than one adapter sends, so they are written once: RFC 3339
//! timestamps, an order as v1 shows it, and the event envelope that SSE, WebSocket, long
//! polling and webhook deliveries all carry.
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
