//! Wiring: builds the core from a configuration, assembles the router, and runs the server.
//!
//! `run` is a function of a bound listener and a shutdown signal (mini-redis's `server::run`),
//! so tests bind `127.0.0.1:0`, start the real server in-process and talk to it over the socket.

use std::future::Future;
use std::sync::Arc;
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
use crate::domain::pagination::PageLimits;
use crate::domain::seed;
use crate::domain::store::MemoryStore;
use crate::gateway::auth::Authenticator;
use crate::gateway::gate::{self, Gate};
use crate::gateway::idempotency::Idempotency;
use crate::gateway::ratelimit::RateLimiter;
use crate::gateway::tls::Tls;
use crate::gateway::{serve, trace};
use crate::protocols;
use crate::protocols::AppState;
use crate::protocols::state::Shared;

/// The server: the state every adapter shares, and the wiring that serves it. It derefs to
/// that state ([`AppState`]), so `app.core` or `app.config` read as they do in an adapter.
#[derive(Clone)]
pub struct App {
    state: AppState,
}

impl std::ops::Deref for App {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.state
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
            // A fresh signing key per process: cursors then last as long as the process does.
            crate::gateway::random::secret_bytes::<32>().to_vec()
        } else {
            config.pagination.cursor_secret.as_bytes().to_vec()
        };
        let limits = PageLimits {
            default: config.pagination.default_limit,
            max: config.pagination.max_limit,
        };
        let core = Core::new(store, events, CursorCodec::new(&secret)).with_page_limits(limits);
        let state = AppState::new(Shared {
            gate: Arc::new(Gate {
                auth,
                limiter: Arc::new(RateLimiter::new(&config.rate_limit)),
                requests: gate::RequestLimits::new(
                    config.server.max_header_field_bytes,
                    config.server.max_requests_in_flight,
                ),
                chaos: Arc::new(crate::gateway::chaos::Chaos::from_config(&config.chaos)?),
            }),
            sse_frames: Arc::default(),
            event_texts: Arc::default(),
            core: Arc::new(core),
            idempotency: Arc::new(Idempotency::new(
                config.idempotency.ttl,
                config.idempotency.max_keys,
            )),
            webhooks: Arc::new(crate::webhooks::Webhooks::try_new(config.webhooks.clone())?),
            streams: crate::gateway::shares::Shares::new(
                config.push.max_streams,
                config.push.max_streams_per_caller,
            ),
            config: Arc::new(config),
            health: tonic_health::server::HealthReporter::new(),
            draining: Arc::new(tokio::sync::watch::Sender::new(false)),
        });
        Ok(Self { state })
    }

    /// The whole HTTP surface: the routes of every protocol inside the layers every request
    /// passes. Layers read top to bottom, outermost first.
    ///
    /// The layers wrap the router once, not each of its routes (as `Router::layer` would):
    /// a request then pays for each layer once, where a layer on every route costs a boxed
    /// copy of the route per layer and per request (measured in BENCHMARKS.md).
    pub fn service(&self) -> impl serve::Application {
        tower::ServiceBuilder::new()
            // Outermost: trace id, request span and log line, problem+json rendering.
            .layer(middleware::from_fn_with_state(
                trace::AccessLog(self.config.server.access_log),
                trace::layer,
            ))
            // Who is calling (credentials to a principal) and whether they may call now (rate
            // limits); refusals in each protocol's idiom.
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self.gate),
                gate::layer,
            ))
            // Bodies over the configured size are refused with 413 while being read.
            .layer(DefaultBodyLimit::max(self.config.server.body_limit_bytes))
            .service(self.router())
    }

    /// The routes of every protocol, without the layers of [`Self::service`].
    fn router(&self) -> Router {
        Router::new()
            .merge(protocols::health::routes())
            .merge(protocols::rest::routes())
            .with_state(self.state.clone())
            // gRPC is more routes on the same router: `/polyport.orders.v1.Orders/GetOrder`, ...
            .merge(protocols::grpc::routes(&self.state))
            .merge(protocols::graphql::routes(&self.state))
            // The workshop page (`/`, `/ui/...`) and the stream tickets its browser streams use.
            .merge(protocols::workshop::routes(&self.state))
            .merge(crate::gateway::auth::tickets::routes(Arc::clone(
                &self.gate.auth,
            )))
            // Chaos knobs for teaching: GET, PUT and DELETE /v1/chaos (admins).
            .merge(crate::gateway::chaos::routes(Arc::clone(&self.gate.chaos)))
            // OAuth 2.0: the token and revocation endpoints (their clients authenticate in the
            // request itself).
            .merge(crate::gateway::auth::oauth::routes(Arc::clone(
                self.gate.auth.tokens(),
            )))
            .fallback(protocols::rest::route_not_found)
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
            let limiter = Arc::clone(&self.gate.limiter);
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
            let state = self.state.clone();
            let log = Arc::clone(self.core.events());
            async move {
                let drained = state.drained();
                Arc::clone(&state.webhooks).run(log, drained, grace).await;
            }
        });
        let result = serve::serve(
            listener,
            self.service(),
            tls,
            shutdown,
            self.config.server.clone(),
        )
        .await;
        sweeper.abort();
        let _ = webhooks.await;
        result
    }
}
