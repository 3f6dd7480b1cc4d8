//! Open-loop scheduling: when each operation was *meant* to be sent.
//!
//! A closed loop (each connection sends its next request when the last one is answered) slows
//! down exactly when the server does, so a stall of one second costs one sample instead of the
//! thousands of requests that real users would have sent meanwhile: coordinated omission. The
//! open loop fixes a global schedule, operation `j` at `start + j / rate`, deals operations
//! round-robin to the connections (connection `w` of `n` takes `w, w + n, w + 2n, ...`), and
//! measures each latency from the intended send time, so time spent waiting behind a stall
//! counts (wrk2's approach).

use std::time::{Duration, Instant};

/// A fixed-rate schedule shared by `workers` connections.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    workers: u64,
}

impl Schedule {
    /// `rate` operations per second in total, starting at `start`, over `workers` connections.
    pub fn new(start: Instant, rate: f64, workers: usize) -> Self {
        Self {
            start,
            rate: rate.max(f64::MIN_POSITIVE),
            workers: workers.max(1) as u64,
        }
    }

    /// The global index of worker `worker`'s `k`-th operation.
    pub fn op_index(&self, worker: usize, k: u64) -> u64 {
        k * self.workers + worker as u64
    }

    /// When operation `index` (global) is meant to be sent.
    pub fn intended(&self, index: u64) -> Instant {
        self.start + Duration::from_secs_f64(index as f64 / self.rate)
    }

    /// When worker `worker`'s `k`-th operation is meant to be sent.
    pub fn intended_for(&self, worker: usize, k: u64) -> Instant {
        self.intended(self.op_index(worker, k))
    }
}

/// The latency of an operation meant to be sent at `intended`, actually sent at or after it,
/// and finished at `done`. Never less than the service time `done - sent`.
pub fn open_loop_latency(intended: Instant, sent: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(intended.min(sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_per_second_over_four_workers_deals_one_millisecond_slots_round_robin() {
        let start = Instant::now();
        let s = Schedule::new(start, 1000.0, 4);
        assert_eq!(s.op_index(0, 0), 0);
        assert_eq!(s.op_index(3, 0), 3);
        assert_eq!(s.op_index(1, 2), 9);
        assert_eq!(s.intended_for(0, 0), start);
        assert_eq!(s.intended_for(1, 2) - start, Duration::from_millis(9));
        // Each worker runs at rate / workers: 4 ms apart.
        assert_eq!(
            s.intended_for(2, 5) - s.intended_for(2, 4),
            Duration::from_millis(4)
        );
    }

    #[test]
    fn a_late_send_is_charged_from_the_intended_time() {
        let intended = Instant::now();
        let sent = intended + Duration::from_millis(40);
        let done = sent + Duration::from_millis(2);
        // The server took 2 ms, but the request was meant to leave 40 ms earlier: the user waited 42.
        assert_eq!(
            open_loop_latency(intended, sent, done),
            Duration::from_millis(42)
        );
        // Sent on time: latency is the service time.
        assert_eq!(
            open_loop_latency(intended, intended, done),
            Duration::from_millis(42)
        );
        assert_eq!(
            open_loop_latency(sent, sent, done),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn a_schedule_over_zero_workers_or_rate_does_not_divide_by_zero() {
        let s = Schedule::new(Instant::now(), 0.0, 0);
        assert_eq!(s.op_index(0, 3), 3);
        let _ = s.intended(0);
    }
}
