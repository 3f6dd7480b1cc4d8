//! The event log: every change to an order becomes one numbered event, kept for resuming and
//! fanned out live.
//!
//! Every streaming protocol (SSE, WebSocket, long polling, gRPC streams, GraphQL subscriptions,
//! webhooks) reads this one log, so they all see the same events with the same `seq`.
//!
//! Two guarantees make resuming exact:
//! - `seq` is assigned, retained and broadcast under one lock, so the live order is the seq order;
//! - [`EventLog::subscribe`] takes the replay and joins the live feed under that same lock, so a
//!   resuming client gets every retained event after its `seq`, then live ones, with no gap and no
//!   duplicate.
//!
//! Live fan-out uses a bounded `tokio::sync::broadcast` channel: a slow subscriber falls behind
//! and is told how many events it missed (`RecvError::Lagged`); it never blocks the writer or
//! the other subscribers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::broadcast;

use super::model::{ItemId, Order, OrderId, OrderStatus};

/// What happened to the order; the event's `type` follows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The order was created.
    Created,
    /// Its customer or items were replaced.
    Updated,
    /// Its status moved (other than to `cancelled`).
    StatusChanged {
        /// The status before.
        from: OrderStatus,
        /// The status after.
        to: OrderStatus,
    },
    /// An item was added.
    ItemAdded {
        /// The new item.
        item_id: ItemId,
    },
    /// The order was cancelled.
    Cancelled {
        /// The status it was cancelled from.
        from: OrderStatus,
    },
    /// The order was deleted; the event carries its last state.
    Deleted,
}

impl Change {
    /// The event type on every wire: `order.created`, `order.updated`, ...
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Created => "order.created",
            Self::Updated => "order.updated",
            Self::StatusChanged { .. } => "order.status_changed",
            Self::ItemAdded { .. } => "order.item_added",
            Self::Cancelled { .. } => "order.cancelled",
            Self::Deleted => "order.deleted",
        }
    }
}

/// Every event type, for validating filters.
pub const EVENT_TYPES: [&str; 6] = [
    "order.created",
    "order.updated",
    "order.status_changed",
    "order.item_added",
    "order.cancelled",
    "order.deleted",
];

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Strictly increasing, starting at 1; never reused.
    pub seq: u64,
    /// When the change was committed.
    pub occurred_at: SystemTime,
    /// The order it concerns.
    pub order_id: OrderId,
    /// What happened.
    pub change: Change,
    /// The order as it was right after the change (for `order.deleted`, right before).
    pub order: Order,
}

/// A place to join the log: the retained events after the requested seq, then the live feed.
#[derive(Debug)]
pub struct Subscription {
    /// Retained events after the requested seq, oldest first.
    pub replay: Vec<Arc<Event>>,
    /// Set when the requested seq is older than the log retains: events in between are lost
    /// to this client, and it must be told so rather than silently skip them.
    pub missed: Option<Missed>,
    /// Events appended after the replay was taken.
    pub live: broadcast::Receiver<Arc<Event>>,
    /// The newest seq when the subscription was taken: `live` yields only later ones.
    pub position: u64,
}

/// The range of events a resuming client cannot get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    /// The seq the client asked to resume after.
    pub requested_after: u64,
    /// The oldest seq the log still has (the replay starts here).
    pub oldest_retained: u64,
}

/// The seam for where events live. In memory today; a durable or shared (Redis streams) log
/// later implements the same four operations.
pub trait EventLog: Send + Sync + 'static {
    /// Appends one change and hands it to live subscribers; returns it with its seq.
    fn append(&self, order: &Order, change: Change) -> Arc<Event>;
    /// Joins the log after `after_seq` (`None`: live events only).
    fn subscribe(&self, after_seq: Option<u64>) -> Subscription;
    /// Up to `limit` retained events after `after_seq`, for long polling.
    fn since(&self, after_seq: u64, limit: usize) -> Vec<Arc<Event>>;
    /// The seq of the newest event, 0 when none.
    fn last_seq(&self) -> u64;
}

/// The in-memory log: a ring of the last `retain` events plus a broadcast channel.
pub struct MemoryEventLog {
    inner: Mutex<Ring>,
    live: broadcast::Sender<Arc<Event>>,
}

struct Ring {
    next_seq: u64,
    retain: usize,
    events: VecDeque<Arc<Event>>,
}

impl MemoryEventLog {
    /// Keeps the newest `retain` events for replay; each live subscriber may fall up to
    /// `subscriber_buffer` events behind before it is told it lagged.
    pub fn new(retain: usize, subscriber_buffer: usize) -> Self {
        let (live, _) = broadcast::channel(subscriber_buffer.max(1));
        Self {
            inner: Mutex::new(Ring {
                next_seq: 1,
                retain: retain.max(1),
                events: VecDeque::new(),
            }),
            live,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding this lock cannot leave the ring half-written (every mutation is
        // one push or pop), so a poisoned lock is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Ring {
    fn after(&self, after_seq: u64) -> impl Iterator<Item = &Arc<Event>> {
        // Seqs in the ring are contiguous, so the start index is arithmetic, not a search.
        let skip = match self.events.front() {
            Some(first) if after_seq >= first.seq => (after_seq - first.seq + 1) as usize,
            _ => 0,
        };
        self.events.iter().skip(skip)
    }
}

impl EventLog for MemoryEventLog {
    fn append(&self, order: &Order, change: Change) -> Arc<Event> {
        let mut ring = self.ring();
        let event = Arc::new(Event {
            seq: ring.next_seq,
            occurred_at: SystemTime::now(),
            order_id: order.id,
            change,
            order: order.clone(),
        });
        ring.next_seq += 1;
        if ring.events.len() == ring.retain {
            ring.events.pop_front();
        }
        ring.events.push_back(Arc::clone(&event));
        // No receivers is not an error: nobody is listening right now.
        let _ = self.live.send(Arc::clone(&event));
        event
    }

    fn subscribe(&self, after_seq: Option<u64>) -> Subscription {
        let ring = self.ring();
        let live = self.live.subscribe();
        let position = ring.next_seq - 1;
        let Some(after) = after_seq else {
            return Subscription {
                replay: Vec::new(),
                missed: None,
                live,
                position,
            };
        };
        let replay: Vec<_> = ring.after(after).cloned().collect();
        let oldest = ring.events.front().map_or(ring.next_seq, |e| e.seq);
        let missed = (after.saturating_add(1) < oldest).then_some(Missed {
            requested_after: after,
            oldest_retained: oldest,
        });
        Subscription {
            replay,
            missed,
            live,
            position,
        }
    }

    fn since(&self, after_seq: u64, limit: usize) -> Vec<Arc<Event>> {
        self.ring().after(after_seq).take(limit).cloned().collect()
    }

    fn last_seq(&self) -> u64 {
        self.ring().next_seq - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: u64) -> Order {
        Order::sample(id, 1, SystemTime::now())
    }

    #[test]
    fn seqs_start_at_one_and_strictly_increase() {
        let log = MemoryEventLog::new(10, 10);
        let seqs: Vec<u64> = (1..=5)
            .map(|i| log.append(&order(i), Change::Created).seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        assert_eq!(log.last_seq(), 5);
    }

    #[test]
    fn only_the_newest_events_are_retained() {
        let log = MemoryEventLog::new(3, 10);
        for i in 1..=5 {
            log.append(&order(i), Change::Created);
        }
        let kept: Vec<u64> = log.since(0, 100).iter().map(|e| e.seq).collect();
        assert_eq!(kept, vec![3, 4, 5]);
        assert_eq!(
            log.since(3, 100).iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(log.since(4, 1).len(), 1);
    }

    #[test]
    fn resuming_after_a_retained_seq_replays_the_rest_and_reports_nothing_missed() {
        let log = MemoryEventLog::new(10, 10);
        for i in 1..=4 {
            log.append(&order(i), Change::Created);
        }
        let sub = log.subscribe(Some(2));
        assert_eq!(
            sub.replay.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(sub.missed, None);
        // Resuming from the newest seq is not a gap either.
        assert_eq!(log.subscribe(Some(4)).missed, None);
        assert!(log.subscribe(Some(4)).replay.is_empty());
    }

    #[test]
    fn resuming_after_an_evicted_seq_says_what_was_missed() {
        let log = MemoryEventLog::new(2, 10);
        for i in 1..=5 {
            log.append(&order(i), Change::Created);
        }
        let sub = log.subscribe(Some(1));
        assert_eq!(
            sub.missed,
            Some(Missed {
                requested_after: 1,
                oldest_retained: 4
            })
        );
        assert_eq!(
            sub.replay.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 5]
        );
    }

    #[tokio::test]
    async fn replay_then_live_has_no_gap_and_no_duplicate_under_concurrent_appends() {
        let log = Arc::new(MemoryEventLog::new(100_000, 100_000));
        let writer = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 1..=20_000 {
                    log.append(&order(i), Change::Created);
                }
            })
        };
        // Join somewhere in the middle of the writes.
        while log.last_seq() < 5_000 {
            std::thread::yield_now();
        }
        let mut sub = log.subscribe(Some(0));
        writer.join().unwrap();
        let mut seen: Vec<u64> = sub.replay.iter().map(|e| e.seq).collect();
        while let Ok(event) = sub.live.try_recv() {
            seen.push(event.seq);
        }
        assert_eq!(seen, (1..=20_000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_without_blocking_the_writer_or_others() {
        let log = MemoryEventLog::new(10, 4);
        let mut slow = log.subscribe(None).live;
        let mut fast = log.subscribe(None).live;
        for i in 1..=3 {
            log.append(&order(i), Change::Created);
            assert_eq!(fast.recv().await.unwrap().seq, i);
        }
        for i in 4..=10 {
            log.append(&order(i), Change::Created); // never blocks
            assert_eq!(fast.recv().await.unwrap().seq, i);
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(6))
        ));
        assert_eq!(slow.recv().await.unwrap().seq, 7);
    }
}
