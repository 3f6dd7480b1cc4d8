//! Request/response load: `--connections` workers, each with its own connection, in a closed
//! loop (send when answered) or an open loop (send on a fixed schedule, see [`schedule`]).
//!
//! Connections are opened before the clock starts; then warm-up, then the measured window.
//! Bytes and server CPU are read at the window's two ends; latencies and errors count for
//! operations meant to be sent inside it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::fixtures::Fixtures;
use super::graphql::Graphql;
use super::grpc::Grpc;
use super::histogram::Recorder;
use super::http::Version;
use super::outcome::OpError;
use super::progress::{self, Counters, Timeline};
use super::report::{Measured, Row};
use super::rest::Rest;
use super::schedule::{Schedule, open_loop_latency};
use super::wire::WireCounters;
use super::ws::Ws;
use super::{Protocol, RunContext, Scenario};

/// No answer within this long is a timeout error (and the connection is replaced).
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// What each operation of a run is.
#[derive(Debug, Clone)]
pub enum Work {
    /// A scenario's operations.
    Scenario(Scenario),
    /// One REST page at a fixed position (`offset=N` or `cursor=...`), for pagination.
    Page(String),
}

/// One operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read the `k`-th fixture order.
    Get(u64),
    /// Read a page.
    List,
    /// Read the `k`-th fixture order with its customer and products.
    Nested(u64),
    /// Create an order.
    Create,
    /// Read the pagination page.
    Page,
}

/// The operation with global index `index` of `scenario`. Mixed runs interleave reads and
/// creates evenly: `index * 7919 mod 100` visits every residue once per 100 indices (7919 is
/// prime to 100), so exactly `read_percent` of every 100 operations are reads.
pub fn op_for(scenario: Scenario, index: u64, read_percent: u8) -> Op {
    match scenario {
        Scenario::Get => Op::Get(index),
        Scenario::List => Op::List,
        Scenario::Nested => Op::Nested(index),
        Scenario::Create => Op::Create,
        Scenario::Mixed => {
            if (index.wrapping_mul(7919) % 100) < u64::from(read_percent) {
                Op::Get(index)
            } else {
                Op::Create
            }
        }
        Scenario::Stream | Scenario::Pagination => Op::Page,
    }
}

/// A connected client of any request/response protocol.
pub enum Client {
    /// REST (either HTTP version).
    Rest(Rest),
    /// REST without `include`: one call per resource.
    RestCascade(Rest),
    /// gRPC.
    Grpc(Grpc),
    /// GraphQL (either HTTP version).
    Graphql(Graphql),
    /// WebSocket session.
    Ws(Ws),
}

impl Client {
    /// Connects a client of `protocol`.
    pub async fn connect(
        protocol: Protocol,
        ctx: &RunContext,
        counters: &Arc<WireCounters>,
    ) -> Result<Self, OpError> {
        let key = ctx.opts.api_key.as_deref();
        let addr = ctx.addr;
        Ok(match protocol {
            Protocol::Rest => Self::Rest(Rest::connect(addr, Version::H1, counters, key).await?),
            Protocol::RestH2 => Self::Rest(Rest::connect(addr, Version::H2, counters, key).await?),
            Protocol::RestCascade => {
                Self::RestCascade(Rest::connect(addr, Version::H1, counters, key).await?)
            }
            Protocol::Grpc => Self::Grpc(Grpc::connect(addr, counters, key).await?),
            Protocol::Graphql => {
                Self::Graphql(Graphql::connect(addr, Version::H1, counters, key).await?)
            }
            Protocol::GraphqlH2 => {
                Self::Graphql(Graphql::connect(addr, Version::H2, counters, key).await?)
            }
            Protocol::Ws => Self::Ws(Ws::connect(addr, counters, key).await?),
            Protocol::Sse | Protocol::LongPoll => {
                return Err(OpError::Invalid(
                    "a push protocol has no request/response client".into(),
                ));
            }
        })
    }

    /// Runs one operation.
    pub async fn run(
        &mut self,
        op: Op,
        fixtures: &Fixtures,
        work: &Work,
        key: &str,
    ) -> Result<(), OpError> {
        match (self, op) {
            (Self::Rest(c), Op::Get(k)) => c.get(fixtures.order_id(k)).await,
            (Self::Rest(c), Op::List) => c.list().await,
            (Self::Rest(c), Op::Nested(k)) => c.nested(fixtures.order_id(k)).await,
            (Self::Rest(c), Op::Create) => c.create(fixtures, key).await.map(|_| ()),
            (Self::Rest(c), Op::Page) => match work {
                Work::Page(position) => c.page(position).await.map(|_| ()),
                Work::Scenario(_) => c.list().await,
            },
            (Self::RestCascade(c), Op::Nested(k)) => c.cascade(fixtures.order_id(k)).await,
            (Self::Grpc(c), Op::Get(k)) => c.get(fixtures.order_id(k)).await,
            (Self::Grpc(c), Op::List) => c.list().await,
            (Self::Grpc(c), Op::Nested(k)) => c.nested(fixtures.order_id(k)).await,
            (Self::Grpc(c), Op::Create) => c.create(fixtures, key).await,
            (Self::Graphql(c), Op::Get(k)) => c.get(fixtures.order_id(k)).await,
            (Self::Graphql(c), Op::List) => c.list().await,
            (Self::Graphql(c), Op::Nested(k)) => c.nested(fixtures.order_id(k)).await,
            (Self::Graphql(c), Op::Create) => c.create(fixtures, key).await,
            (Self::Ws(c), Op::Get(k)) => c.get(fixtures.order_id(k)).await,
            (Self::Ws(c), Op::Create) => c.create(fixtures).await,
            (_, op) => Err(OpError::Invalid(format!("{op:?} is not supported here"))),
        }
    }
}

/// What one worker measured.
#[derive(Default)]
struct WorkerResult {
    recorder: Recorder,
    errors: BTreeMap<String, u64>,
}

/// Runs `work` over `protocol` for the configured warm-up and duration; `label` names the row.
pub async fn run(protocol: Protocol, work: Work, ctx: &RunContext) -> Row {
    run_labelled(protocol, work, ctx, protocol.name().to_owned()).await
}

/// [`run`] with a row label of its own.
pub async fn run_labelled(protocol: Protocol, work: Work, ctx: &RunContext, label: String) -> Row {
    let opts = &ctx.opts;
    let n = opts.connections;
    let wire = Arc::new(WireCounters::default());
    let counters = Arc::new(Counters::default());
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(n);
    let (go_tx, go_rx) = watch::channel::<Option<Timeline>>(None);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let scenario = match &work {
        Work::Scenario(s) => *s,
        Work::Page(_) => Scenario::Pagination,
    };
    let mut workers = Vec::with_capacity(n);
    for w in 0..n {
        let ctx = ctx.clone();
        let wire = Arc::clone(&wire);
        let counters = Arc::clone(&counters);
        let ready_tx = ready_tx.clone();
        let mut go_rx = go_rx.clone();
        let work = work.clone();
        let run_id = run_id.clone();
        workers.push(tokio::spawn(async move {
            let mut client = Client::connect(protocol, &ctx, &wire).await;
            let _ = ready_tx.send(()).await;
            let timeline = match go_rx.wait_for(Option::is_some).await.map(|t| *t) {
                Ok(Some(timeline)) => timeline,
                _ => return WorkerResult::default(),
            };
            let schedule = ctx
                .opts
                .rate
                .map(|rate| Schedule::new(timeline.start, rate, n));
            let mut result = WorkerResult::default();
            let mut k = 0u64;
            loop {
                let (intended, index) = match &schedule {
                    Some(s) => {
                        let at = s.intended_for(w, k);
                        if at >= timeline.measure_to {
                            break;
                        }
                        tokio::time::sleep_until(at.into()).await;
                        (at, s.op_index(w, k))
                    }
                    None => {
                        let now = Instant::now();
                        if now >= timeline.measure_to {
                            break;
                        }
                        (now, (w as u64) * 1_000_003 + k)
                    }
                };
                k += 1;
                let op = op_for(scenario, index, ctx.opts.read_percent);
                let sent = Instant::now();
                let outcome = match &mut client {
                    Ok(c) => {
                        let key = format!("bench-{run_id}-{w}-{k}");
                        tokio::time::timeout(OP_TIMEOUT, c.run(op, &ctx.fixtures, &work, &key))
                            .await
                            .unwrap_or(Err(OpError::Timeout))
                    }
                    Err(e) => Err(e.clone()),
                };
                let done = Instant::now();
                let measured = timeline.measures(intended);
                match outcome {
                    Ok(()) => {
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                        if measured {
                            result
                                .recorder
                                .record(open_loop_latency(intended, sent, done));
                        }
                    }
                    Err(error) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        if measured {
                            *result.errors.entry(error.kind()).or_default() += 1;
                        }
                        if matches!(
                            error,
                            OpError::Io(_) | OpError::Timeout | OpError::Connect(_)
                        ) {
                            // A broken connection is replaced, as a client pool would.
                            if client.is_err() {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            client = Client::connect(protocol, &ctx, &wire).await;
                        }
                    }
                }
            }
            result
        }));
    }
    drop(ready_tx);
    // Every worker has connected (or failed to): start the clock.
    let mut ready = 0;
    while ready < n && ready_rx.recv().await.is_some() {
        ready += 1;
    }
    let timeline = Timeline::starting_now(opts.warmup, opts.duration);
    let _ = go_tx.send(Some(timeline));
    let progress = progress::show(
        format!("{label} {}", scenario.name()),
        timeline,
        Arc::clone(&counters),
        !opts.quiet,
    );
    tokio::time::sleep_until(timeline.measure_from.into()).await;
    let (wire_from, cpu_from) = (wire.snapshot(), ctx.cpu.sample());
    tokio::time::sleep_until(timeline.measure_to.into()).await;
    let (wire_to, cpu_to) = (wire.snapshot(), ctx.cpu.sample());
    let mut measured = Measured::new(label, scenario, opts.duration);
    for worker in workers {
        if let Ok(result) = worker.await {
            measured.recorder.merge(&result.recorder);
            for (kind, n) in result.errors {
                *measured.errors.entry(kind).or_default() += n;
            }
        }
    }
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[2K");
    }
    measured.wire = wire_to.since(wire_from);
    measured.cpu = cpu_from.zip(cpu_to).map(|(a, b)| b.saturating_sub(a));
    if protocol == Protocol::Ws && matches!(scenario, Scenario::Create | Scenario::Mixed) {
        measured.note = Some("the WebSocket session takes no idempotency key".into());
    }
    measured.into_row()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mixed_run_has_exactly_the_read_percentage_in_every_hundred_operations() {
        for start in [0u64, 100, 12_345] {
            let reads = (start..start + 100)
                .filter(|&i| matches!(op_for(Scenario::Mixed, i, 80), Op::Get(_)))
                .count();
            assert_eq!(reads, 80);
        }
        assert!((0..100).all(|i| op_for(Scenario::Mixed, i, 0) == Op::Create));
        assert!((0..100).all(|i| matches!(op_for(Scenario::Mixed, i, 100), Op::Get(_))));
        assert_eq!(op_for(Scenario::Get, 5, 80), Op::Get(5));
    }
}
