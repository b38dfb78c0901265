//! Counters and latency histograms of a run: each worker keeps its own and sends an interval
//! snapshot to the main thread about once a second, which merges them (no shared counters).
//!
//! Invariant: latencies are recorded in microseconds into histograms covering 1 µs to 10 min
//! with 3 significant digits; values beyond saturate at the top instead of being dropped.

use hdrhistogram::Histogram;
use serde::Serialize;

const MAX_US: u64 = 600_000_000;

pub fn histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// What a worker saw during one interval (or a whole run, once merged).
#[derive(Clone)]
pub struct Stats {
    /// Messages sent and their value bytes.
    pub sent: u64,
    pub sent_bytes: u64,
    /// Messages acknowledged without error.
    pub acked: u64,
    pub acked_bytes: u64,
    /// Messages whose produce failed (error code or connection lost).
    pub failed: u64,
    /// Messages read back by consumers, and their value bytes.
    pub consumed: u64,
    pub consumed_bytes: u64,
    /// Longest time a producer worker spent from its first message to its last
    /// acknowledgement, in µs (merged by maximum).
    pub active_us: u64,
    /// Produce acknowledgement latency: ack time − intended send time.
    pub ack: Histogram<u64>,
    /// End-to-end latency: consumer receive time − intended send time.
    pub e2e: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sent: 0,
            sent_bytes: 0,
            acked: 0,
            acked_bytes: 0,
            failed: 0,
            consumed: 0,
            consumed_bytes: 0,
            active_us: 0,
            ack: histogram(),
            e2e: histogram(),
        }
    }
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        self.sent += o.sent;
        self.sent_bytes += o.sent_bytes;
        self.acked += o.acked;
        self.acked_bytes += o.acked_bytes;
        self.failed += o.failed;
        self.consumed += o.consumed;
        self.consumed_bytes += o.consumed_bytes;
        self.active_us = self.active_us.max(o.active_us);
        // Same bounds on both sides: adding cannot fail.
        let _ = self.ack.add(&o.ack);
        let _ = self.e2e.add(&o.e2e);
    }

    /// Takes the counts gathered so far, leaving zeroes (for interval snapshots).
    pub fn take(&mut self) -> Stats {
        std::mem::take(self)
    }
}

/// Records a latency in microseconds.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            p9999: ms(h.value_at_quantile(0.9999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = Stats {
            sent: 3,
            acked: 2,
            ..Default::default()
        };
        let mut b = Stats {
            sent: 4,
            failed: 1,
            ..Default::default()
        };
        for us in 1..=1000 {
            record(&mut a.ack, us);
        }
        record(&mut b.ack, 5_000_000);
        a.merge(&b);
        assert_eq!((a.sent, a.acked, a.failed), (7, 2, 1));
        let l = Latency::of(&a.ack);
        assert_eq!(l.count, 1001);
        assert!((0.49..=0.51).contains(&l.p50), "p50 {}", l.p50);
        assert!((4990.0..=5010.0).contains(&l.max), "max {}", l.max);
    }

    #[test]
    fn take_resets_and_extremes_saturate() {
        let mut s = Stats {
            consumed: 9,
            ..Default::default()
        };
        record(&mut s.e2e, 0);
        record(&mut s.e2e, u64::MAX);
        let t = s.take();
        assert_eq!((t.consumed, s.consumed), (9, 0));
        assert!(s.e2e.is_empty());
        let l = Latency::of(&t.e2e);
        assert_eq!(l.count, 2);
        assert!(l.max >= 599_000.0);
        assert_eq!(Latency::of(&s.ack), Latency::default());
    }
}
