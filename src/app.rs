//! Wiring: builds the core from a configuration, assembles the router, and runs the server.
//!
//! `run` is a function of a bound listener and a shutdown signal (mini-redis's `server::run`),
//! so tests bind `127.0.0.1:0`, start the real server in-process and talk to it over the socket.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::domain::Core;
use crate::domain::events::MemoryEventLog;
use crate::domain::pagination::CursorCodec;
use crate::domain::seed;
use crate::domain::store::MemoryStore;
use crate::gateway::auth::Authenticator;
use crate::gateway::idempotency::{Idempotency, Recorded};
use crate::gateway::ratelimit::RateLimiter;
use crate::gateway::tls::Tls;
use crate::gateway::{gate, serve, trace};
use crate::protocols;
use crate::protocols::rest::listing::PageLimits;

/// Shared state every adapter reads: cheap to clone (a handful of `Arc`s).
#[derive(Clone)]
pub struct App {
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
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Who is calling: API keys, tokens, certificates.
    pub auth: Arc<Authenticator>,
    /// Requests per caller (principal, or client IP when anonymous).
    pub limiter: Arc<RateLimiter>,
    /// Recent events as JSON text, shared by every SSE subscriber.
    pub rendered_events: Arc<protocols::push::RenderedEvents>,
    /// The gRPC health status (`grpc.health.v1.Health`), turned NOT_SERVING at shutdown.
    pub health: tonic_health::server::HealthReporter,
    draining: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Counts streaming calls in progress.
#[derive(Debug, Default)]
pub struct ActiveStreams(AtomicUsize);

/// One stream in progress; dropping it ends it.
#[derive(Debug)]
pub struct StreamGuard(Arc<ActiveStreams>);

impl ActiveStreams {
    /// Marks a stream as started unless `max` are already in progress (atomically: two
    /// connections arriving together cannot both take the last place).
    pub fn try_enter(self: &Arc<Self>, max: usize) -> Option<StreamGuard> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamGuard(Arc::clone(self)))
    }

    /// How many streams are in progress.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl App {
    /// Builds the in-memory store and event log, loading demo data if configured.
    ///
    /// # Panics
    /// If the configuration is invalid (see [`App::try_new`]).
    pub fn new(config: Config) -> Self {
        Self::try_new(config).unwrap_or_else(|error| panic!("invalid configuration: {error}"))
    }

    /// Like [`App::new`], but a bad credential setting is an error naming it.
    pub fn try_new(config: Config) -> Result<Self, String> {
        let auth = Arc::new(Authenticator::from_config(&config.auth)?);
        let store = Arc::new(MemoryStore::new());
        if config.data.demo {
            seed::load(store.as_ref(), config.data.demo_orders);
        } else {
            // The catalog is reference data, not demo data: without it no order can be placed.
            seed::load_catalog(store.as_ref());
        }
        let events = Arc::new(MemoryEventLog::new(
            config.events.retain,
            config.events.subscriber_buffer,
        ));
        let secret = if config.pagination.cursor_secret.is_empty() {
            uuid::Uuid::new_v4().as_bytes().to_vec()
        } else {
            config.pagination.cursor_secret.as_bytes().to_vec()
        };
        Ok(Self {
            auth,
            limiter: Arc::new(RateLimiter::new(&config.rate_limit)),
            rendered_events: Arc::default(),
            core: Arc::new(Core::new(store, events, CursorCodec::new(&secret))),
            idempotency: Arc::new(Idempotency::new(
                config.idempotency.ttl,
                config.idempotency.max_keys,
            )),
            webhooks: Arc::new(crate::webhooks::Webhooks::try_new(config.webhooks.clone())?),
            config: Arc::new(config),
            streams: Arc::default(),
            health: tonic_health::server::HealthReporter::new(),
            draining: Arc::new(tokio::sync::watch::Sender::new(false)),
        })
    }

    /// Page sizes for list endpoints.
    pub fn page_limits(&self) -> PageLimits {
        PageLimits {
            default: self.config.pagination.default_limit,
            max: self.config.pagination.max_limit,
        }
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

    /// The whole HTTP surface. Layers read top to bottom, outermost first.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(protocols::health::routes())
            .merge(protocols::rest::routes())
            .with_state(self.clone())
            // gRPC is more routes on the same router: `/polyport.orders.v1.Orders/GetOrder`, ...
            .merge(protocols::grpc::routes(self))
            .merge(protocols::graphql::routes(self))
            // OAuth 2.0: the token and revocation endpoints (their clients authenticate in the
            // request itself).
            .merge(crate::gateway::auth::oauth::routes(Arc::clone(
                self.auth.tokens(),
            )))
            .fallback(protocols::rest::route_not_found)
            // Bodies over the configured size are refused with 413 while being read.
            .layer(DefaultBodyLimit::max(self.config.server.body_limit_bytes))
            // Who is calling (credentials to a principal) and whether they may call now (rate
            // limits); refusals in each protocol's idiom.
            .layer(middleware::from_fn_with_state(self.clone(), gate::layer))
            // Outermost: trace id, request span and log line, problem+json rendering.
            .layer(middleware::from_fn_with_state(
                trace::AccessLog(self.config.server.access_log),
                trace::layer,
            ))
    }

    /// Serves on `listener` (over TLS when `[tls]` names a certificate) until `shutdown`
    /// completes, then drains in-flight requests. Fails at once if the TLS files cannot be loaded.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        // Certificates are read before anything starts: a bad path fails here, clearly.
        let tls = Tls::from_config(&self.config.tls)?;
        let sweeper = tokio::spawn({
            let idempotency = Arc::clone(&self.idempotency);
            let limiter = Arc::clone(&self.limiter);
            async move {
                // Forget what no longer matters: expired idempotency keys, callers whose quota
                // is full again.
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                let mut n = 0u64;
                loop {
                    tick.tick().await;
                    limiter.sweep();
                    if n.is_multiple_of(6) {
                        idempotency.sweep();
                    }
                    n += 1;
                }
            }
        });
        self.health
            .set_service_status(protocols::grpc::SERVICE_NAME, ServingStatus::Serving)
            .await;
        let draining = Arc::clone(&self.draining);
        let health = self.health.clone();
        let shutdown = async move {
            shutdown.await;
            draining.send_replace(true);
            for service in ["", protocols::grpc::SERVICE_NAME] {
                health
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
        };
        let grace = self.config.server.shutdown_grace;
        // Webhook deliveries run beside the server and drain with it.
        let webhooks = tokio::spawn({
            let app = self.clone();
            let log = Arc::clone(self.core.events());
            async move {
                let drained = app.drained();
                Arc::clone(&app.webhooks).run(log, drained, grace).await;
            }
        });
        let result = serve::serve(listener, self.router(), tls, shutdown, grace).await;
        sweeper.abort();
        let _ = webhooks.await;
        result
    }
}
