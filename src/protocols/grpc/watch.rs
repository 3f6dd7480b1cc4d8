//! Following the event log for a stream (WatchOrders, and OrderSession's subscription).
//!
//! Replay the retained events after the client's seq, then go live, skipping nothing and
//! repeating nothing. When the requested seq is older than the log keeps, or this stream falls
//! so far behind that the live buffer overflowed, the client gets an explicit `EventsMissed`
//! message, then the stream recovers from the retained log and carries on.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use super::{convert, pb};
use crate::app::App;
use crate::domain::FieldViolation;
use crate::domain::events::{EVENT_TYPES, Event};
use crate::domain::model::{CustomerId, OrderId};
use crate::gateway::ApiError;

/// Which events a stream wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    types: Vec<String>,
    order_id: Option<OrderId>,
    customer_id: Option<CustomerId>,
    /// An id this server never issued: nothing matches.
    matches_nothing: bool,
}

impl Filter {
    /// Parses the request's filters.
    pub fn parse(request: &pb::WatchOrdersRequest) -> Result<Self, ApiError> {
        let mut violations = Vec::new();
        for (i, t) in request.types.iter().enumerate() {
            if !EVENT_TYPES.contains(&t.as_str()) {
                violations.push(FieldViolation::new(
                    format!("types[{i}]"),
                    format!(
                        "unknown event type '{t}'; types: {}",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid(violations));
        }
        let mut filter = Filter {
            types: request.types.clone(),
            ..Filter::default()
        };
        if !request.order_id.is_empty() {
            match OrderId::parse(&request.order_id) {
                Ok(id) => filter.order_id = Some(id),
                Err(_) => filter.matches_nothing = true,
            }
        }
        if !request.customer_id.is_empty() {
            match CustomerId::parse(&request.customer_id) {
                Ok(id) => filter.customer_id = Some(id),
                Err(_) => filter.matches_nothing = true,
            }
        }
        Ok(filter)
    }

    fn matches(&self, event: &Event) -> bool {
        !self.matches_nothing
            && (self.types.is_empty() || self.types.iter().any(|t| t == event.change.event_type()))
            && self.order_id.is_none_or(|id| event.order_id == id)
            && self
                .customer_id
                .is_none_or(|id| event.order.customer_id == id)
    }
}

/// One thing to tell the client.
pub enum Item {
    /// An event that matched.
    Event(Box<pb::OrderEvent>),
    /// Events that can no longer be delivered.
    Missed(pb::EventsMissed),
}

/// Follows the log after `after_seq` (`None`: from now), handing matching events to `send`
/// until `send` reports the client gone (returns false) or the log closes.
pub async fn follow<F, Fut>(app: &App, after_seq: Option<u64>, filter: &Filter, mut send: F)
where
    F: FnMut(Item) -> Fut,
    Fut: Future<Output = bool>,
{
    let log = Arc::clone(app.core.events());
    let subscription = log.subscribe(after_seq);
    let mut last = after_seq.unwrap_or(subscription.position);
    if let Some(missed) = subscription.missed {
        let item = Item::Missed(pb::EventsMissed {
            requested_after: missed.requested_after,
            resumed_after: missed.oldest_retained - 1,
        });
        if !send(item).await {
            return;
        }
    }
    let mut live = subscription.live;
    let mut backlog = subscription.replay;
    loop {
        for event in backlog.drain(..) {
            if event.seq <= last {
                continue;
            }
            last = event.seq;
            if filter.matches(&event) && !send(Item::Event(Box::new(convert::event(&event)))).await
            {
                return;
            }
        }
        match live.recv().await {
            Ok(event) => backlog.push(event),
            Err(RecvError::Lagged(_)) => {
                // Too slow for the live buffer: catch up from the retained log instead.
                backlog = log.since(last, usize::MAX);
                if let Some(first) = backlog.first()
                    && first.seq > last + 1
                {
                    let item = Item::Missed(pb::EventsMissed {
                        requested_after: last,
                        resumed_after: first.seq - 1,
                    });
                    if !send(item).await {
                        return;
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}
