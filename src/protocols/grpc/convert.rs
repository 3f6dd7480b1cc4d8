//! Hand-written conversions between the domain and the protobuf messages.

use crate::domain::events::{Change, Event};
use crate::domain::model::{Customer, Item, Order, Product};
use crate::domain::{FieldViolation, NewItem};

use super::pb;

/// A domain order as a message.
pub fn order(order: &Order) -> pb::Order {
    pb::Order {
        id: order.id.to_string(),
        customer_id: order.customer_id.to_string(),
        status: order.status.as_str().to_owned(),
        items: order.items.iter().map(item).collect(),
        total_cents: order.total_cents(),
        currency: order.currency.clone(),
        created_at: Some(order.created_at.into()),
        updated_at: Some(order.updated_at.into()),
        version: order.version,
        cancellation: order.cancellation.as_ref().map(|c| pb::Cancellation {
            reason: c.reason.clone().unwrap_or_default(),
            cancelled_at: Some(c.cancelled_at.into()),
        }),
    }
}

/// A domain item as a message.
pub fn item(item: &Item) -> pb::Item {
    pb::Item {
        id: item.id.to_string(),
        product_id: item.product_id.to_string(),
        quantity: item.quantity.get(),
        unit_price_cents: item.unit_price_cents,
    }
}

/// A domain customer as a message.
pub fn customer(customer: &Customer) -> pb::Customer {
    pb::Customer {
        id: customer.id.to_string(),
        name: customer.name.clone(),
        email: customer.email.clone(),
    }
}

/// A domain product as a message.
pub fn product(product: &Product) -> pb::Product {
    pb::Product {
        id: product.id.to_string(),
        name: product.name.clone(),
        price_cents: product.price_cents,
        currency: product.currency.clone(),
    }
}

/// A logged event as a message.
pub fn event(event: &Event) -> pb::OrderEvent {
    let (from_status, item_id) = match &event.change {
        Change::StatusChanged { from, .. } | Change::Cancelled { from } => {
            (from.as_str().to_owned(), String::new())
        }
        Change::ItemAdded { item_id } => (String::new(), item_id.to_string()),
        Change::Created | Change::Updated | Change::Deleted => (String::new(), String::new()),
    };
    pb::OrderEvent {
        seq: event.seq,
        r#type: event.change.event_type().to_owned(),
        order_id: event.order_id.to_string(),
        occurred_at: Some(event.occurred_at.into()),
        order: Some(order(&event.order)),
        from_status,
        item_id,
    }
}

/// Parses the `items` field of a message nested at `parent` (`""` for the request itself,
/// `"order"` for UpdateOrder's `order`); violations are named by their path from the request.
pub fn new_items(
    items: &[pb::NewItem],
    parent: &str,
    violations: &mut Vec<FieldViolation>,
) -> Vec<NewItem> {
    let mut inner = Vec::new();
    let parsed = NewItem::parse_all(
        items.iter().map(|i| (i.product_id.as_str(), i.quantity)),
        &mut inner,
    );
    violations.extend(inner.into_iter().map(|v| under(parent, v)));
    parsed
}

/// A violation named relative to the message at `parent`, named from the request instead.
pub fn under(parent: &str, violation: FieldViolation) -> FieldViolation {
    if parent.is_empty() {
        violation
    } else {
        FieldViolation::new(format!("{parent}.{}", violation.field), violation.message)
    }
}
