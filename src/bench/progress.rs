//! The progress line on stderr while a protocol runs (only when stderr is a terminal, and not
//! with `--quiet`), and the timeline every run follows: warm-up, then the measured window.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When a run's phases begin and end.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// Load starts (warm-up).
    pub start: Instant,
    /// Measuring starts: operations meant to be sent from here on count.
    pub measure_from: Instant,
    /// Measuring ends: no operation is started after it.
    pub measure_to: Instant,
}

impl Timeline {
    /// A timeline starting now.
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let start = Instant::now();
        Self {
            start,
            measure_from: start + warmup,
            measure_to: start + warmup + duration,
        }
    }

    /// Whether an operation meant to be sent at `t` is measured.
    pub fn measures(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.measure_to
    }
}

/// Counters the progress line shows.
#[derive(Debug, Default)]
pub struct Counters {
    /// Operations that succeeded (measured or not).
    pub ok: AtomicU64,
    /// Operations that failed.
    pub errors: AtomicU64,
}

/// Shows a progress line for `label` until the timeline's end, if `enabled` and stderr is a
/// terminal; returns the task to abort when the run is over.
pub fn show(
    label: String,
    timeline: Timeline,
    counters: Arc<Counters>,
    enabled: bool,
) -> Option<tokio::task::JoinHandle<()>> {
    if !enabled || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let now = Instant::now();
            if now >= timeline.measure_to {
                break;
            }
            let phase = if now < timeline.measure_from {
                format!(
                    "warming up {:>5.1}s",
                    (timeline.measure_from - now).as_secs_f64()
                )
            } else {
                let total = (timeline.measure_to - timeline.measure_from).as_secs_f64();
                let done = (now - timeline.measure_from).as_secs_f64();
                let width = 20usize;
                let filled = ((done / total) * width as f64) as usize;
                format!(
                    "[{}{}] {done:>5.1}/{total:.0}s",
                    "#".repeat(filled.min(width)),
                    " ".repeat(width - filled.min(width))
                )
            };
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{label:<22} {phase}  {} ok  {} errors",
                counters.ok.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed)
            );
            let _ = err.flush();
        }
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }))
}
