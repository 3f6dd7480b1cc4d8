//! gRPC's view of the shared event feed (`domain::feed`): the request's filters in, protobuf
//! messages out.

use std::future::Future;

use super::{convert, pb};
use crate::domain::Principal;
use crate::domain::feed::{self, EventFilter, FeedItem};
use crate::gateway::ApiError;
use crate::protocols::AppState;

/// Parses a WatchOrders request's filters.
pub fn filter(request: &pb::WatchOrdersRequest) -> Result<EventFilter, ApiError> {
    EventFilter::parse(
        request.types.iter().map(String::as_str),
        &request.order_id,
        &request.customer_id,
        "types",
    )
    .map_err(ApiError::invalid)
}

/// One thing to tell the client.
pub enum Item {
    /// An event that matched.
    Event(Box<pb::OrderEvent>),
    /// Events that can no longer be delivered.
    Missed(pb::EventsMissed),
}

/// Follows the log for `who` after `after_seq` (`None`: from now), handing matching events to `send`
/// until `send` reports the client gone (returns false) or `who`'s token lapses (the caller
/// says so with the call's status).
pub async fn follow<F, Fut>(
    app: &AppState,
    who: &Principal,
    after_seq: Option<u64>,
    filter: &EventFilter,
    mut send: F,
) where
    F: FnMut(Item) -> Fut,
    Fut: Future<Output = bool>,
{
    feed::follow(app.core.events(), who, after_seq, filter, |item| {
        send(match item {
            FeedItem::Event(event) => Item::Event(Box::new(convert::event(&event))),
            FeedItem::Missed {
                requested_after,
                resumed_after,
            } => Item::Missed(pb::EventsMissed {
                requested_after,
                resumed_after,
            }),
        })
    })
    .await;
}
