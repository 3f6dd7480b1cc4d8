//! The report: one row per protocol (or per pagination variant), the run's settings, and the
//! "who wins what" summary. Rendered by [`table`] (terminal), [`json`], [`csv`] and [`html`].

pub mod csv;
pub mod html;
pub mod json;
pub mod table;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::histogram::{LatencySummary, Recorder};
use super::wire::WireSnapshot;
use super::{RunContext, Scenario};

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// polyport's version.
    pub version: String,
    /// The scenario.
    pub scenario: String,
    /// "closed loop, N connections" or "open loop, R ops/s over N connections".
    pub mode: String,
    /// Connections per protocol (subscribers in the stream scenario).
    pub connections: usize,
    /// The open-loop rate, if any.
    pub rate: Option<f64>,
    /// Measured seconds per protocol.
    pub duration_s: f64,
    /// Warm-up seconds per protocol.
    pub warmup_s: f64,
    /// The server and how it was run.
    pub server: String,
    /// Whether and how threads were pinned to cores.
    pub pinning: String,
    /// What the server CPU column measures.
    pub cpu_source: String,
    /// The measurements.
    pub rows: Vec<Row>,
    /// Protocols asked for but not run, with the reason.
    pub skipped: Vec<String>,
    /// What one operation returns (the same data on every row) and, per row, the calls it
    /// takes.
    #[serde(default)]
    pub data: Vec<String>,
    /// One line: which protocol wins what.
    pub summary: String,
    /// What to do about the errors seen (authentication, rate limits).
    pub hints: Vec<String>,
}

/// One protocol's measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Protocol (and variant).
    pub protocol: String,
    /// Scenario.
    pub scenario: String,
    /// Successful operations in the measured window (events delivered, for stream).
    pub ops: u64,
    /// Failed operations in the window.
    pub errors: u64,
    /// Failures by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Successful operations per second.
    pub throughput: f64,
    /// Latency percentiles (write-to-delivery, for stream).
    pub latency: LatencySummary,
    /// Bytes the client sent per operation, headers and framing included.
    pub bytes_sent_per_op: f64,
    /// Bytes the client received per operation, headers and framing included.
    pub bytes_received_per_op: f64,
    /// Server CPU microseconds per operation, where measured.
    pub server_cpu_us_per_op: Option<f64>,
    /// Anything a reader must know to read the row right.
    pub note: Option<String>,
}

/// Raw measurements of one row, before dividing by the operation count.
#[derive(Debug)]
pub struct Measured {
    /// Row label.
    pub label: String,
    /// Scenario.
    pub scenario: Scenario,
    /// The measured window.
    pub duration: Duration,
    /// Latencies of successful operations.
    pub recorder: Recorder,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Bytes in the window.
    pub wire: WireSnapshot,
    /// Server CPU in the window.
    pub cpu: Option<Duration>,
    /// A note for the row.
    pub note: Option<String>,
}

impl Measured {
    /// Nothing measured yet.
    pub fn new(label: String, scenario: Scenario, duration: Duration) -> Self {
        Self {
            label,
            scenario,
            duration,
            recorder: Recorder::default(),
            errors: BTreeMap::new(),
            wire: WireSnapshot::default(),
            cpu: None,
            note: None,
        }
    }

    /// Divides by the operation count.
    pub fn into_row(self) -> Row {
        let ops = self.recorder.count();
        let per_op = |total: f64| if ops == 0 { 0.0 } else { total / ops as f64 };
        Row {
            protocol: self.label,
            scenario: self.scenario.name().to_owned(),
            ops,
            errors: self.errors.values().sum(),
            errors_by_kind: self.errors,
            throughput: ops as f64 / self.duration.as_secs_f64().max(f64::MIN_POSITIVE),
            latency: self.recorder.summary(),
            bytes_sent_per_op: per_op(self.wire.sent as f64),
            bytes_received_per_op: per_op(self.wire.received as f64),
            server_cpu_us_per_op: self.cpu.map(|cpu| per_op(cpu.as_secs_f64() * 1e6)),
            note: self.note,
        }
    }
}

/// The report's data lines: what every row's operation returns, then each row's calls.
fn data(scenario: Scenario, rows: &[Row]) -> Vec<String> {
    let calls = rows.iter().filter_map(|r| {
        // A row is named after its protocol, or its protocol and a variant ("rest cursor@500").
        let name = r.protocol.split(' ').next().unwrap_or_default();
        let protocol = super::Protocol::ALL
            .into_iter()
            .find(|p| p.name() == name)?;
        let calls = match (scenario, r.protocol.contains("cursor@")) {
            // The pagination rows differ by how they reach their page.
            (Scenario::Pagination, true) => {
                "GET /v1/orders?limit=50&cursor=C (the cursor that points at that depth)"
            }
            (Scenario::Pagination, false) => "GET /v1/orders?limit=50&offset=N",
            _ => protocol.calls(scenario),
        };
        Some(format!("{}: {calls}", r.protocol))
    });
    std::iter::once(format!("every row returns {}", scenario.data()))
        .chain(calls)
        .collect()
}

impl BenchReport {
    /// Assembles the report.
    pub fn new(
        ctx: &RunContext,
        server: String,
        pinning: String,
        rows: Vec<Row>,
        skipped: Vec<String>,
    ) -> Self {
        let opts = &ctx.opts;
        let mode = match (opts.scenario, opts.rate) {
            (Scenario::Stream, rate) => format!(
                "{} subscribers per protocol, orders created over REST at {}/s; an op is one event delivered to one subscriber, latency runs from the write's intended send time to delivery, bytes are the subscribers' connections only",
                opts.subscribers,
                rate.unwrap_or(super::DEFAULT_WRITE_RATE)
            ),
            (_, Some(rate)) => format!(
                "open loop, {rate} ops/s over {} connections (latency from the intended send time)",
                opts.connections
            ),
            (_, None) => format!("closed loop, {} connections", opts.connections),
        };
        let hints = super::outcome::hints(rows.iter().flat_map(|r| r.errors_by_kind.keys()));
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            scenario: opts.scenario.name().to_owned(),
            mode,
            connections: if opts.scenario == Scenario::Stream {
                opts.subscribers
            } else {
                opts.connections
            },
            rate: opts.rate,
            duration_s: opts.duration.as_secs_f64(),
            warmup_s: opts.warmup.as_secs_f64(),
            server,
            pinning,
            cpu_source: ctx.cpu.label(),
            data: data(opts.scenario, &rows),
            summary: summary(&rows),
            rows,
            skipped,
            hints,
        }
    }
}

/// "who wins what": the best row for throughput, p99, bytes per operation and server CPU per
/// operation, among rows that ran without errors.
pub fn summary(rows: &[Row]) -> String {
    let clean: Vec<&Row> = rows.iter().filter(|r| r.ops > 0 && r.errors == 0).collect();
    if clean.is_empty() {
        return "no protocol ran without errors".into();
    }
    let best = |key: &dyn Fn(&Row) -> f64, smaller: bool| -> Option<&Row> {
        clean.iter().copied().min_by(|a, b| {
            let (a, b) = (key(a), key(b));
            let order = a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal);
            if smaller { order } else { order.reverse() }
        })
    };
    let mut parts = Vec::new();
    if let Some(r) = best(&|r| r.throughput, false) {
        parts.push(format!(
            "most ops/s: {} ({:.0}/s)",
            r.protocol, r.throughput
        ));
    }
    if let Some(r) = best(&|r| r.latency.p99_us as f64, true) {
        parts.push(format!(
            "lowest p99: {} ({})",
            r.protocol,
            table::micros(r.latency.p99_us)
        ));
    }
    if let Some(r) = best(&|r| r.bytes_sent_per_op + r.bytes_received_per_op, true) {
        parts.push(format!(
            "fewest bytes/op: {} ({:.0} B)",
            r.protocol,
            r.bytes_sent_per_op + r.bytes_received_per_op
        ));
    }
    if clean.iter().all(|r| r.server_cpu_us_per_op.is_some())
        && let Some(r) = best(&|r| r.server_cpu_us_per_op.unwrap_or(f64::MAX), true)
    {
        parts.push(format!(
            "least server CPU/op: {} ({:.1} µs)",
            r.protocol,
            r.server_cpu_us_per_op.unwrap_or_default()
        ));
    }
    parts.join(" · ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A report with two plausible rows, for the renderers' tests.
    pub(crate) fn sample() -> BenchReport {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for us in 1..=1000 {
            a.record(Duration::from_micros(100 + us));
            b.record(Duration::from_micros(200 + 2 * us));
        }
        let mut rest = Measured::new("rest".into(), Scenario::Get, Duration::from_secs(1));
        rest.recorder = a;
        rest.wire = WireSnapshot {
            sent: 100_000,
            received: 500_000,
        };
        rest.cpu = Some(Duration::from_millis(30));
        let mut grpc = Measured::new(
            "grpc \"h2\" <&>".into(),
            Scenario::Get,
            Duration::from_secs(1),
        );
        grpc.recorder = b;
        grpc.wire = WireSnapshot {
            sent: 60_000,
            received: 300_000,
        };
        grpc.cpu = Some(Duration::from_millis(20));
        grpc.errors.insert("auth (401)".into(), 3);
        let rows = vec![rest.into_row(), grpc.into_row()];
        BenchReport {
            version: "0.1.0".into(),
            scenario: "get".into(),
            mode: "closed loop, 4 connections".into(),
            connections: 4,
            rate: None,
            duration_s: 1.0,
            warmup_s: 0.5,
            server: "spawned".into(),
            pinning: "not pinned".into(),
            cpu_source: "threads".into(),
            data: data(Scenario::Get, &rows),
            summary: summary(&rows),
            hints: crate::bench::outcome::hints(rows.iter().flat_map(|r| r.errors_by_kind.keys())),
            rows,
            skipped: vec!["sse: push only".into()],
        }
    }

    #[test]
    fn rows_divide_totals_by_successful_operations() {
        let report = sample();
        let rest = &report.rows[0];
        assert_eq!(rest.ops, 1000);
        assert_eq!(rest.throughput, 1000.0);
        assert_eq!(rest.bytes_sent_per_op, 100.0);
        assert_eq!(rest.bytes_received_per_op, 500.0);
        assert_eq!(rest.server_cpu_us_per_op, Some(30.0));
        assert_eq!(report.rows[1].errors, 3);
    }

    #[test]
    fn the_summary_names_winners_among_rows_without_errors_and_hints_follow_the_errors() {
        let report = sample();
        // grpc had errors, so rest wins everything it ran.
        assert!(
            report.summary.contains("most ops/s: rest"),
            "{}",
            report.summary
        );
        assert!(
            report.summary.contains("least server CPU/op: rest"),
            "{}",
            report.summary
        );
        assert_eq!(report.hints.len(), 1);
        assert!(report.hints[0].contains("--api-key"));
        assert_eq!(summary(&[]), "no protocol ran without errors");
    }
}
