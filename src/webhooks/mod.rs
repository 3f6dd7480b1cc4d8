//! Webhooks, both ends: polyport as a provider (it POSTs signed events to registered endpoints,
//! reliably, in the background) and as a receiver (it accepts signed callbacks safely).
//!
//! Sending. A dispatcher follows the event log (`domain::feed`, like every streaming protocol)
//! and turns each event into one delivery per matching enabled endpoint. A delivery is one
//! message (`webhook-id` stays the same across retries) and its attempts. The worker sends due
//! deliveries with a bounded concurrency, signed as the Standard Webhooks specification says,
//! and treats only 2xx as success. Failures are retried on `webhooks.retry_schedule` (Svix's by
//! default: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) with ±10 % jitter, or after
//! the endpoint's `Retry-After` when it sends one. 410 Gone disables the endpoint at once;
//! `webhooks.disable_after_failures` consecutive failed attempts disable it too, with the reason
//! shown on the endpoint. Requests that cause events never wait for deliveries.
//!
//! Receiving. `POST /v1/webhooks/inbound/{source}` checks the signature against the source's
//! secret in constant time, refuses stale timestamps, remembers every message id so a duplicate
//! is acknowledged but not processed twice, records the raw message before answering, and
//! processes it afterwards.
//!
//! The files, in the order a delivery meets them:
//! - `endpoints`: registering and managing endpoints, and reading what was sent to them, for
//!   callers the service admits (the rule is `domain::access`'s: admins only), over
//!   `registry`, the endpoints as data (which the queue and the sender read too);
//! - `worker`: the dispatcher, the loop that sends what is due, and the drain at shutdown;
//! - `queue`: the deliveries, when each is due, and what an attempt's outcome means next (the
//!   retry schedule, `Retry-After`, auto-disabling);
//! - `sender`: signing and POSTing one attempt (`signing` for the signatures, `ssrf` for the
//!   guard on where it may go);
//! - `receiver`: the inbound side;
//! - `ids` for the typed ids, `clock` for the time they all read (injected, so the unit tests
//!   move it by hand).
//!
//! Simplification: endpoints, deliveries and received messages live in memory. At shutdown,
//! in-flight attempts get the drain period to finish and what is still pending is logged; with
//! a durable store they would be resumed at the next start.

mod clock;
mod endpoints;
mod ids;
mod queue;
mod receiver;
mod registry;
mod sender;
pub mod signing;
pub mod ssrf;
mod worker;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::WebhooksConfig;
use clock::{Clock, Now, SystemClock};
pub(crate) use endpoints::{Endpoints, admit};
pub(crate) use ids::{DeliveryId, EndpointId};
pub(crate) use queue::Delivery;
pub(crate) use receiver::{InboundState, Received, Receiver};
pub(crate) use registry::{Endpoint, EndpointChanges, EndpointStatus, NewEndpoint};

/// Finished deliveries and received messages kept for the logs; older ones are forgotten.
const MAX_LOG: usize = 10_000;

/// The webhook service: the endpoints and their deliveries, the worker that sends them, and the
/// receiver of inbound messages. Built from `[webhooks]` by `Webhooks::try_new`, which refuses
/// an inbound secret that is not a `whsec_` secret; run beside the server by `Webhooks::run`.
pub struct Webhooks {
    shared: Arc<Shared>,
    endpoints: Endpoints,
    receiver: Receiver,
    sender: Arc<sender::Sender>,
}

impl Webhooks {
    /// A service with `config`, or what is wrong with it, naming the setting.
    pub(crate) fn try_new(config: WebhooksConfig) -> Result<Self, String> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let receiver = Receiver::new(&config.inbound, Arc::clone(&clock))?;
        let sender = Arc::new(sender::Sender::new(&config));
        let shared = Arc::new(Shared::new(config, clock));
        Ok(Self {
            endpoints: Endpoints::new(Arc::clone(&shared)),
            shared,
            receiver,
            sender,
        })
    }

    /// Registering and managing endpoints, and reading their deliveries.
    pub(crate) fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The inbound side.
    pub(crate) fn receiver(&self) -> &Receiver {
        &self.receiver
    }

    /// Follows the event log and delivers until `shutdown` completes; then gives in-flight
    /// attempts `grace` to finish.
    pub(crate) async fn run(
        self: Arc<Self>,
        log: Arc<dyn crate::domain::events::EventLog>,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) {
        let shared = Arc::clone(&self.shared);
        worker::run(shared, Arc::clone(&self.sender), log, shutdown, grace).await;
    }
}

/// What the management service and the worker share. The endpoints and the queue are behind one
/// lock because they change together: a failing delivery disables its endpoint, and disabling
/// an endpoint fails what is queued for it.
pub(crate) struct Shared {
    config: WebhooksConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Rung when something becomes due sooner than the worker is waiting for.
    wake: Notify,
}

/// The endpoints and the delivery queue.
#[derive(Default)]
pub(crate) struct State {
    endpoints: registry::Registry,
    queue: queue::Queue,
}

impl Shared {
    fn new(config: WebhooksConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            state: Mutex::default(),
            wake: Notify::new(),
        }
    }

    fn now(&self) -> Now {
        self.clock.now()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation completes before the guard drops; a panic cannot leave half a change.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a message to `endpoint`, due now, and wakes the worker.
    fn enqueue(
        &self,
        endpoint: EndpointId,
        event_type: &str,
        seq: Option<u64>,
        body: String,
    ) -> Delivery {
        let now = self.now();
        let delivery = self
            .state()
            .queue
            .enqueue(endpoint, event_type, seq, body, now);
        self.wake.notify_one();
        delivery
    }
}
