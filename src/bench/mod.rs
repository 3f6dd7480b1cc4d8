//! `polyport bench`: the side-by-side load generator. It drives the same logical operations
//! over every protocol against one server and reports, per protocol, throughput, latency
//! percentiles, errors by kind, bytes on the wire per operation and server CPU per operation.
//!
//! A tour:
//! - [`BenchOptions`] are the flags; [`run`] is the whole benchmark as a library call (the
//!   command line and `tests/bench.rs` both use it) and returns a [`report::BenchReport`].
//! - [`server`] starts the server in-process for `--spawn` (config built by
//!   [`server::spawn_config`]), on its own runtime, pinned away from the load generator.
//! - [`load`] runs request/response scenarios (closed or open loop); [`stream`] runs the event
//!   delivery scenario; [`pagination`] compares offset and cursor pages at depth.
//! - One driver per protocol: [`rest`], [`graphql`] (both over [`http`]), [`grpc`], [`ws`],
//!   [`sse`], [`longpoll`]; each validates what it gets back ([`outcome`]).
//! - Measuring: [`histogram`] (HDR latencies), [`wire`] (bytes counted at the socket),
//!   [`cpu`] (server CPU from `/proc`), [`schedule`] (open-loop send times).
//! - [`report`] renders the terminal table, JSON, CSV and the self-contained HTML page.

pub mod cpu;
pub mod fixtures;
pub mod graphql;
pub mod grpc;
pub mod histogram;
pub mod http;
pub mod load;
pub mod longpoll;
pub mod outcome;
pub mod pagination;
pub mod progress;
pub mod report;
pub mod rest;
pub mod schedule;
pub mod server;
pub mod sse;
pub mod stream;
pub mod wire;
pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

use self::cpu::CpuSource;
use self::report::BenchReport;

/// Orders created per second in the stream scenario when `--rate` is not given.
pub const DEFAULT_WRITE_RATE: f64 = 200.0;

/// `polyport bench` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchOptions {
    /// The server to load, e.g. http://127.0.0.1:8080 (plain HTTP). Give this or --spawn.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "spawn",
        required_unless_present = "spawn"
    )]
    pub target: Option<String>,

    /// Start the server in this process instead (on its own runtime, listening on
    /// 127.0.0.1:0, with demo data), so its CPU time per operation can be measured.
    #[arg(long)]
    pub spawn: bool,

    /// Protocols to compare, comma-separated: rest (HTTP/1.1), rest-h2, grpc, graphql
    /// (HTTP/1.1), graphql-h2, ws, sse, longpoll. Default: every protocol that can run the
    /// scenario (sse and longpoll only stream; ws has no list).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub protocols: Vec<Protocol>,

    /// What each operation is: get (one order by id), list (a page of 50 with items), create
    /// (an order, with an idempotency key), mixed (--read-percent gets, the rest creates),
    /// stream (events delivered to --subscribers subscribers while orders are created over
    /// REST at --rate), pagination (REST pages of 50 at --depths, by offset and by cursor).
    #[arg(long, value_enum, default_value = "get")]
    pub scenario: Scenario,

    /// Concurrent connections per protocol (one in-flight operation each).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub connections: usize,

    /// How long each protocol is measured, e.g. 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub duration: Duration,

    /// Load before measuring starts (connections warm, caches full), e.g. 3s; not counted.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, value_name = "TIME")]
    pub warmup: Duration,

    /// Open loop: this many operations per second in total, sent on schedule whether or not
    /// earlier ones were answered; latency counts from the intended send time (no coordinated
    /// omission). Without it, a closed loop: each connection sends as soon as it is answered.
    /// In the stream scenario: orders created per second (default 200).
    #[arg(long, value_name = "OPS")]
    pub rate: Option<f64>,

    /// Stream scenario: subscribers per protocol (each receives every event).
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub subscribers: usize,

    /// Mixed scenario: the percentage of operations that are reads (the rest create orders).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100), value_name = "PCT")]
    pub read_percent: u8,

    /// Pagination scenario: depths (rows skipped) at which to compare offset and cursor pages.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,100000",
        value_name = "LIST"
    )]
    pub depths: Vec<usize>,

    /// Sent as `authorization: Bearer KEY` on every request of every protocol (gRPC metadata,
    /// the WebSocket upgrade request, SSE and long polls included).
    #[arg(
        long,
        env = "POLYPORT_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,

    /// With --target: the server's process id, to report its CPU time per operation (read
    /// from /proc/PID/stat; the whole process, so run nothing else in it).
    #[arg(long, value_name = "PID", conflicts_with = "spawn")]
    pub server_pid: Option<u32>,

    /// With --spawn: the server runtime's worker threads.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub server_threads: usize,

    /// The load generator runtime's worker threads.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub client_threads: usize,

    /// With --spawn: demo orders to preload (default 1000; the pagination scenario raises it
    /// to the deepest --depths plus a page).
    #[arg(long, value_name = "N")]
    pub demo_orders: Option<usize>,

    /// Do not pin the server and the load generator to separate cores.
    #[arg(long)]
    pub no_pin: bool,

    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write one CSV line per protocol to FILE.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Write a self-contained HTML page (inline CSS and SVG charts, no scripts) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    options: BenchOptions,
}

impl Default for BenchOptions {
    /// The command line's defaults with `--spawn`.
    fn default() -> Self {
        match Defaults::try_parse_from(["bench", "--spawn"]) {
            Ok(d) => d.options,
            Err(e) => unreachable!("the default flags parse: {e}"),
        }
    }
}

/// A protocol (and HTTP version) the bench can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Protocol {
    /// REST over HTTP/1.1.
    #[value(name = "rest", alias = "rest-h1")]
    Rest,
    /// REST over HTTP/2 (cleartext, prior knowledge).
    #[value(name = "rest-h2")]
    RestH2,
    /// REST without `include`, over HTTP/1.1: the order, then its customer, then each
    /// product, one call after another (the nested scenario only).
    #[value(name = "rest-cascade")]
    RestCascade,
    /// gRPC (tonic; HTTP/2).
    #[value(name = "grpc")]
    Grpc,
    /// GraphQL over HTTP/1.1.
    #[value(name = "graphql", alias = "graphql-h1")]
    Graphql,
    /// GraphQL over HTTP/2.
    #[value(name = "graphql-h2")]
    GraphqlH2,
    /// The `/v1/ws` WebSocket session.
    #[value(name = "ws", alias = "websocket")]
    Ws,
    /// Server-Sent Events (stream scenario only).
    #[value(name = "sse")]
    Sse,
    /// Long polling (stream scenario only).
    #[value(name = "longpoll", alias = "long-poll")]
    LongPoll,
}

impl Protocol {
    /// Every protocol, in report order.
    pub const ALL: [Protocol; 9] = [
        Self::Rest,
        Self::RestH2,
        Self::RestCascade,
        Self::Grpc,
        Self::Graphql,
        Self::GraphqlH2,
        Self::Ws,
        Self::Sse,
        Self::LongPoll,
    ];

    /// The row label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rest => "rest",
            Self::RestH2 => "rest-h2",
            Self::RestCascade => "rest-cascade",
            Self::Grpc => "grpc",
            Self::Graphql => "graphql",
            Self::GraphqlH2 => "graphql-h2",
            Self::Ws => "ws",
            Self::Sse => "sse",
            Self::LongPoll => "longpoll",
        }
    }

    /// Why this protocol cannot run `scenario`, if it cannot.
    pub fn unsupported(self, scenario: Scenario) -> Option<&'static str> {
        use Scenario::*;
        match (self, scenario) {
            (Self::RestCascade, Get | List | Create | Mixed | Stream | Pagination) => {
                Some("the cascade is how a client without include reads the nested scenario")
            }
            (Self::Sse | Self::LongPoll, Get | List | Nested | Create | Mixed) => {
                Some("a push protocol: it only takes part in the stream scenario")
            }
            (Self::Ws, List) => Some("the WebSocket session has no list command"),
            (Self::Ws, Nested) => Some("the WebSocket session's get returns the order alone"),
            (Self::Rest | Self::RestH2 | Self::Graphql | Self::GraphqlH2, Stream) => Some(
                "no push of its own here (GraphQL subscriptions run over /graphql/ws, not driven by the bench)",
            ),
            (p, Pagination) if p != Self::Rest => Some("pagination is compared over REST"),
            _ => None,
        }
    }
}

impl Protocol {
    /// The calls one operation of `scenario` makes over this protocol, for the report.
    pub fn calls(self, scenario: Scenario) -> &'static str {
        use Scenario::*;
        match (self, scenario) {
            (Self::Rest | Self::RestH2, Get) => "GET /v1/orders/{id}",
            (Self::Rest | Self::RestH2, List) => "GET /v1/orders?limit=50&include=items",
            (Self::Rest | Self::RestH2, Nested) => {
                "GET /v1/orders/{id}?include=customer,items.product (one round trip)"
            }
            (Self::RestCascade, _) => {
                "GET /v1/orders/{id}, GET /v1/customers/{id}, GET /v1/products/{id} per distinct product (one round trip each)"
            }
            (Self::Rest | Self::RestH2, Create) => "POST /v1/orders with an Idempotency-Key",
            (Self::Rest | Self::RestH2, Mixed) => {
                "GET /v1/orders/{id} or POST /v1/orders with an Idempotency-Key"
            }
            (Self::Rest | Self::RestH2, Pagination) => {
                "GET /v1/orders?limit=50&offset=N or &cursor=C"
            }
            (Self::Grpc, Get) => "GetOrder",
            (Self::Grpc, List) => "ListOrders (a server stream of 50)",
            (Self::Grpc, Nested) => {
                "GetOrder, GetCustomer, GetProduct per distinct product (one round trip each)"
            }
            (Self::Grpc, Create) => "CreateOrder with an idempotency-key",
            (Self::Grpc, Mixed) => "GetOrder or CreateOrder",
            (Self::Graphql | Self::GraphqlH2, Get) => "query order(id:)",
            (Self::Graphql | Self::GraphqlH2, List) => "query orders(first: 50)",
            (Self::Graphql | Self::GraphqlH2, Nested) => {
                "query order(id:) { customer items { product } } (one round trip)"
            }
            (Self::Graphql | Self::GraphqlH2, Create) => {
                "mutation createOrder with an Idempotency-Key"
            }
            (Self::Graphql | Self::GraphqlH2, Mixed) => "query order(id:) or mutation createOrder",
            (Self::Ws, Get) => "get_order",
            (Self::Ws, Create) => "create_order",
            (Self::Ws, Mixed) => "get_order or create_order",
            (Self::Ws, Stream) => "subscribe, then events",
            (Self::Sse, _) => "GET /v1/events, then events",
            (Self::LongPoll, _) => "GET /v1/events/poll?since=N, again and again",
            _ => "-",
        }
    }
}

/// What each operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Read one order by id.
    Get,
    /// Read a page of 50 orders with their items.
    List,
    /// Read one order with its customer and each item's product: REST's `include`, one
    /// GraphQL query, and over gRPC one call per resource (GetOrder, GetCustomer, GetProduct).
    Nested,
    /// Create an order (with an idempotency key where the protocol has one).
    Create,
    /// Reads and creates, --read-percent reads.
    Mixed,
    /// Event delivery to subscribers while orders are created.
    Stream,
    /// REST pages at depth: offset vs cursor.
    Pagination,
}

impl Scenario {
    /// The data one operation returns, the same fields over every protocol (the GraphQL
    /// queries select what REST's representation holds), for the report.
    pub fn data(self) -> &'static str {
        match self {
            Self::Get | Self::Create | Self::Mixed => {
                "one order: id, customer_id, status, items (id, product_id, quantity, unit_price_cents), total_cents, currency, created_at, updated_at, version, cancellation"
            }
            Self::List | Self::Pagination => {
                "a page of 50 orders (each as in get) and whether there is a next page"
            }
            Self::Nested => {
                "one order (as in get), its customer (id, name, email) and each item's product (id, name, price_cents, currency)"
            }
            Self::Stream => "each event: its seq, type and the order after the change",
        }
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Nested => "nested",
            Self::Create => "create",
            Self::Mixed => "mixed",
            Self::Stream => "stream",
            Self::Pagination => "pagination",
        }
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Flags that do not go together.
    #[error("{0}")]
    Usage(String),
    /// The target could not be resolved or reached.
    #[error("target: {0}")]
    Target(String),
    /// A runtime or listener could not be set up.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Writing an output file failed.
    #[error("cannot write {path}: {error}")]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// Everything a run needs, resolved once.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The flags.
    pub opts: BenchOptions,
    /// The server's address.
    pub addr: SocketAddr,
    /// Where server CPU is read from.
    pub cpu: CpuSource,
    /// The ids the operations use.
    pub fixtures: fixtures::Fixtures,
}

/// The protocols to run for these options, and the ones left out with the reason.
pub fn plan(opts: &BenchOptions) -> (Vec<Protocol>, Vec<String>) {
    let asked: Vec<Protocol> = if opts.protocols.is_empty() {
        Protocol::ALL.to_vec()
    } else {
        let mut asked = opts.protocols.clone();
        asked.sort();
        asked.dedup();
        asked
    };
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for protocol in asked {
        match protocol.unsupported(opts.scenario) {
            Some(why) if !opts.protocols.is_empty() => {
                skipped.push(format!("{}: {why}", protocol.name()));
            }
            Some(_) => {}
            None => run.push(protocol),
        }
    }
    (run, skipped)
}

/// Runs the benchmark the options describe and returns its report (writing no files).
///
/// Blocking: it builds its own runtimes (the server's with `--spawn`, and the load
/// generator's), so call it from a plain thread, not from inside a runtime.
pub fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    let mut opts = opts.clone();
    if opts.connections == 0 || opts.subscribers == 0 {
        return Err(BenchError::Usage(
            "--connections and --subscribers must be at least 1".into(),
        ));
    }
    if opts.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(BenchError::Usage("--rate must be a positive number".into()));
    }
    if opts.scenario == Scenario::Pagination && opts.spawn {
        let deepest = opts.depths.iter().copied().max().unwrap_or(0);
        let needed = deepest + rest::PAGE;
        if opts.demo_orders.is_none_or(|n| n < needed) {
            opts.demo_orders = Some(needed.max(server::DEFAULT_DEMO_ORDERS));
        }
    }
    let pinning = server::Pinning::plan(&opts);
    let spawned = if opts.spawn {
        Some(server::spawn(&opts, &pinning.server)?)
    } else {
        None
    };
    let runtime = server::runtime(server::CLIENT_THREAD, opts.client_threads, &pinning.client)?;
    let result = runtime.block_on(async {
        let addr = match &spawned {
            Some(server) => server.addr,
            None => resolve(opts.target.as_deref().unwrap_or_default()).await?,
        };
        let cpu = match (&spawned, opts.server_pid) {
            (Some(server), _) => CpuSource::SpawnedThreads(server.thread_name.clone()),
            (None, Some(pid)) => CpuSource::Process(pid),
            (None, None) => CpuSource::None,
        };
        let fixtures = fixtures::Fixtures::load(addr, opts.api_key.as_deref())
            .await
            .map_err(|e| {
                let mut message = format!("cannot read fixtures from {addr}: {e}");
                for hint in outcome::hints([&e.kind()]) {
                    message.push_str("; ");
                    message.push_str(&hint);
                }
                BenchError::Target(message)
            })?;
        let ctx = RunContext {
            opts: opts.clone(),
            addr,
            cpu,
            fixtures,
        };
        let (protocols, skipped) = plan(&opts);
        let mut rows = Vec::new();
        match opts.scenario {
            Scenario::Pagination => rows.extend(pagination::run(&ctx).await),
            Scenario::Stream => {
                for protocol in &protocols {
                    rows.push(stream::run(*protocol, &ctx).await);
                }
            }
            _ => {
                for protocol in &protocols {
                    rows.push(
                        load::run(*protocol, load::Work::Scenario(opts.scenario), &ctx).await,
                    );
                }
            }
        }
        let server = match &spawned {
            Some(s) => format!(
                "spawned in-process at {} ({} orders, {} server threads)",
                s.addr, s.orders, opts.server_threads
            ),
            None => format!("{addr}"),
        };
        Ok::<_, BenchError>(BenchReport::new(
            &ctx,
            server,
            pinning.description.clone(),
            rows,
            skipped,
        ))
    });
    // The load generator's connections close before the server stops.
    drop(runtime);
    drop(spawned);
    result
}

async fn resolve(target: &str) -> Result<SocketAddr, BenchError> {
    let uri: ::http::Uri = target
        .parse()
        .map_err(|e| BenchError::Target(format!("{target}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(BenchError::Target(format!(
            "{target}: only http:// targets are supported"
        )));
    }
    let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(80);
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| BenchError::Target(format!("{target}: {e}")))?
        .next()
        .ok_or_else(|| BenchError::Target(format!("{target}: no address")))
}

/// A report renderer.
type Renderer = fn(&BenchReport) -> String;

/// `polyport bench`: runs, prints the table, writes the files asked for.
pub fn main(opts: BenchOptions) -> ExitCode {
    let report = match run(&opts) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("polyport bench: {error}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report::table::render(&report));
    let outputs: [(&Option<PathBuf>, Renderer); 3] = [
        (&opts.json, report::json::render),
        (&opts.csv, report::csv::render),
        (&opts.report, report::html::render),
    ];
    for (path, render) in outputs {
        if let Some(path) = path {
            if let Err(error) = std::fs::write(path, render(&report)) {
                eprintln!(
                    "{}",
                    BenchError::Output {
                        path: path.clone(),
                        error
                    }
                );
                return ExitCode::FAILURE;
            }
            eprintln!("wrote {}", path.display());
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_options_are_the_command_lines_with_spawn() {
        let opts = BenchOptions::default();
        assert!(opts.spawn);
        assert_eq!(opts.scenario, Scenario::Get);
        assert_eq!(opts.duration, Duration::from_secs(10));
        assert_eq!(opts.depths, vec![10_000, 100_000]);
    }

    #[test]
    fn the_plan_skips_protocols_that_cannot_run_the_scenario_and_says_why_when_asked() {
        let mut opts = BenchOptions::default();
        let (run, skipped) = plan(&opts);
        assert_eq!(
            run,
            vec![
                Protocol::Rest,
                Protocol::RestH2,
                Protocol::Grpc,
                Protocol::Graphql,
                Protocol::GraphqlH2,
                Protocol::Ws
            ]
        );
        assert!(skipped.is_empty());
        opts.scenario = Scenario::List;
        opts.protocols = vec![Protocol::Ws, Protocol::Rest];
        let (run, skipped) = plan(&opts);
        assert_eq!(run, vec![Protocol::Rest]);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].starts_with("ws:"), "{skipped:?}");
        opts.scenario = Scenario::Stream;
        opts.protocols = vec![];
        assert_eq!(
            plan(&opts).0,
            vec![
                Protocol::Grpc,
                Protocol::Ws,
                Protocol::Sse,
                Protocol::LongPoll
            ]
        );
    }
}
