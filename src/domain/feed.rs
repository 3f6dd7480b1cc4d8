//! Following the event log: the one fan-out path every streaming protocol uses (gRPC
//! WatchOrders and OrderSession, SSE, WebSocket subscriptions, long polling).
//!
//! A follower replays the retained events after the client's seq, then goes live, skipping
//! nothing and repeating nothing. When the requested seq is older than the log keeps, or the
//! follower fell so far behind that its live buffer overflowed, it reports the gap explicitly
//! ([`FeedItem::Missed`]), recovers from the retained log, and carries on.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::access::{Lapse, Principal};
use super::error::FieldViolation;
use super::events::{EVENT_TYPES, Event, EventLog};
use super::model::{CustomerId, OrderId};

/// Which events a follower wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    types: Vec<String>,
    order_id: Option<OrderId>,
    customer_id: Option<CustomerId>,
    /// An id this server never issued was asked for: nothing matches.
    matches_nothing: bool,
}

impl EventFilter {
    /// Builds a filter from wire values: event types (empty: all), and optional order and
    /// customer ids (empty strings mean "any"). Unknown types are violations of `types_field`.
    pub fn parse<'a>(
        types: impl IntoIterator<Item = &'a str>,
        order_id: &str,
        customer_id: &str,
        types_field: &str,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut filter = Self::default();
        let mut violations = Vec::new();
        for (i, t) in types.into_iter().enumerate() {
            if EVENT_TYPES.contains(&t) {
                filter.types.push(t.to_owned());
            } else {
                violations.push(FieldViolation::new(
                    format!("{types_field}[{i}]"),
                    format!(
                        "unknown event type '{t}'; types: {}",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        if !order_id.is_empty() {
            match OrderId::parse(order_id) {
                Ok(id) => filter.order_id = Some(id),
                Err(_) => filter.matches_nothing = true,
            }
        }
        if !customer_id.is_empty() {
            match CustomerId::parse(customer_id) {
                Ok(id) => filter.customer_id = Some(id),
                Err(_) => filter.matches_nothing = true,
            }
        }
        Ok(filter)
    }

    /// True when `event` passes the filter and `who` may see it (a customer sees only its own
    /// orders' events): every streaming protocol asks this, so none can skip the rule.
    pub fn matches(&self, who: &Principal, event: &Event) -> bool {
        who.sees(&event.order)
            && !self.matches_nothing
            && (self.types.is_empty() || self.types.iter().any(|t| t == event.change.event_type()))
            && self.order_id.is_none_or(|id| event.order_id == id)
            && self
                .customer_id
                .is_none_or(|id| event.order.customer_id == id)
    }
}

/// One thing to tell a follower's client.
#[derive(Debug, Clone)]
pub enum FeedItem {
    /// An event that matched the filter.
    Event(Arc<Event>),
    /// Events after `requested_after` up to and including `resumed_after` are lost to this
    /// client; it should re-read current state if they matter.
    Missed {
        /// The last seq the client had.
        requested_after: u64,
        /// The feed continues after this seq.
        resumed_after: u64,
    },
}

/// Follows `log` after `after_seq` (`None`: from now), handing the events that match `filter`
/// and that `who` may see (a customer sees only its own orders' events) to `send` until `send`
/// reports the client gone (returns false), the log closes, or `who`'s credential expires or
/// is revoked (a stream never outlives its token, even while `send` waits for a slow client).
/// Returns why the credential lapsed, if that is what ended it, so the adapter can say so in
/// its protocol.
pub async fn follow<F, Fut>(
    log: &Arc<dyn EventLog>,
    who: &Principal,
    after_seq: Option<u64>,
    filter: &EventFilter,
    mut send: F,
) -> Option<Lapse>
where
    F: FnMut(FeedItem) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut follower = Follower::new(Arc::clone(log), who.clone(), after_seq, filter.clone());
    let run = async {
        while let Some(item) = follower.next().await {
            if !send(item).await {
                return;
            }
        }
    };
    tokio::select! {
        () = run => who.lapse(),
        lapse = who.lapsed() => Some(lapse),
    }
}

/// One client's place in the log, pulled one item at a time: [`follow`] drives it for the
/// adapters that push to their client, and a transport that pulls (an HTTP response body)
/// polls it directly, with no task or queue of its own.
///
/// It replays the retained events after the client's seq, then goes live, skipping nothing and
/// repeating nothing; every gap is reported as [`FeedItem::Missed`] before what follows it.
pub struct Follower {
    log: Arc<dyn EventLog>,
    who: Principal,
    filter: EventFilter,
    /// The newest seq taken from the log (whether it matched or not).
    last: u64,
    live: broadcast::Receiver<Arc<Event>>,
    /// Items taken from the log and not yet handed out, oldest first.
    ready: VecDeque<FeedItem>,
    /// When `who`'s credential expires or is revoked: the follower ends then.
    lapsed: Option<Pin<Box<dyn Future<Output = Lapse> + Send>>>,
}

impl Follower {
    /// Joins `log` after `after_seq` (`None`: from now) for `who`, keeping what `filter` lets
    /// through and `who` may see.
    pub fn new(
        log: Arc<dyn EventLog>,
        who: Principal,
        after_seq: Option<u64>,
        filter: EventFilter,
    ) -> Self {
        let subscription = log.subscribe(after_seq);
        let lapsed = who.can_lapse().then(|| {
            let who = who.clone();
            Box::pin(async move { who.lapsed().await }) as Pin<Box<dyn Future<Output = _> + Send>>
        });
        let mut follower = Self {
            log,
            who,
            filter,
            last: after_seq.unwrap_or(subscription.position),
            live: subscription.live,
            ready: VecDeque::new(),
            lapsed,
        };
        if follower.last > subscription.position {
            // A seq from the future: the log restarted (it is in memory). Say where it is now.
            follower.ready.push_back(FeedItem::Missed {
                requested_after: follower.last,
                resumed_after: subscription.position,
            });
            follower.last = subscription.position;
        }
        if let Some(missed) = subscription.missed {
            follower.ready.push_back(FeedItem::Missed {
                requested_after: missed.requested_after,
                resumed_after: missed.oldest_retained - 1,
            });
        }
        for event in subscription.replay {
            follower.take(event);
        }
        follower
    }

    /// The next item for the client, waiting for one if need be; `None` once the log has
    /// closed or `who`'s credential has expired or been revoked. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Option<FeedItem> {
        loop {
            if self.who.lapse().is_some() {
                return None;
            }
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let received = match &mut self.lapsed {
                None => self.live.recv().await,
                Some(lapsed) => tokio::select! {
                    received = self.live.recv() => received,
                    _ = lapsed.as_mut() => return None,
                },
            };
            match received {
                Ok(event) => self.take(event),
                Err(RecvError::Lagged(_)) => {
                    // Too slow for the live buffer: catch up from the retained log instead.
                    let backlog = self.log.since(self.last, usize::MAX);
                    if let Some(first) = backlog.first()
                        && first.seq > self.last + 1
                    {
                        self.ready.push_back(FeedItem::Missed {
                            requested_after: self.last,
                            resumed_after: first.seq - 1,
                        });
                    }
                    for event in backlog {
                        self.take(event);
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Takes `event` from the log: queued for the client if it is new and passes the filter.
    fn take(&mut self, event: Arc<Event>) {
        if event.seq <= self.last {
            return;
        }
        self.last = event.seq;
        if self.filter.matches(&self.who, &event) {
            self.ready.push_back(FeedItem::Event(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{Change, MemoryEventLog};
    use crate::domain::model::Order;
    use std::time::SystemTime;

    fn order(id: u64, customer: u64) -> Order {
        Order::sample(id, customer, SystemTime::now())
    }

    async fn collect(
        log: &Arc<dyn EventLog>,
        after: Option<u64>,
        filter: &EventFilter,
        n: usize,
    ) -> Vec<String> {
        let mut seen = Vec::new();
        follow(log, &Principal::system(), after, filter, |item| {
            seen.push(match item {
                FeedItem::Event(e) => format!("{}", e.seq),
                FeedItem::Missed {
                    requested_after,
                    resumed_after,
                } => {
                    format!("missed {requested_after}..{resumed_after}")
                }
            });
            let more = seen.len() < n;
            async move { more }
        })
        .await;
        seen
    }

    #[tokio::test]
    async fn a_follower_replays_filters_and_reports_what_it_missed() {
        let log: Arc<dyn EventLog> = Arc::new(MemoryEventLog::new(3, 16));
        for i in 1..=5 {
            log.append(&order(i, i % 2), Change::Created);
        }
        // Seqs 1 and 2 were evicted: say so, then replay 3..=5.
        let all = EventFilter::default();
        assert_eq!(
            collect(&log, Some(0), &all, 4).await,
            ["missed 0..2", "3", "4", "5"]
        );
        // Customer 1 placed the odd orders.
        let odd = EventFilter::parse([], "", "1", "types").unwrap();
        assert_eq!(collect(&log, Some(2), &odd, 2).await, ["3", "5"]);
        // A seq the log never reached (it restarted): say where it is now, then go on from there.
        log.append(&order(6, 1), Change::Created);
        let resumed = collect(&log, Some(99), &all, 1).await;
        assert_eq!(resumed, ["missed 99..6"]);
    }

    #[test]
    fn unknown_event_types_are_refused_and_unknown_ids_match_nothing() {
        let err =
            EventFilter::parse(["order.created", "order.exploded"], "", "", "types").unwrap_err();
        assert_eq!(err[0].field, "types[1]");
        let nothing = EventFilter::parse([], "abc", "", "types").unwrap();
        let event = Event {
            seq: 1,
            occurred_at: SystemTime::now(),
            order_id: OrderId(1),
            change: Change::Created,
            order: order(1, 1),
        };
        assert!(!nothing.matches(&Principal::system(), &event));
        assert!(EventFilter::default().matches(&Principal::system(), &event));
    }
}
