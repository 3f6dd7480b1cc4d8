//! The delivery queue: every delivery with its attempts, which are due and when, and what an
//! attempt's outcome means for what follows.
//!
//! The rules, all in [`Queue::settle`]: a 2xx delivers and ends the endpoint's run of failures.
//! A 410 Gone fails the delivery and disables the endpoint at once. Any other answer, or none,
//! is a failed attempt: the endpoint's run of failures grows, and at
//! `webhooks.disable_after_failures` the endpoint is disabled; otherwise attempt `n` (from 0)
//! is due `retry_schedule[n]` ± 10 % after the failure, or after `Retry-After` if the endpoint
//! asked for longer, and once the schedule is used up the delivery fails. Disabling an
//! endpoint fails its other pending deliveries, each with a last log entry saying why.
//!
//! Nothing here reads a clock or sleeps: the caller passes the time in ([`Now`]), which is what
//! lets the tests below walk a delivery through its whole schedule in microseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use super::MAX_LOG;
use super::clock::Now;
use super::ids::{DeliveryId, EndpointId};
use super::registry::Endpoint;
use crate::config::WebhooksConfig;
use crate::gateway::ApiError;
use crate::gateway::error::kind;

/// What one attempt came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The endpoint answered `status`, and maybe `Retry-After` (in seconds, at most a day).
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer came: refused by the SSRF guard, unreachable, timed out.
    NoAnswer(String),
}

impl Outcome {
    /// The HTTP status answered, if one was.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Self::Answered { status, .. } => Some(*status),
            Self::NoAnswer(_) => None,
        }
    }

    /// What went wrong, for the delivery log: nothing for a 2xx or a 410 (whose status says it).
    pub(crate) fn error(&self) -> Option<String> {
        match self {
            Self::Answered { status, .. } if (200..300).contains(status) || *status == 410 => None,
            Self::Answered { status, .. } => Some(format!("HTTP {status}")),
            Self::NoAnswer(error) => Some(error.clone()),
        }
    }
}

/// One try at delivering.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    /// When it was sent.
    pub(crate) at: SystemTime,
    /// The HTTP status answered, if one was.
    pub(crate) status: Option<u16>,
    /// What went wrong, if anything did.
    pub(crate) error: Option<String>,
    pub(crate) latency: Duration,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryState {
    /// Waiting for its next attempt (or in the middle of one).
    Pending,
    /// An attempt got a 2xx.
    Delivered,
    /// Out of attempts, or the endpoint was disabled.
    Failed,
}

impl DeliveryState {
    /// The name on the wire.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// One message to one endpoint, with its attempts.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) id: DeliveryId,
    pub(crate) endpoint_id: EndpointId,
    pub(crate) event_type: String,
    /// The event's seq, for domain events.
    pub(crate) seq: Option<u64>,
    /// The JSON body sent.
    pub(crate) body: String,
    pub(crate) state: DeliveryState,
    /// Every attempt, oldest first.
    pub(crate) attempts: Vec<Attempt>,
    /// When the next attempt is due, while pending.
    pub(crate) next_attempt_at: Option<SystemTime>,
    pub(crate) created_at: SystemTime,
}

impl Delivery {
    fn finish(&mut self, state: DeliveryState) {
        self.state = state;
        self.next_attempt_at = None;
    }

    /// Fails it without another attempt, with a last log entry saying why.
    fn fail(&mut self, reason: &str, at: SystemTime) {
        self.finish(DeliveryState::Failed);
        self.attempts.push(Attempt {
            at,
            status: None,
            error: Some(reason.to_owned()),
            latency: Duration::ZERO,
        });
    }
}

/// The deliveries and their due times.
#[derive(Default)]
pub(crate) struct Queue {
    /// In creation order, since ids are issued in increasing order.
    deliveries: BTreeMap<DeliveryId, Delivery>,
    issued: u64,
    /// Pending deliveries waiting for an attempt, by due time.
    due: BTreeSet<(Instant, DeliveryId)>,
}

impl Queue {
    /// Adds a delivery, due at once.
    pub(crate) fn enqueue(
        &mut self,
        endpoint_id: EndpointId,
        event_type: &str,
        seq: Option<u64>,
        body: String,
        now: Now,
    ) -> Delivery {
        self.issued += 1;
        let id = DeliveryId::issued(self.issued);
        let delivery = Delivery {
            id,
            endpoint_id,
            event_type: event_type.to_owned(),
            seq,
            body,
            state: DeliveryState::Pending,
            attempts: Vec::new(),
            next_attempt_at: Some(now.wall),
            created_at: now.wall,
        };
        self.deliveries.insert(id, delivery.clone());
        self.forget_old_deliveries();
        self.due.insert((now.instant, id));
        delivery
    }

    /// Drops the oldest finished deliveries beyond [`MAX_LOG`]; pending ones are always kept.
    fn forget_old_deliveries(&mut self) {
        let excess = self.deliveries.len().saturating_sub(MAX_LOG);
        if excess == 0 {
            return;
        }
        let dropped: Vec<DeliveryId> = self
            .deliveries
            .values()
            .filter(|d| d.state != DeliveryState::Pending)
            .map(|d| d.id)
            .take(excess)
            .collect();
        for id in dropped {
            self.deliveries.remove(&id);
        }
    }

    pub(crate) fn get(&self, id: DeliveryId) -> Option<&Delivery> {
        self.deliveries.get(&id)
    }

    /// The deliveries to `endpoint`, newest first.
    pub(crate) fn to_endpoint(&self, endpoint: EndpointId) -> Vec<Delivery> {
        self.deliveries
            .values()
            .rev()
            .filter(|d| d.endpoint_id == endpoint)
            .cloned()
            .collect()
    }

    /// How many deliveries are pending, queued or in the middle of an attempt.
    pub(crate) fn pending(&self) -> usize {
        self.deliveries
            .values()
            .filter(|d| d.state == DeliveryState::Pending)
            .count()
    }

    /// When the next attempt is due, if any is queued.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Takes the delivery due first off the queue, if it is due by `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<DeliveryId> {
        let (at, _) = self.due.first()?;
        if *at > now {
            return None;
        }
        self.due.pop_first().map(|(_, id)| id)
    }

    /// Puts a delivered or failed delivery back on the queue, due now (a manual retry).
    pub(crate) fn retry(&mut self, id: DeliveryId, now: Now) -> Result<Delivery, ApiError> {
        let delivery = self.deliveries.get_mut(&id).ok_or_else(|| {
            ApiError::from(crate::domain::DomainError::not_found(
                DeliveryId::RESOURCE,
                id,
            ))
        })?;
        if delivery.state == DeliveryState::Pending {
            return Err(ApiError::new(
                &kind::INVALID_STATE,
                "the delivery is already pending; its next attempt is scheduled",
            ));
        }
        delivery.state = DeliveryState::Pending;
        delivery.next_attempt_at = Some(now.wall);
        self.due.insert((now.instant, id));
        Ok(delivery.clone())
    }

    /// Fails a delivery taken off the queue without attempting it, saying why.
    pub(crate) fn fail(&mut self, id: DeliveryId, reason: &str, at: SystemTime) {
        if let Some(delivery) = self.deliveries.get_mut(&id) {
            delivery.fail(reason, at);
        }
    }

    /// Fails every pending delivery to `endpoint` (but `except`) now, because the endpoint was
    /// deleted or disabled, taking them off the queue.
    pub(crate) fn fail_pending(
        &mut self,
        endpoint: EndpointId,
        reason: &str,
        except: Option<DeliveryId>,
        at: SystemTime,
    ) {
        let mut failed = BTreeSet::new();
        for delivery in self.deliveries.values_mut() {
            if delivery.endpoint_id == endpoint
                && delivery.state == DeliveryState::Pending
                && except != Some(delivery.id)
            {
                delivery.fail(reason, at);
                failed.insert(delivery.id);
            }
        }
        if !failed.is_empty() {
            self.due.retain(|(_, id)| !failed.contains(id));
        }
    }

    /// Records the attempt at delivery `id`, sent at `started` with `outcome`, and decides what
    /// follows (see the module documentation). `endpoint` is the delivery's endpoint, unless it
    /// was deleted meanwhile. Returns true when a retry was queued.
    pub(crate) fn settle(
        &mut self,
        id: DeliveryId,
        endpoint: Option<&mut Endpoint>,
        outcome: Outcome,
        started: Now,
        now: Now,
        config: &WebhooksConfig,
    ) -> bool {
        let Some(delivery) = self.deliveries.get_mut(&id) else {
            return false;
        };
        delivery.attempts.push(Attempt {
            at: started.wall,
            status: outcome.status(),
            error: outcome.error(),
            latency: now.instant.saturating_duration_since(started.instant),
        });
        let retry_after = match outcome {
            Outcome::Answered { status, .. } if (200..300).contains(&status) => {
                delivery.finish(DeliveryState::Delivered);
                if let Some(endpoint) = endpoint {
                    endpoint.succeeded();
                }
                return false;
            }
            Outcome::Answered { status: 410, .. } => {
                delivery.finish(DeliveryState::Failed);
                if let Some(endpoint) = endpoint {
                    self.disable(endpoint, "the endpoint answered 410 Gone".into(), id, now);
                }
                return false;
            }
            Outcome::Answered { retry_after, .. } => retry_after,
            Outcome::NoAnswer(_) => None,
        };
        if let Some(endpoint) = endpoint {
            let failures = endpoint.failed();
            if failures >= config.disable_after_failures {
                delivery.finish(DeliveryState::Failed);
                let reason = format!("{failures} consecutive failed attempts");
                self.disable(endpoint, reason, id, now);
                return false;
            }
        }
        let Some(&delay) = config.retry_schedule.get(delivery.attempts.len()) else {
            delivery.finish(DeliveryState::Failed);
            return false;
        };
        // Retry-After means "not before": never sooner than the schedule.
        let delay = jitter(delay, random_unit()).max(retry_after.unwrap_or_default());
        delivery.next_attempt_at = Some(now.wall + delay);
        self.due.insert((now.instant + delay, id));
        true
    }

    /// Disables `endpoint`, saying why, and fails its pending deliveries but `except`.
    fn disable(&mut self, endpoint: &mut Endpoint, reason: String, except: DeliveryId, now: Now) {
        tracing::warn!(endpoint = %endpoint.id, %reason, "webhook endpoint disabled");
        self.fail_pending(
            endpoint.id,
            "the endpoint was disabled",
            Some(except),
            now.wall,
        );
        endpoint.disable(reason, now.wall);
    }
}

/// `delay` ± 10 %, so endpoints recovering from an outage are not hit by every retry at once;
/// `unit` (from 0 to 1) says where in that range.
fn jitter(delay: Duration, unit: f64) -> Duration {
    delay.mul_f64(0.9 + 0.2 * unit)
}

/// A random number from 0 to 1 (no secret: the thread's fast generator will do).
fn random_unit() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::webhooks::clock::{Clock, ManualClock};
    use crate::webhooks::registry::{EndpointStatus, Registry};
    use crate::webhooks::signing::Secret;

    const MINUTE: Duration = Duration::from_secs(60);

    /// One endpoint and its queue, on a clock that moves only when an attempt is due.
    struct World {
        clock: Arc<ManualClock>,
        config: WebhooksConfig,
        endpoints: Registry,
        endpoint: EndpointId,
        queue: Queue,
    }

    impl World {
        fn new(retry_schedule: &[Duration], disable_after_failures: u32) -> Self {
            let clock = ManualClock::new();
            let mut endpoints = Registry::default();
            let url = url::Url::parse("http://127.0.0.1:9/hook").unwrap();
            let endpoint = endpoints
                .register(
                    url,
                    vec![],
                    String::new(),
                    Secret::generate(),
                    clock.now().wall,
                )
                .unwrap()
                .id;
            let config = WebhooksConfig {
                retry_schedule: retry_schedule.to_vec(),
                disable_after_failures,
                ..WebhooksConfig::default()
            };
            Self {
                clock,
                config,
                endpoints,
                endpoint,
                queue: Queue::default(),
            }
        }

        fn enqueue(&mut self) -> DeliveryId {
            let now = self.clock.now();
            let body = "{}".to_owned();
            self.queue
                .enqueue(self.endpoint, "order.created", None, body, now)
                .id
        }

        /// Moves the clock to the next due time, takes that delivery off the queue and settles
        /// its attempt with `outcome`. Returns the delivery and whether a retry was queued.
        fn attempt(&mut self, outcome: Outcome) -> (DeliveryId, bool) {
            let due = self.queue.next_due().expect("a delivery is due");
            self.clock.advance_to(due);
            let now = self.clock.now();
            let id = self.queue.take_due(now.instant).expect("due now");
            let endpoint = self.endpoints.get_mut(self.endpoint);
            let retrying = self
                .queue
                .settle(id, endpoint, outcome, now, now, &self.config);
            (id, retrying)
        }

        fn delivery(&self, id: DeliveryId) -> &Delivery {
            self.queue.get(id).expect("kept")
        }

        fn endpoint_status(&self) -> &EndpointStatus {
            &self
                .endpoints
                .get(self.endpoint)
                .expect("registered")
                .status
        }
    }

    fn answered(status: u16) -> Outcome {
        Outcome::Answered {
            status,
            retry_after: None,
        }
    }

    fn statuses(delivery: &Delivery) -> Vec<Option<u16>> {
        delivery.attempts.iter().map(|a| a.status).collect()
    }

    fn disabled_because(status: &EndpointStatus) -> Option<&str> {
        match status {
            EndpointStatus::Enabled => None,
            EndpointStatus::Disabled { reason, .. } => Some(reason),
        }
    }

    #[test]
    fn jitter_spreads_a_delay_by_a_tenth_either_way() {
        let delay = Duration::from_secs(10);
        assert_eq!(jitter(delay, 0.0), Duration::from_secs(9));
        assert_eq!(jitter(delay, 0.5), delay);
        assert_eq!(jitter(delay, 1.0), Duration::from_secs(11));
        assert_eq!(jitter(Duration::ZERO, 1.0), Duration::ZERO);
    }

    #[test]
    fn attempt_n_is_due_its_scheduled_delay_after_the_last_failure_give_or_take_a_tenth() {
        let schedule = [
            Duration::ZERO,
            Duration::from_secs(5),
            5 * MINUTE,
            30 * MINUTE,
        ];
        let mut world = World::new(&schedule, 100);
        let id = world.enqueue();
        assert_eq!(
            world.queue.next_due(),
            Some(world.clock.now().instant),
            "the first attempt is due at once"
        );
        for (n, &delay) in schedule.iter().enumerate().skip(1) {
            let failed_at = world.queue.next_due().unwrap();
            assert_eq!(world.attempt(answered(500)), (id, true));
            let due = world.queue.next_due().unwrap();
            let waited = due - failed_at;
            assert!(
                (jitter(delay, 0.0)..=jitter(delay, 1.0)).contains(&waited),
                "attempt {n} is due {waited:?} after the failure; the schedule says {delay:?}"
            );
            assert_eq!(
                world.queue.take_due(due - Duration::from_nanos(1)),
                None,
                "attempt {n} is not due before its time"
            );
            let shown = world.delivery(id).next_attempt_at.unwrap();
            assert_eq!(shown, world.clock.now().wall + waited, "the log shows when");
        }
        assert_eq!(
            world.attempt(answered(500)),
            (id, false),
            "the schedule is used up"
        );
        let delivery = world.delivery(id);
        assert_eq!(delivery.state, DeliveryState::Failed);
        assert_eq!(delivery.next_attempt_at, None);
        assert_eq!(statuses(delivery), [Some(500); 4]);
        assert_eq!(world.queue.next_due(), None);
        assert_eq!(world.endpoint_status(), &EndpointStatus::Enabled);
    }

    #[test]
    fn a_retry_after_longer_than_the_schedule_sets_the_next_attempt_and_a_shorter_one_does_not() {
        let mut world = World::new(&[Duration::ZERO, 5 * MINUTE, 5 * MINUTE], 100);
        world.enqueue();
        let cases = [
            (
                Duration::from_secs(3600),
                Duration::from_secs(3600)..=Duration::from_secs(3600),
            ),
            (
                Duration::from_secs(1),
                jitter(5 * MINUTE, 0.0)..=jitter(5 * MINUTE, 1.0),
            ),
        ];
        for (retry_after, expected) in cases {
            let failed_at = world.queue.next_due().unwrap();
            let outcome = Outcome::Answered {
                status: 429,
                retry_after: Some(retry_after),
            };
            assert!(world.attempt(outcome).1);
            let waited = world.queue.next_due().unwrap() - failed_at;
            assert!(
                expected.contains(&waited),
                "Retry-After {retry_after:?}: due after {waited:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn an_endpoint_failing_disable_after_failures_attempts_in_a_row_is_disabled_with_its_queue() {
        let mut world = World::new(&[Duration::ZERO, MINUTE, MINUTE, MINUTE], 3);
        let first = world.enqueue();
        world.attempt(answered(500));
        world.attempt(Outcome::NoAnswer("timed out".into()));
        assert_eq!(world.attempt(answered(204)), (first, false));
        assert_eq!(world.delivery(first).state, DeliveryState::Delivered);

        // The success ended the run: two more failures are not yet three in a row.
        let (a, b) = (world.enqueue(), world.enqueue());
        world.attempt(answered(500));
        world.attempt(answered(503));
        assert_eq!(world.endpoint_status(), &EndpointStatus::Enabled);

        let (third, retrying) = world.attempt(answered(500));
        assert!(!retrying);
        assert_eq!(
            disabled_because(world.endpoint_status()),
            Some("3 consecutive failed attempts")
        );
        let other = if third == a { b } else { a };
        let failed = world.delivery(third);
        assert_eq!(failed.state, DeliveryState::Failed);
        assert_eq!(failed.attempts.last().unwrap().status, Some(500));
        let failed_with_it = world.delivery(other);
        assert_eq!(failed_with_it.state, DeliveryState::Failed);
        assert_eq!(
            failed_with_it.attempts.last().unwrap().error.as_deref(),
            Some("the endpoint was disabled")
        );
        assert_eq!(world.queue.next_due(), None, "nothing is left to send");
        assert_eq!(world.delivery(first).state, DeliveryState::Delivered);
    }

    #[test]
    fn a_410_gone_fails_the_delivery_and_disables_the_endpoint_at_once() {
        let mut world = World::new(&[Duration::ZERO, MINUTE], 20);
        let (gone, queued) = (world.enqueue(), world.enqueue());
        assert_eq!(world.attempt(answered(410)), (gone, false));
        assert_eq!(
            disabled_because(world.endpoint_status()),
            Some("the endpoint answered 410 Gone")
        );
        let delivery = world.delivery(gone);
        assert_eq!(delivery.state, DeliveryState::Failed);
        assert_eq!(statuses(delivery), [Some(410)]);
        assert_eq!(delivery.attempts[0].error, None, "the status says it");
        let queued = world.delivery(queued);
        assert_eq!(queued.state, DeliveryState::Failed);
        assert_eq!(
            queued.attempts.last().unwrap().error.as_deref(),
            Some("the endpoint was disabled")
        );
        assert_eq!(world.queue.next_due(), None);
    }
}
