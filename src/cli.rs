//! The command line: `polyport serve` and its flags, layered over the configuration file.
//!
//! Precedence, highest first: flags, environment variables (`POLYPORT_ADDR`, `POLYPORT_CONFIG`),
//! the `--config` file, the embedded defaults (`config/polyport.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::Config;

/// One order domain served over REST, gRPC, GraphQL, WebSocket, SSE, long polling and webhooks, on
/// one port.
#[derive(Debug, Parser)]
#[command(name = "polyport", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (in memory, with demo data unless --no-demo-data).
    Serve(ServeArgs),
    /// Print the GraphQL schema (SDL), as checked in at schema.graphql.
    GraphqlSchema,
}

/// `polyport serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 or 0.0.0.0:8080. Port 0 picks a free port; the
    /// bound address is logged either way. [default: 127.0.0.1:8080]
    #[arg(long, env = "POLYPORT_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,

    /// Configuration file (TOML). Fields it leaves out keep their defaults; see
    /// config/polyport.toml for every field, documented.
    #[arg(long, env = "POLYPORT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Start with no customers or orders (the product catalog is still loaded).
    #[arg(long)]
    pub no_demo_data: bool,

    /// How many demo orders to preload (for load tests: 100000 load in well under a second).
    /// [default: 24]
    #[arg(long, value_name = "N", conflicts_with = "no_demo_data")]
    pub demo_orders: Option<usize>,

    /// An API key, as name:role:secret[:customer_id] (role: admin, customer or readonly; a
    /// customer key names its customer). Repeat the flag, or comma-separate keys in the env
    /// variable. Added to the keys of the config file. Note that flags are visible to other
    /// users of the machine (ps); prefer the env variable or the file.
    #[arg(
        long = "api-key",
        env = "POLYPORT_API_KEYS",
        value_name = "KEY",
        value_delimiter = ','
    )]
    pub api_keys: Vec<String>,

    /// Turn authentication off: every caller is an admin. Only for load tests and demos on a
    /// trusted machine; the server says so loudly at start-up.
    #[arg(long)]
    pub insecure_no_auth: bool,

    /// Switch rate limiting off (rate_limit.enabled = false), e.g. for load tests; the server
    /// warns at start-up.
    #[arg(long)]
    pub no_rate_limit: bool,
}

impl ServeArgs {
    /// The configuration these flags select: file (or defaults), then the flags on top.
    pub fn config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(addr) = self.addr {
            config.server.addr = addr;
        }
        if self.no_demo_data {
            config.data.demo = false;
        }
        if let Some(n) = self.demo_orders {
            config.data.demo_orders = n;
        }
        for spec in self.api_keys.iter().filter(|s| !s.trim().is_empty()) {
            let key = crate::gateway::auth::keys::ApiKeys::parse_spec(spec)
                .map_err(crate::config::ConfigError::Invalid)?;
            config.auth.api_keys.push(key);
        }
        if self.insecure_no_auth {
            config.auth.insecure_no_auth = true;
        }
        if self.no_rate_limit {
            config.rate_limit.enabled = false;
        }
        Ok(config)
    }
}

/// Parses the command line, sets up logging and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::GraphqlSchema => {
            print!("{}", crate::protocols::graphql::sdl());
            ExitCode::SUCCESS
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let addr = config.server.addr;
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%addr, %error, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        if let Err(refusal) = crate::gateway::auth::check_exposure(&config.auth, addr) {
            tracing::error!("{refusal}");
            return ExitCode::from(2);
        }
        let shutdown = shutdown_signal();
        let started = std::time::Instant::now();
        let app = match App::try_new(config) {
            Ok(app) => app,
            Err(error) => {
                tracing::error!(%error, "cannot start: invalid configuration");
                return ExitCode::from(2);
            }
        };
        if app.auth.is_off() {
            tracing::warn!(
                "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach this port is an admin"
            );
        }
        if !app.limiter.is_enabled() {
            tracing::warn!("rate limiting is OFF: any caller may send as many requests as it likes");
        }
        if let Some(key) = app.auth.dev_key() {
            tracing::warn!(
                "dev mode: no credentials are configured, so this run has a generated admin key \
                 (send it as 'Authorization: Bearer <key>')"
            );
            // On stdout, alone on its line, so scripts can pick it up.
            println!("POLYPORT_DEV_KEY={key}");
        }
        tracing::info!(
            orders = app.core.store().order_count(),
            load_ms = started.elapsed().as_millis() as u64,
            "data loaded"
        );
        match listener.local_addr() {
            Ok(bound) => tracing::info!("listening on http://{bound}"),
            Err(error) => tracing::warn!(%error, "listening, but the bound address is unknown"),
        }
        match app.run(listener, shutdown).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(%error, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
///
/// The handlers are installed here, before the server logs its address, not when the future is
/// first polled: a signal that arrives as soon as a client sees the server answer must not
/// meet the default disposition (which would kill the process without draining).
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let (mut interrupt, mut terminate) = match (interrupt, terminate) {
            (Ok(i), Ok(t)) => (i, t),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot listen for SIGINT/SIGTERM");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received");
        } else {
            std::future::pending::<()>().await;
        }
    }
}
