//! The command line: `polyport serve` and its flags, layered over the configuration file, and
//! `polyport bench` (its flags live with it, in `bench`).
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
    /// Compare the protocols side by side: the same operations over REST, gRPC, GraphQL,
    /// WebSocket, SSE and long polling, against a running server (--target) or one started
    /// in-process (--spawn). Prints a table; --json, --csv and --report write files.
    Bench(crate::bench::BenchOptions),
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
        Ok(config)
    }
}

/// Parses the command line, sets up logging and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging("info");
            serve(args)
        }
        Command::Bench(options) => {
            // A spawned server logging every request would measure the logger: warnings only.
            init_logging("warn");
            crate::bench::main(options)
        }
        Command::GraphqlSchema => {
            print!("{}", crate::protocols::graphql::sdl());
            ExitCode::SUCCESS
        }
    }
}

fn init_logging(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
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
        let shutdown = shutdown_signal();
        let started = std::time::Instant::now();
        let app = App::new(config);
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
