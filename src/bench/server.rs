//! `--spawn`: the server in this process, on a runtime of its own, pinned away from the load
//! generator where the machine has the cores for it.
//!
//! The server's configuration is built in one place, [`spawn_config`], so settings that would
//! get in a benchmark's way (authentication, rate limits) can be switched off there and nowhere
//! else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use super::cpu::server_thread_name;
use super::{BenchError, BenchOptions};
use crate::app::App;
use crate::config::Config;

/// The name every thread of the load generator's runtime carries.
pub const CLIENT_THREAD: &str = "pp-bench";

/// Demo orders loaded when `--demo-orders` is not given: enough that `get` and `list` do not
/// read the same few orders over and over.
pub const DEFAULT_DEMO_ORDERS: usize = 1_000;

/// The configuration of a spawned server: the defaults, with what a benchmark needs changed.
pub fn spawn_config(opts: &BenchOptions) -> Config {
    let mut config = Config::default();
    config.server.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.data.demo = true;
    config.data.demo_orders = opts.demo_orders.unwrap_or(DEFAULT_DEMO_ORDERS);
    // A create-heavy run at 10 000 creates/s would reach the default 100 000 keys in ten
    // seconds and then get 503s that measure the key limit, not the protocol.
    config.idempotency.max_keys = 10_000_000;
    // Streams still open when the run ends should not hold the exit for the default 10 s.
    config.server.shutdown_grace = Duration::from_secs(1);
    // The bench measures the protocols, not the quota: rate limits off. With --api-key the key
    // becomes an admin key of the spawned server (so the auth gate's cost is in the figures);
    // without one, authentication is off.
    config.rate_limit.enabled = false;
    // Every connection of a run comes from 127.0.0.1 (thousands, for the stream rows), and an
    // open-loop run may briefly have more requests in flight than the shedding cap: the bench
    // measures the protocols, not those defences.
    config.server.max_connections_per_ip = 0;
    config.server.max_requests_in_flight = 0;
    // No log line per response (the bench logs at warn anyway): what `--no-access-log` does.
    config.server.access_log = false;
    match &opts.api_key {
        Some(key) => config.auth.api_keys.push(crate::config::ApiKeyConfig {
            name: "bench".into(),
            role: "admin".into(),
            secret: Some(key.clone()),
            ..Default::default()
        }),
        None => config.auth.insecure_no_auth = true,
    }
    config
}

/// Which cores the two runtimes are pinned to.
#[derive(Debug, Clone, Default)]
pub struct Pinning {
    /// Cores for the server's threads (empty: not pinned).
    pub server: Vec<usize>,
    /// Cores for the load generator's threads (empty: not pinned).
    pub client: Vec<usize>,
    /// What happened, in words, for the report.
    pub description: String,
}

impl Pinning {
    /// Splits the machine's cores between server and load generator: disjoint sets when there
    /// are enough cores for every thread of both, otherwise no pinning at all.
    pub fn plan(opts: &BenchOptions) -> Self {
        if opts.no_pin {
            return Self {
                description: "not pinned (--no-pin)".into(),
                ..Self::default()
            };
        }
        let cores: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        let client_threads = opts.client_threads.max(1);
        if !opts.spawn {
            // Only the load generator is ours: keep it off core 0 when there is more than one.
            return match cores.as_slice() {
                [_, rest @ ..] if rest.len() >= client_threads => Self {
                    client: rest[..client_threads].to_vec(),
                    description: format!(
                        "load generator pinned to cpu {:?}",
                        &rest[..client_threads]
                    ),
                    ..Self::default()
                },
                _ => Self {
                    description: format!("not pinned ({} cores)", cores.len()),
                    ..Self::default()
                },
            };
        }
        let server_threads = opts.server_threads.max(1);
        if cores.len() < server_threads + client_threads {
            return Self {
                description: format!(
                    "not pinned: {} cores for {server_threads} server + {client_threads} client threads",
                    cores.len()
                ),
                ..Self::default()
            };
        }
        let server = cores[..server_threads].to_vec();
        let client = cores[server_threads..server_threads + client_threads].to_vec();
        Self {
            description: format!(
                "server pinned to cpu {server:?}, load generator to cpu {client:?}"
            ),
            server,
            client,
        }
    }
}

/// A runtime builder whose threads carry `name` and are pinned round-robin to `cores`.
pub fn runtime(
    name: &str,
    threads: usize,
    cores: &[usize],
) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all();
    if !cores.is_empty() {
        let cores: Arc<Vec<usize>> = Arc::new(cores.to_vec());
        let next = Arc::new(AtomicUsize::new(0));
        builder.on_thread_start(move || {
            let core = cores[next.fetch_add(1, Ordering::Relaxed) % cores.len()];
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                tracing::warn!(core, "cannot pin a thread");
            }
        });
    }
    builder.build()
}

/// A server running in this process; dropping it stops it.
pub struct SpawnedServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The name all its threads carry.
    pub thread_name: String,
    /// How many orders it holds at start.
    pub orders: usize,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Starts the server on its own runtime (`--server-threads` workers, threads named after the
/// port), listening on 127.0.0.1 on a free port.
pub fn spawn(opts: &BenchOptions, cores: &[usize]) -> Result<SpawnedServer, BenchError> {
    let config = spawn_config(opts);
    // Bound first, so the runtime's threads can be named after the port.
    let std_listener = std::net::TcpListener::bind(config.server.addr)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let thread_name = server_thread_name(addr.port());
    let runtime = runtime(&thread_name, opts.server_threads, cores)?;
    // Loading the demo data happens here, on the caller's thread, so it is not server CPU.
    let app = App::new(config);
    let orders = app.core.store().order_count();
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener)?
    };
    let (tx, rx) = oneshot::channel::<()>();
    let task = runtime.spawn(app.run(listener, async {
        let _ = rx.await;
    }));
    Ok(SpawnedServer {
        addr,
        thread_name,
        orders,
        shutdown: Some(tx),
        task: Some(task),
        runtime: Some(runtime),
    })
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let (Some(runtime), Some(task)) = (self.runtime.take(), self.task.take()) {
            let _ = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(3), task).await });
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}
