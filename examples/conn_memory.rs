//! Measures what idle streaming connections cost a running polyport server, and how fast it fans
//! events out to many of them. Driven by `scripts/conn_memory.sh`, which starts the server with
//! enough file descriptors and stream places; it can also be pointed at a server by hand.
//!
//! ```text
//! conn_memory --target 127.0.0.1:8080 --pid PID --kind sse|ws --n 10000
//!     opens N idle subscribers (SSE: GET /v1/events; WebSocket: /v1/ws plus one subscribe),
//!     reads the server's VmRSS (/proc/PID/status) before and after, prints KiB per connection.
//! conn_memory ... --fanout --rate 10 --seconds 10
//!     then POSTs `rate` orders a second for `seconds` and measures, on every subscriber, each
//!     event's write-to-delivery time (receipt time minus the event's `occurred_at`, which has
//!     millisecond precision) and the delivered events per second across all subscribers.
//! ```
//! Connections open 256 at a time so the listen backlog never overflows. Everything stays on
//! 127.0.0.1, and the run ends by itself after the requested time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    target: String,
    pid: Option<u32>,
    kind: String,
    n: usize,
    fanout: bool,
    rate: u64,
    seconds: u64,
}

fn options() -> Result<Options, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    Ok(Options {
        target: value("--target").unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
        pid: value("--pid").map(|p| p.parse()).transpose()?,
        kind: value("--kind").unwrap_or_else(|| "sse".to_owned()),
        n: value("--n").map_or(Ok(1000), |n| n.parse())?,
        fanout: args.iter().any(|a| a == "--fanout"),
        rate: value("--rate").map_or(Ok(10), |n| n.parse())?,
        seconds: value("--seconds").map_or(Ok(10), |n| n.parse())?,
    })
}

/// The server's resident set size, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The server's CPU time (user + system), in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// What every subscriber reports: events received and their write-to-delivery times.
#[derive(Default)]
struct Tally {
    received: AtomicU64,
    last_receipt_us: AtomicU64,
}

/// Milliseconds from each event's `occurred_at` to now, for every event in `text`.
fn latencies(text: &str, now: SystemTime, out: &mut Vec<f32>) -> usize {
    const KEY: &str = "\"occurred_at\":\"";
    let mut count = 0;
    for (at, _) in text.match_indices(KEY) {
        let start = at + KEY.len();
        let Some(len) = text[start..].find('"') else {
            continue;
        };
        count += 1;
        if let Ok(occurred) = humantime::parse_rfc3339(&text[start..start + len]) {
            let ms = now
                .duration_since(occurred)
                .map_or(0.0, |d| d.as_secs_f32() * 1000.0);
            out.push(ms);
        }
    }
    count
}

fn micros_since(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

async fn sse_subscriber(
    target: String,
    ready: Arc<Semaphore>,
    tally: Arc<Tally>,
    start: Instant,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<f32>, Error> {
    let mut stream = TcpStream::connect(&target).await?;
    stream
        .write_all(
            format!(
                "GET /v1/events HTTP/1.1\r\nHost: {target}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    // The response head and the hello frame end with a blank line each.
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    while !String::from_utf8_lossy(&buf).contains("polyport event stream") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("the server closed the stream before its first frame".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err(String::from_utf8_lossy(&buf[..buf.len().min(200)])
            .into_owned()
            .into());
    }
    ready.add_permits(1);
    let mut seen = Vec::new();
    let mut pending = String::new();
    loop {
        tokio::select! {
            read = stream.read(&mut chunk) => {
                let n = read?;
                if n == 0 {
                    break;
                }
                pending.push_str(&String::from_utf8_lossy(&chunk[..n]));
                // Only whole frames (ending in a blank line) are read; the rest waits.
                if let Some(end) = pending.rfind("\n\n") {
                    let count = latencies(&pending[..end], SystemTime::now(), &mut seen);
                    pending.drain(..end + 2);
                    if count > 0 {
                        tally.received.fetch_add(count as u64, Ordering::Relaxed);
                        tally.last_receipt_us.fetch_max(micros_since(start), Ordering::Relaxed);
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    Ok(seen)
}

async fn ws_subscriber(
    target: String,
    ready: Arc<Semaphore>,
    tally: Arc<Tally>,
    start: Instant,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<f32>, Error> {
    let stream = TcpStream::connect(&target).await?;
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{target}/v1/ws"), stream).await?;
    ws.send(Message::Text(
        r#"{"op":"subscribe","id":"s1","topic":"orders"}"#.into(),
    ))
    .await?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.contains("subscribed") => {}
        other => return Err(format!("no subscription confirmation: {other:?}").into()),
    }
    ready.add_permits(1);
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let count = latencies(text.as_str(), SystemTime::now(), &mut seen);
                    if count > 0 {
                        tally.received.fetch_add(count as u64, Ordering::Relaxed);
                        tally.last_receipt_us.fetch_max(micros_since(start), Ordering::Relaxed);
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            _ = stop.changed() => break,
        }
    }
    Ok(seen)
}

/// POSTs `rate` orders a second for `seconds` over one keep-alive connection; returns how many
/// were created.
async fn writer(target: &str, rate: u64, seconds: u64) -> Result<u64, Error> {
    let client = reqwest::Client::new();
    let url = format!("http://{target}/v1/orders");
    let body = r#"{"customer_id":"1","items":[{"product_id":"3","quantity":1}]}"#;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut created = 0;
    for _ in 0..rate * seconds {
        tick.tick().await;
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        if response.status().is_success() {
            created += 1;
        }
    }
    Ok(created)
}

fn percentile(sorted: &[f32], p: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let options = options()?;
    let rss_before = options.pid.and_then(rss_kib);
    let ready = Arc::new(Semaphore::new(0));
    let gate = Arc::new(Semaphore::new(256));
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut tasks = Vec::with_capacity(options.n);
    for _ in 0..options.n {
        let (target, ready, tally, stop) = (
            options.target.clone(),
            Arc::clone(&ready),
            Arc::clone(&tally),
            stop_rx.clone(),
        );
        let permit = Arc::clone(&gate).acquire_owned().await?;
        let ws = options.kind == "ws";
        tasks.push(tokio::spawn(async move {
            // The permit is held until this subscriber is ready, so at most 256 connect at once.
            let opened = Arc::new(Semaphore::new(0));
            let task = {
                let opened = Arc::clone(&opened);
                async move {
                    if ws {
                        ws_subscriber(target, opened, tally, start, stop).await
                    } else {
                        sse_subscriber(target, opened, tally, start, stop).await
                    }
                }
            };
            let mut task = std::pin::pin!(task);
            tokio::select! {
                result = &mut task => { drop(permit); return result; }
                _ = opened.acquire() => { drop(permit); ready.add_permits(1); }
            }
            task.await
        }));
    }
    let all_ready = tokio::time::timeout(
        Duration::from_secs(120),
        ready.acquire_many(options.n as u32),
    )
    .await;
    if all_ready.is_err() {
        eprintln!(
            "only {} of {} subscribers opened within 120 s",
            ready.available_permits(),
            options.n
        );
    }
    let opened_in = start.elapsed();
    // Let the server finish its per-connection start-up work before reading its memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = options.pid.and_then(rss_kib);
    println!(
        "{} {} subscribers open in {:.1} s",
        options.n,
        options.kind,
        opened_in.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "server VmRSS {before} KiB -> {after} KiB: {:.2} KiB per idle {} connection",
            (after as f64 - before as f64) / options.n as f64,
            options.kind
        );
    }

    if options.fanout {
        let cpu_before = options.pid.and_then(cpu_ticks);
        let write_start = micros_since(start);
        let wall = Instant::now();
        let created = writer(&options.target, options.rate, options.seconds).await?;
        let expected = created * options.n as u64;
        // Wait (bounded) for the last deliveries.
        let deadline = Instant::now() + Duration::from_secs(30);
        while tally.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cpu = options
            .pid
            .and_then(cpu_ticks)
            .zip(cpu_before)
            .map(|(after, before)| (after - before) as f64 / 100.0);
        let received = tally.received.load(Ordering::Relaxed);
        let span =
            (tally.last_receipt_us.load(Ordering::Relaxed) - write_start) as f64 / 1_000_000.0;
        println!(
            "wrote {created} events in {:.1} s; delivered {received} of {expected} \
             ({:.0} delivered events/s over {span:.1} s, first write to last delivery)",
            wall.elapsed().as_secs_f64().min(span),
            received as f64 / span
        );
        if let Some(cpu) = cpu {
            println!(
                "server CPU {cpu:.2} s: {:.0} deliveries per server CPU-second",
                received as f64 / cpu
            );
        }
    }
    stop_tx.send_replace(true);
    let mut all = Vec::new();
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(seen)) => all.extend(seen),
            Ok(Err(error)) => {
                if failed == 0 {
                    eprintln!("a subscriber failed: {error}");
                }
                failed += 1;
            }
            Err(error) => eprintln!("a subscriber panicked: {error}"),
        }
    }
    if failed > 0 {
        eprintln!("{failed} subscribers failed");
    }
    if options.fanout {
        all.sort_by(f32::total_cmp);
        println!(
            "write-to-delivery ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} samples)",
            percentile(&all, 50.0),
            percentile(&all, 90.0),
            percentile(&all, 99.0),
            percentile(&all, 99.9),
            all.last().copied().unwrap_or(f32::NAN),
            all.len()
        );
    }
    Ok(())
}
