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
    /// Make a demo CA, a server certificate for localhost and client certificates, for HTTPS
    /// and mutual TLS (never for production).
    DevCerts(DevCertsArgs),
}

/// `polyport dev-certs` flags.
#[derive(Debug, Args)]
pub struct DevCertsArgs {
    /// Directory to write the PEM files into (created if missing).
    #[arg(long, value_name = "DIR", default_value = "dev-certs")]
    pub out: PathBuf,

    /// A client certificate to make, with NAME as its common name (CN). Repeat for several.
    #[arg(long = "client", value_name = "NAME", default_value = crate::devcerts::DEFAULT_CLIENT,
          value_parser = client_name)]
    pub clients: Vec<String>,

    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

fn client_name(name: &str) -> Result<String, String> {
    crate::devcerts::check_client_name(name)
        .map(|()| name.to_owned())
        .map_err(|_| crate::devcerts::CLIENT_NAME_RULE.to_owned())
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

    /// No log line per response (server.access_log = false), e.g. for load tests; errors are
    /// still logged.
    #[arg(long)]
    pub no_access_log: bool,

    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key. [config: tls.cert_file]
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert. [config: tls.key_file]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Ask clients for certificates signed by these CAs (PEM): mutual TLS, required unless the
    /// configuration says tls.client_auth = "optional". [config: tls.client_ca_file]
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
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
        if self.no_access_log {
            config.server.access_log = false;
        }
        if let Some(path) = &self.tls_cert {
            config.tls.cert_file = path.clone();
        }
        if let Some(path) = &self.tls_key {
            config.tls.key_file = path.clone();
        }
        if let Some(path) = &self.tls_client_ca {
            config.tls.client_ca_file = path.clone();
        }
        // The flags may complete (or break) what the file set up.
        config.check()?;
        Ok(config)
    }
}

/// Parses the command line, sets up logging and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let _flush_on_exit = init_logging("info");
            serve(args)
        }
        Command::Bench(options) => {
            // A spawned server logging every request would measure the logger: warnings only.
            let _flush_on_exit = init_logging("warn");
            crate::bench::main(options)
        }
        Command::GraphqlSchema => {
            print!("{}", crate::protocols::graphql::sdl());
            ExitCode::SUCCESS
        }
        Command::DevCerts(args) => {
            let _flush_on_exit = init_logging("info");
            dev_certs(args)
        }
    }
}

fn dev_certs(args: DevCertsArgs) -> ExitCode {
    use crate::devcerts::{DevCerts, client_file, client_key_file};
    let certs = match DevCerts::generate(&args.clients) {
        Ok(certs) => certs,
        Err(error) => {
            tracing::error!(%error, "cannot make certificates");
            return ExitCode::FAILURE;
        }
    };
    let written = match certs.write(&args.out, args.force) {
        Ok(written) => written,
        Err(error) => {
            tracing::error!(dir = %args.out.display(), %error, "cannot write certificates");
            return ExitCode::FAILURE;
        }
    };
    let file = |name: &str| args.out.join(name).display().to_string();
    // A config file that serves mutual TLS and makes each client certificate a principal: the
    // first client an admin, any others readonly (edit it to taste).
    let config_path = args.out.join("mtls.toml");
    let principals: Vec<String> = certs
        .clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let role = if i == 0 { "admin" } else { "readonly" };
            format!("  {{ common_name = \"{}\", role = \"{role}\" }},", c.name)
        })
        .collect();
    let config_text = format!(
        "# Written by `polyport dev-certs`: HTTPS with required client certificates, each one a\n\
         # principal (see [auth] certificates in config/polyport.toml). Paths are relative to the\n\
         # directory the server starts in.\n\
         [tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n\n\
         [auth]\ncertificates = [\n{}\n]\n",
        file("server.pem"),
        file("server-key.pem"),
        file("ca.pem"),
        principals.join("\n"),
    );
    if config_path.exists() && !args.force {
        tracing::warn!(file = %config_path.display(), "kept the existing file (--force replaces it)");
    } else if let Err(error) = std::fs::write(&config_path, config_text) {
        tracing::error!(file = %config_path.display(), %error, "cannot write the config file");
        return ExitCode::FAILURE;
    }
    println!("Wrote (a demo CA: never trust it outside a demo):");
    for path in &written {
        println!("  {}", path.display());
    }
    println!("  {}", config_path.display());
    println!();
    println!("HTTPS with required client certificates (mutual TLS), each one a principal:");
    println!("  polyport serve --config {}", config_path.display());
    for client in &certs.clients {
        println!();
        println!(
            "As {} (add --http2 for HTTP/2, negotiated by ALPN):",
            client.name
        );
        println!(
            "  curl --cacert {} --cert {} --key {} https://localhost:8080/v1/orders/1",
            file("ca.pem"),
            file(&client_file(&client.name)),
            file(&client_key_file(&client.name)),
        );
    }
    ExitCode::SUCCESS
}

/// Logs to stderr through a non-blocking writer: a line is formatted on the thread that logs
/// it, queued, and written by one writer thread in batches (one write per batch, flushed when
/// the queue is empty, so a line appears at once on a quiet server), so the access log costs a
/// request no system call. The queue holds 128 000 lines; when it is full a logging thread
/// waits rather than drop a line. Lines still queued are written when the returned guard
/// drops, at exit.
fn init_logging(default_level: &str) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("polyport-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        // For a person: tracing-subscriber's own format, in colour.
        builder.with_ansi(true).init();
    } else {
        // For a file or a collector: the same text, made cheaply (see `logline`).
        builder
            .with_ansi(false)
            .event_format(crate::logline::Line)
            .init();
    }
    guard
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::from(2);
        }
    };
    // The certificate files are checked before anything listens, so a wrong path is a start-up
    // error, not a server that logs its https:// address and then stops. (`App::run` loads
    // them again: reading a few PEM files twice costs nothing.)
    if let Err(error) = crate::gateway::tls::Tls::from_config(&config.tls) {
        tracing::error!(%error, "cannot start");
        return ExitCode::from(2);
    }
    let scheme = if config.tls.enabled() {
        "https"
    } else {
        "http"
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
        if app.gate.auth.is_off() {
            tracing::warn!(
                "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach this port is an admin"
            );
        }
        if !app.gate.limiter.is_enabled() {
            tracing::warn!("rate limiting is OFF: any caller may send as many requests as it likes");
        }
        if let Some(key) = app.gate.auth.dev_key() {
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
            Ok(bound) => tracing::info!("listening on {scheme}://{bound}"),
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
