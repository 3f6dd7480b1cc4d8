//! Latency recording and summarising with an HDR histogram.
//!
//! An HDR histogram keeps every sample to 3 significant digits in fixed memory, so p99.9 and max
//! are exact enough to trust, where an average or a reservoir sample would hide the tail.
//! Latencies are recorded in microseconds, from 1 µs to 60 s; anything longer is clamped to 60 s.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest latency recorded as itself, in microseconds (longer ones are clamped to it).
const MAX_US: u64 = 60_000_000;

/// The percentiles the latency curve in the HTML report is drawn through.
pub const CURVE_PERCENTILES: &[f64] = &[
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

/// Latencies of one worker or one whole run.
#[derive(Debug, Clone)]
pub struct Recorder(Histogram<u64>);

impl Default for Recorder {
    fn default() -> Self {
        // Bounds and precision are constants that hdrhistogram accepts.
        match Histogram::new_with_bounds(1, MAX_US, 3) {
            Ok(h) => Self(h),
            Err(_) => unreachable!("1..60s at 3 significant digits is a valid histogram"),
        }
    }
}

impl Recorder {
    /// Records one latency.
    pub fn record(&mut self, latency: std::time::Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(MAX_US);
        self.0.saturating_record(us.clamp(1, MAX_US));
    }

    /// Adds another recorder's samples to this one.
    pub fn merge(&mut self, other: &Recorder) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// How many samples.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The summary the reports show.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let at = |p: f64| h.value_at_quantile(p / 100.0);
        LatencySummary {
            p50_us: at(50.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            p999_us: at(99.9),
            max_us: h.max(),
            mean_us: h.mean(),
            curve: CURVE_PERCENTILES
                .iter()
                .map(|&p| (p, if p >= 100.0 { h.max() } else { at(p) }))
                .collect(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// The slowest.
    pub max_us: u64,
    /// The mean (for reference; the percentiles are what to read).
    pub mean_us: f64,
    /// (percentile, latency) points for the report's percentile curve.
    pub curve: Vec<(f64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles_of_one_to_a_thousand_microseconds_are_where_they_should_be() {
        let mut r = Recorder::default();
        for us in 1..=1000 {
            r.record(Duration::from_micros(us));
        }
        let s = r.summary();
        assert_eq!(r.count(), 1000);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p90_us, 900);
        assert_eq!(s.p99_us, 990);
        // p99.9 falls between the 999th and 1000th sample; HDR reports the upper.
        assert!((999..=1000).contains(&s.p999_us), "{}", s.p999_us);
        assert_eq!(s.max_us, 1000);
        assert!((s.mean_us - 500.5).abs() < 1.0, "{}", s.mean_us);
        assert_eq!(s.curve.len(), CURVE_PERCENTILES.len());
        assert!(
            s.curve.windows(2).all(|w| w[0].1 <= w[1].1),
            "{:?}",
            s.curve
        );
    }

    #[test]
    fn merged_recorders_summarise_all_their_samples() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for _ in 0..99 {
            a.record(Duration::from_micros(100));
        }
        b.record(Duration::from_millis(50));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(a.count(), 100);
        assert_eq!(s.p50_us, 100);
        // The one slow sample is the max and the p99.9, and it is kept to 3 significant digits.
        assert!((49_950..=50_050).contains(&s.max_us), "{}", s.max_us);
        assert_eq!(s.p999_us, s.max_us);
    }

    #[test]
    fn an_empty_recorder_summarises_to_zeros_and_out_of_range_samples_are_clamped() {
        assert_eq!(Recorder::default().summary(), LatencySummary::default());
        let mut r = Recorder::default();
        r.record(Duration::ZERO);
        r.record(Duration::from_secs(3600));
        let s = r.summary();
        assert_eq!(s.p50_us, 1);
        assert!(
            s.max_us >= 59_000_000 && s.max_us <= 60_100_000,
            "{}",
            s.max_us
        );
    }
}
