//! The stream scenario: `--subscribers` K subscribers follow the run's customer's
//! `order.created` events over one push protocol while writers create orders over REST at a
//! fixed rate. Each event's latency runs from the write's *intended* send time to its receipt
//! by a subscriber; throughput is events delivered per second (K per write).
//!
//! A write's order id is known only when its response arrives, and a subscriber may see the
//! event first, so [`Stamps`] pairs writes and receipts whichever comes first.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::grpc::Grpc;
use super::histogram::Recorder;
use super::http::Version;
use super::outcome::OpError;
use super::progress::{self, Counters, Timeline};
use super::report::{Measured, Row};
use super::rest::Rest;
use super::schedule::Schedule;
use super::wire::WireCounters;
use super::ws::Ws;
use super::{DEFAULT_WRITE_RATE, Protocol, RunContext, Scenario, longpoll, sse};

/// REST connections that create the orders (so one slow create does not hold up the schedule).
const WRITERS: usize = 4;
/// How long after the window deliveries of its last writes may still arrive.
const DELIVERY_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Entry {
    /// When the write was meant to be sent (known once its response arrived).
    sent: Option<Instant>,
    /// Receipts that arrived before the write's response.
    early: Vec<Instant>,
    /// Receipts so far.
    received: usize,
}

#[derive(Debug, Default)]
struct StampsInner {
    entries: HashMap<String, Entry>,
    recorder: Recorder,
}

/// Write times and receipts, paired by order id.
#[derive(Debug)]
pub struct Stamps {
    inner: Mutex<StampsInner>,
    timeline: Timeline,
    subscribers: usize,
}

impl Stamps {
    /// Pairs writes made on `timeline` with receipts by `subscribers` subscribers.
    pub fn new(timeline: Timeline, subscribers: usize) -> Self {
        Self {
            inner: Mutex::default(),
            timeline,
            subscribers,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StampsInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A write of `order_id`, meant to be sent at `sent`, was answered.
    pub fn written(&self, order_id: &str, sent: Instant) {
        let mut inner = self.lock();
        let entry = inner.entries.entry(order_id.to_owned()).or_default();
        entry.sent = Some(sent);
        let early = std::mem::take(&mut entry.early);
        let done = entry.received >= self.subscribers;
        if done {
            inner.entries.remove(order_id);
        }
        if self.timeline.measures(sent) {
            for at in early {
                inner.recorder.record(at.saturating_duration_since(sent));
            }
        }
    }

    /// A subscriber received `order_id`'s event at `at`.
    pub fn received(&self, order_id: &str, at: Instant) {
        let mut inner = self.lock();
        let entry = inner.entries.entry(order_id.to_owned()).or_default();
        entry.received += 1;
        let (sent, done) = (entry.sent, entry.received >= self.subscribers);
        match sent {
            None => entry.early.push(at),
            Some(sent) => {
                if done {
                    inner.entries.remove(order_id);
                }
                if self.timeline.measures(sent) {
                    inner.recorder.record(at.saturating_duration_since(sent));
                }
            }
        }
    }

    /// The delivery latencies of measured writes, and how many deliveries of measured writes
    /// never arrived.
    pub fn finish(&self) -> (Recorder, u64) {
        let inner = self.lock();
        let missing = inner
            .entries
            .values()
            .filter(|e| e.sent.is_some_and(|s| self.timeline.measures(s)))
            .map(|e| self.subscribers.saturating_sub(e.received) as u64)
            .sum();
        (inner.recorder.clone(), missing)
    }
}

/// Runs the stream scenario over `protocol`.
pub async fn run(protocol: Protocol, ctx: &RunContext) -> Row {
    let opts = &ctx.opts;
    let k = opts.subscribers;
    let wire = Arc::new(WireCounters::default());
    let counters = Arc::new(Counters::default());
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let note_error = {
        let errors = Arc::clone(&errors);
        let counters = Arc::clone(&counters);
        move |e: &OpError| {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            *errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(e.kind())
                .or_default() += 1;
        }
    };

    // The timeline starts once every subscriber is ready; stamps need it, so they are created
    // then and handed to the subscribers through a shared slot.
    let stamps_slot: Arc<std::sync::OnceLock<Arc<Stamps>>> = Arc::default();
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(k);
    let mut subscribers = Vec::with_capacity(k);
    for _ in 0..k {
        let ctx = ctx.clone();
        let wire = Arc::clone(&wire);
        let slot = Arc::clone(&stamps_slot);
        let counters = Arc::clone(&counters);
        let ready_tx = ready_tx.clone();
        let note_error = note_error.clone();
        subscribers.push(tokio::spawn(async move {
            let ready = {
                let ready_tx = ready_tx.clone();
                move || {
                    let _ = ready_tx.try_send(());
                }
            };
            let on_event = |order_id: &str| {
                let at = Instant::now();
                if let Some(stamps) = slot.get() {
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                    stamps.received(order_id, at);
                }
                true
            };
            let key = ctx.opts.api_key.as_deref();
            let customer = ctx.fixtures.customer_id.as_str();
            let result = match protocol {
                Protocol::Sse => sse::watch(ctx.addr, &wire, key, customer, ready, on_event).await,
                Protocol::LongPoll => {
                    longpoll::watch(ctx.addr, &wire, key, customer, ready, on_event).await
                }
                Protocol::Ws => match Ws::connect(ctx.addr, &wire, key).await {
                    Ok(mut ws) => ws.watch(customer, ready, on_event).await,
                    Err(e) => Err(e),
                },
                Protocol::Grpc => match Grpc::connect(ctx.addr, &wire, key).await {
                    Ok(mut grpc) => grpc.watch(customer, ready, on_event).await,
                    Err(e) => Err(e),
                },
                _ => Err(OpError::Invalid("not a push protocol".into())),
            };
            if let Err(e) = result {
                note_error(&e);
                // A subscriber that failed before it was ready must not hold up the start.
                let _ = ready_tx.try_send(());
            }
        }));
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < k && ready_rx.recv().await.is_some() {
        ready += 1;
    }

    let timeline = Timeline::starting_now(opts.warmup, opts.duration);
    let stamps = Arc::new(Stamps::new(timeline, k));
    let _ = stamps_slot.set(Arc::clone(&stamps));
    let rate = opts.rate.unwrap_or(DEFAULT_WRITE_RATE);
    let schedule = Schedule::new(timeline.start, rate, WRITERS);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let ctx = ctx.clone();
        let stamps = Arc::clone(&stamps);
        let note_error = note_error.clone();
        writers.push(tokio::spawn(async move {
            // The writers' own bytes are not the push protocol's: they count elsewhere.
            let counters = Arc::new(WireCounters::default());
            let key = ctx.opts.api_key.as_deref();
            let mut rest = Rest::connect(ctx.addr, Version::H1, &counters, key).await;
            let run_id = uuid::Uuid::new_v4().simple().to_string();
            for n in 0u64.. {
                let intended = schedule.intended_for(w, n);
                if intended >= timeline.measure_to {
                    break;
                }
                tokio::time::sleep_until(intended.into()).await;
                let result = match &mut rest {
                    Ok(rest) => {
                        rest.create(&ctx.fixtures, &format!("stream-{run_id}-{n}"))
                            .await
                    }
                    Err(e) => Err(e.clone()),
                };
                match result {
                    Ok(order_id) => stamps.written(&order_id, intended),
                    Err(e) => {
                        if timeline.measures(intended) {
                            note_error(&OpError::Invalid(format!("write failed: {}", e.kind())));
                        }
                        if matches!(e, OpError::Io(_) | OpError::Connect(_)) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            rest = Rest::connect(ctx.addr, Version::H1, &counters, key).await;
                        }
                    }
                }
            }
        }));
    }

    let progress = progress::show(
        format!("{} stream", protocol.name()),
        timeline,
        Arc::clone(&counters),
        !opts.quiet,
    );
    tokio::time::sleep_until(timeline.measure_from.into()).await;
    let (wire_from, cpu_from) = (wire.snapshot(), ctx.cpu.sample());
    tokio::time::sleep_until(timeline.measure_to.into()).await;
    let (wire_to, cpu_to) = (wire.snapshot(), ctx.cpu.sample());
    for writer in writers {
        let _ = writer.await;
    }
    // Let the last writes' events arrive, then stop the subscribers.
    let deadline = Instant::now() + DELIVERY_GRACE;
    while stamps.finish().1 > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for subscriber in &subscribers {
        subscriber.abort();
    }
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[2K");
    }
    let (recorder, missing) = stamps.finish();
    let mut measured = Measured::new(protocol.name().to_owned(), Scenario::Stream, opts.duration);
    measured.recorder = recorder;
    measured.errors = std::mem::take(&mut *errors.lock().unwrap_or_else(PoisonError::into_inner));
    if missing > 0 {
        measured.errors.insert("not delivered".into(), missing);
    }
    measured.wire = wire_to.since(wire_from);
    measured.cpu = cpu_from.zip(cpu_to).map(|(a, b)| b.saturating_sub(a));
    measured.into_row()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_pair_with_writes_whichever_arrives_first() {
        let timeline = Timeline::starting_now(Duration::ZERO, Duration::from_secs(60));
        let stamps = Stamps::new(timeline, 2);
        let sent = timeline.start + Duration::from_millis(1);
        // Subscriber 1 sees the event before the write's response; subscriber 2 after.
        stamps.received("7", sent + Duration::from_millis(3));
        stamps.written("7", sent);
        stamps.received("7", sent + Duration::from_millis(5));
        // A write nobody received yet is missing twice.
        stamps.written("8", sent);
        let (recorder, missing) = stamps.finish();
        assert_eq!(recorder.count(), 2);
        let s = recorder.summary();
        // To the histogram's 3 significant digits.
        assert!((3_000..=3_003).contains(&s.p50_us), "{s:?}");
        assert!((5_000..=5_005).contains(&s.max_us), "{s:?}");
        assert_eq!(missing, 2);
    }

    #[test]
    fn writes_meant_for_the_warm_up_are_not_measured() {
        let timeline = Timeline::starting_now(Duration::from_secs(30), Duration::from_secs(60));
        let stamps = Stamps::new(timeline, 1);
        stamps.written("1", timeline.start);
        stamps.received("1", timeline.start + Duration::from_millis(2));
        let (recorder, missing) = stamps.finish();
        assert_eq!((recorder.count(), missing), (0, 0));
    }
}
