//! Time, injected: everything in webhooks that asks what time it is asks a [`Clock`], so the
//! unit tests drive retries, auto-disabling and the drain with a clock they move by hand, with
//! no sleeps and nothing that depends on how fast the machine is.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One reading of the clock, in both its forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// Monotonic: what the queue schedules by, since a wall clock may jump.
    pub(crate) instant: Instant,
    /// The wall clock: what the logs, the dashboard and `webhook-timestamp` show.
    pub(crate) wall: SystemTime,
}

impl Now {
    /// Unix seconds, as `webhook-timestamp` carries them.
    pub(crate) fn unix(self) -> i64 {
        self.wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// Where the time comes from.
pub(crate) trait Clock: Send + Sync {
    /// What time it is.
    fn now(&self) -> Now;
}

/// The machine's clocks.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Now {
        Now {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// A clock that stands still until a test moves it.
#[cfg(test)]
pub(crate) struct ManualClock {
    start: Now,
    elapsed: std::sync::Mutex<std::time::Duration>,
}

#[cfg(test)]
impl ManualClock {
    /// A clock standing at the machine's present time.
    pub(crate) fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            start: SystemClock.now(),
            elapsed: std::sync::Mutex::default(),
        })
    }

    /// Moves the clock forward to `instant` (if that is ahead of it).
    pub(crate) fn advance_to(&self, instant: Instant) {
        let mut elapsed = self.elapsed.lock().unwrap();
        *elapsed = (*elapsed).max(instant.duration_since(self.start.instant));
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> Now {
        let elapsed = *self.elapsed.lock().unwrap();
        Now {
            instant: self.start.instant + elapsed,
            wall: self.start.wall + elapsed,
        }
    }
}
