//! Send schedules. Open loop: message `i` is due at `start + i / rate`, whatever happened to
//! earlier messages, and its latency is measured from that intended time — so a stall in the
//! broker (or in this client) shows up in the latency of every message it delayed instead of
//! thinning out the samples (coordinated omission). Closed loop: a message is due as soon as
//! there is room for it, and its intended time is when it was made.
//!
//! Invariant: pure arithmetic on a monotonic clock in microseconds; no I/O, no waiting.

/// When the next messages are due.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Messages per second for this worker; `None`: closed loop.
    rate: Option<f64>,
    start_us: u64,
    /// Messages handed out so far.
    issued: u64,
}

impl Schedule {
    pub fn new(rate: Option<f64>, start_us: u64) -> Schedule {
        Schedule {
            rate: rate.filter(|r| *r > 0.0),
            start_us,
            issued: 0,
        }
    }

    pub fn is_open_loop(&self) -> bool {
        self.rate.is_some()
    }

    /// Intended send time of message `i` (open loop).
    fn intended(&self, i: u64) -> u64 {
        match self.rate {
            Some(r) => self.start_us + (i as f64 * 1e6 / r) as u64,
            None => self.start_us,
        }
    }

    /// Takes the next message due at or before `now_us`, at most `limit` in all; returns its
    /// intended send time. Closed loop: always due, intended now.
    pub fn next_due(&mut self, now_us: u64) -> Option<u64> {
        let t = match self.rate {
            Some(_) => self.intended(self.issued),
            None => now_us,
        };
        if t > now_us {
            return None;
        }
        self.issued += 1;
        Some(t)
    }

    /// When the next message falls due (open loop); `None` in closed loop.
    pub fn next_time(&self) -> Option<u64> {
        self.rate.map(|_| self.intended(self.issued))
    }

    /// Messages handed out so far.
    #[cfg(test)]
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Messages that were due by `now_us` but not yet handed out (the generator's backlog).
    #[cfg(test)]
    pub fn backlog(&self, now_us: u64) -> u64 {
        match self.rate {
            Some(r) if now_us > self.start_us => {
                let due = ((now_us - self.start_us) as f64 * r / 1e6) as u64 + 1;
                due.saturating_sub(self.issued)
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_hands_out_messages_on_schedule() {
        let mut s = Schedule::new(Some(1000.0), 1_000_000);
        // At the start only message 0 is due.
        assert_eq!(s.next_due(1_000_000), Some(1_000_000));
        assert_eq!(s.next_due(1_000_000), None);
        assert_eq!(s.next_time(), Some(1_001_000));
        // 10.5 ms later, messages 1..=10 are due, each with its own intended time.
        let due: Vec<u64> = std::iter::from_fn(|| s.next_due(1_010_500)).collect();
        assert_eq!(due.len(), 10);
        assert_eq!(due[0], 1_001_000);
        assert_eq!(due[9], 1_010_000);
        assert_eq!(s.issued(), 11);
    }

    #[test]
    fn a_stall_keeps_the_original_intended_times() {
        let mut s = Schedule::new(Some(100.0), 0);
        // Nothing is taken for 1 s (the generator was stalled): 101 messages are due, and the
        // first keeps intended time 0, so its latency counts the whole stall.
        assert_eq!(s.backlog(1_000_000), 101);
        assert_eq!(s.next_due(1_000_000), Some(0));
        assert_eq!(s.backlog(1_000_000), 100);
    }

    #[test]
    fn closed_loop_is_always_due_now() {
        let mut s = Schedule::new(None, 5);
        assert!(!s.is_open_loop());
        assert_eq!(s.next_due(42), Some(42));
        assert_eq!(s.next_due(43), Some(43));
        assert_eq!(s.next_time(), None);
        assert_eq!(s.backlog(1_000_000), 0);
    }
}
