//! The state every adapter reads, built once by `app` and cloned into each handler (one `Arc`:
//! a clone per request and middleware layer is one reference count, not one per part). It
//! lives here, under the wiring and beside the adapters that use it, so that no adapter imports
//! `app` and the imports between the parts of `src/` run one way.

use std::sync::Arc;

use crate::config::Config;
use crate::domain::Core;
use crate::domain::pagination::PageLimits;
use crate::gateway::gate::{Caller, Gate};
use crate::gateway::idempotency::{Idempotency, Recorded};
use crate::gateway::shares::{Share, Shares};
use crate::webhooks::Webhooks;

/// Shared state every adapter reads: cheap to clone (one `Arc`), read through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The handle to `shared`.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    /// The domain core.
    pub core: Arc<Core>,
    /// Idempotency keys, shared by every protocol.
    pub idempotency: Arc<Idempotency<Recorded>>,
    /// The configuration the server was started with.
    pub config: Arc<Config>,
    /// Streaming calls in progress (every protocol's), for readiness and for tests that check
    /// a cancelled stream really stops.
    pub streams: Arc<ActiveStreams>,
    /// Webhook endpoints, deliveries and received messages.
    pub webhooks: Arc<Webhooks>,
    /// Who is calling and whether they may call now: the same gate the HTTP layer uses, for
    /// the checks a WebSocket or gRPC session makes per message.
    pub gate: Arc<Gate>,
    /// Recent events as whole SSE frames, shared by every SSE subscriber.
    pub sse_frames: Arc<crate::wire::RenderedEvents<bytes::Bytes>>,
    /// Recent events as JSON text, shared by every WebSocket subscriber.
    pub event_texts: Arc<crate::wire::RenderedEvents<Arc<str>>>,
    /// The gRPC health status (`grpc.health.v1.Health`), turned NOT_SERVING at shutdown.
    pub health: tonic_health::server::HealthReporter,
    /// True once shutdown has begun.
    pub(crate) draining: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Shared {
    /// Page sizes for list endpoints, on every protocol.
    pub fn page_limits(&self) -> PageLimits {
        self.core.page_limits()
    }

    /// False once shutdown has begun: `/readyz` then answers 503 so load balancers move away.
    pub fn is_ready(&self) -> bool {
        !*self.draining.borrow()
    }

    /// Completes once shutdown has begun. Long-lived streams select on it and end (telling the
    /// client to reconnect elsewhere) instead of holding the drain open until the grace period.
    pub async fn drained(&self) {
        let mut draining = self.draining.subscribe();
        // Err means the sender is gone, which only happens when the app itself is.
        let _ = draining.wait_for(|d| *d).await;
    }
}

/// Streaming calls in progress, in all and per caller (`push.max_streams`,
/// `push.max_streams_per_caller`).
pub type ActiveStreams = Shares<Caller>;

/// One stream in progress; dropping it ends it.
pub type StreamGuard = Share<Caller>;
