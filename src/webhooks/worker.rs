//! The delivery worker: a dispatcher that follows the event log and queues one delivery per
//! enabled endpoint that wants the event, and a loop that sends what is due, at most
//! `webhooks.max_concurrent_deliveries` at once, until shutdown.
//!
//! At shutdown the loop stops taking deliveries off the queue (even while it waits for a free
//! slot: slow receivers must not hold shutdown up), the attempts in flight get the grace period
//! to finish, and what is still pending is logged and left where it is.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::ids::DeliveryId;
use super::sender::Transport;
use super::{Shared, State};
use crate::domain::Principal;
use crate::domain::events::{Event, EventLog};
use crate::domain::feed::{self, EventFilter, FeedItem};

/// Follows `log` and delivers until `shutdown` completes; then gives in-flight attempts `grace`
/// to finish.
pub(crate) async fn run<T: Transport>(
    shared: Arc<Shared>,
    transport: Arc<T>,
    log: Arc<dyn EventLog>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let after = log.last_seq();
    let dispatcher = tokio::spawn(dispatch_from(Arc::clone(&shared), log, after));
    let shutdown = async {
        shutdown.await;
        // Events after this get no deliveries: nothing would send them.
        dispatcher.abort();
    };
    deliver(shared, transport, shutdown, grace).await;
}

/// Queues a delivery for each event after `after`.
async fn dispatch_from(shared: Arc<Shared>, log: Arc<dyn EventLog>, after: u64) {
    // Webhook endpoints are registered by admins and receive every event.
    let system = Principal::system();
    feed::follow(
        &log,
        &system,
        Some(after),
        &EventFilter::default(),
        |item| {
            match item {
                FeedItem::Event(event) => dispatch(&shared, &event),
                FeedItem::Missed {
                    requested_after,
                    resumed_after,
                } => tracing::warn!(
                    requested_after,
                    resumed_after,
                    "webhook dispatcher fell behind the event log; these events get no deliveries"
                ),
            }
            async { true }
        },
    )
    .await;
}

fn dispatch(shared: &Shared, event: &Event) {
    let event_type = event.change.event_type();
    let targets = shared.state().endpoints.wanting(event_type);
    if targets.is_empty() {
        return;
    }
    let body = json!({
        "type": event_type,
        "timestamp": crate::wire::timestamp(event.occurred_at),
        "data": crate::wire::event_json(event),
    })
    .to_string();
    for endpoint in targets {
        shared.enqueue(endpoint, event_type, Some(event.seq), body.clone());
    }
}

/// Sends due deliveries until `shutdown` completes, then drains: returns how many deliveries
/// were left pending.
pub(crate) async fn deliver<T: Transport>(
    shared: Arc<Shared>,
    transport: Arc<T>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> usize {
    let limit = Arc::new(Semaphore::new(
        shared.config.max_concurrent_deliveries.max(1),
    ));
    let mut attempts = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let next = shared.state().queue.next_due();
        let sleep = async {
            match next {
                // Measured on the injected clock, so a test's clock that stands still keeps a
                // delivery that is not yet due from ever becoming due.
                Some(at) => {
                    let wait = at.saturating_duration_since(shared.now().instant);
                    tokio::time::sleep(wait).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {
                // Wait for a free slot before taking the delivery off the queue, and keep
                // listening for shutdown meanwhile: slow receivers must not hold it up.
                let permit = tokio::select! {
                    permit = Arc::clone(&limit).acquire_owned() => permit.expect("never closed"),
                    () = &mut shutdown => break,
                };
                let now = shared.now().instant;
                let Some(id) = shared.state().queue.take_due(now) else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                let transport = Arc::clone(&transport);
                attempts.spawn(async move {
                    attempt(&shared, transport.as_ref(), id).await;
                    drop(permit);
                });
            }
            () = shared.wake.notified() => {}
            Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    let _ = tokio::time::timeout(grace, async {
        while attempts.join_next().await.is_some() {}
    })
    .await;
    // Dropping `attempts` abandons whatever is still in flight.
    let pending = shared.state().queue.pending();
    if pending > 0 {
        tracing::warn!(
            pending,
            "webhook deliveries still pending at shutdown (kept in memory only, so they are lost)"
        );
    }
    pending
}

/// One attempt at delivery `id`, and what follows from its outcome.
async fn attempt<T: Transport>(shared: &Shared, transport: &T, id: DeliveryId) {
    let found = {
        let state = shared.state();
        state.queue.get(id).map(|delivery| {
            let endpoint = state.endpoints.get(delivery.endpoint_id);
            (
                delivery.clone(),
                endpoint.filter(|e| e.is_enabled()).cloned(),
            )
        })
    };
    let Some((delivery, endpoint)) = found else {
        return;
    };
    let Some(endpoint) = endpoint else {
        let at = shared.now().wall;
        let reason = "the endpoint is disabled or deleted";
        shared.state().queue.fail(id, reason, at);
        return;
    };
    let started = shared.now();
    let outcome = transport.send(&endpoint, &delivery, started).await;
    let now = shared.now();
    let mut state = shared.state();
    let State { endpoints, queue } = &mut *state;
    let endpoint = endpoints.get_mut(endpoint.id);
    let retrying = queue.settle(id, endpoint, outcome, started, now, &shared.config);
    drop(state);
    if retrying {
        shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::config::WebhooksConfig;
    use crate::webhooks::clock::{ManualClock, Now};
    use crate::webhooks::queue::Outcome;
    use crate::webhooks::queue::{Delivery, DeliveryState};
    use crate::webhooks::registry::Endpoint;
    use crate::webhooks::signing::Secret;

    /// A receiver that says when an attempt arrives and answers 200 once the test lets it.
    struct Held {
        arrived: mpsc::UnboundedSender<DeliveryId>,
        release: Semaphore,
    }

    impl Held {
        /// The receiver, and where it says which delivery arrived.
        fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<DeliveryId>) {
            let (arrived, arrivals) = mpsc::unbounded_channel();
            let release = Semaphore::new(0);
            (Arc::new(Self { arrived, release }), arrivals)
        }
    }

    impl Transport for Held {
        async fn send(&self, _: &Endpoint, delivery: &Delivery, _: Now) -> Outcome {
            let _ = self.arrived.send(delivery.id);
            self.release.acquire().await.expect("never closed").forget();
            Outcome::Answered {
                status: 200,
                retry_after: None,
            }
        }
    }

    /// An endpoint with two deliveries, on a clock that stands still: one failed once and waits
    /// an hour for its retry, the other is due now. Returns (waiting, due).
    fn world() -> (Arc<Shared>, DeliveryId, DeliveryId) {
        let config = WebhooksConfig {
            retry_schedule: vec![Duration::ZERO, Duration::from_secs(3600)],
            ..WebhooksConfig::default()
        };
        let shared = Arc::new(Shared::new(config, ManualClock::new()));
        let now = shared.now();
        let url = url::Url::parse("http://127.0.0.1:9/hook").unwrap();
        let endpoint = shared
            .state()
            .endpoints
            .register(url, vec![], String::new(), Secret::generate(), now.wall)
            .unwrap()
            .id;
        let waiting = shared
            .enqueue(endpoint, "order.created", Some(1), "{}".into())
            .id;
        {
            let mut state = shared.state();
            let State { endpoints, queue } = &mut *state;
            assert_eq!(queue.take_due(now.instant), Some(waiting));
            let refused = Outcome::NoAnswer("request failed".into());
            let endpoint = endpoints.get_mut(endpoint);
            assert!(queue.settle(waiting, endpoint, refused, now, now, &shared.config));
        }
        let due = shared
            .enqueue(endpoint, "order.created", Some(2), "{}".into())
            .id;
        (shared, waiting, due)
    }

    fn state_of(shared: &Shared, id: DeliveryId) -> DeliveryState {
        shared.state().queue.get(id).expect("kept").state
    }

    #[tokio::test]
    async fn at_shutdown_the_attempt_in_flight_finishes_within_the_grace_and_the_rest_is_left() {
        let (shared, waiting, due) = world();
        let (receiver, mut arrivals) = Held::new();
        let (stop, stopped) = oneshot::channel::<()>();
        // The receiver answers only once the worker has seen the shutdown: the answer can only
        // be recorded if the drain waits for it.
        let shutdown = {
            let receiver = Arc::clone(&receiver);
            async move {
                let _ = stopped.await;
                receiver.release.add_permits(1);
            }
        };
        let grace = Duration::from_secs(3600);
        let worker = tokio::spawn(deliver(Arc::clone(&shared), receiver, shutdown, grace));
        assert_eq!(arrivals.recv().await, Some(due));
        stop.send(()).unwrap();

        assert_eq!(worker.await.unwrap(), 1, "one delivery is reported pending");
        assert_eq!(state_of(&shared, due), DeliveryState::Delivered);
        assert_eq!(state_of(&shared, waiting), DeliveryState::Pending);
        assert!(
            shared.state().queue.next_due().is_some(),
            "the pending delivery is left on the queue, not failed"
        );
        assert_eq!(arrivals.try_recv().ok(), None, "it was never attempted");
    }

    #[tokio::test]
    async fn an_attempt_still_in_flight_when_the_grace_runs_out_is_abandoned_and_left_pending() {
        let (shared, waiting, due) = world();
        let (receiver, mut arrivals) = Held::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let worker = tokio::spawn(deliver(
            Arc::clone(&shared),
            receiver,
            shutdown,
            Duration::ZERO,
        ));
        assert_eq!(arrivals.recv().await, Some(due));
        stop.send(()).unwrap();

        assert_eq!(
            worker.await.unwrap(),
            2,
            "both deliveries are reported pending"
        );
        assert_eq!(state_of(&shared, due), DeliveryState::Pending);
        assert_eq!(state_of(&shared, waiting), DeliveryState::Pending);
    }
}
