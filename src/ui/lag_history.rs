//! The lag of every consumer group over the last minutes, sampled by the broker so that
//! the console's chart and its STALLED/LAGGING status have a past the moment a group's
//! page opens (the page adds its own samples from then on).
//!
//! Invariants: bounded everywhere (groups, samples per group, partitions per sample);
//! sampled as a client of the broker's own listener, like the rest of the console, on a
//! thread of its own; a group that is gone is forgotten at the next round.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::admin::client_config::ClientSecurity;

/// Samples kept per group (with the default interval of 10 s: five minutes).
pub const KEEP: usize = 30;
/// Groups followed (the first ones by name).
pub const MAX_GROUPS: usize = 100;
/// Partitions kept per sample.
pub const MAX_ROWS: usize = 1000;

/// One partition in a sample.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Row {
    pub committed: Option<i64>,
    pub lag: Option<i64>,
}

/// A group's lag at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Milliseconds since the epoch.
    pub at: i64,
    pub total: i64,
    /// By "topic/partition".
    pub rows: BTreeMap<String, Row>,
}

impl Sample {
    pub fn of(snapshot: &crate::admin::group::GroupSnapshot, at: i64) -> Sample {
        let rows: BTreeMap<String, Row> = snapshot
            .rows
            .iter()
            .take(MAX_ROWS)
            .map(|r| {
                (
                    format!("{}/{}", r.topic, r.partition),
                    Row {
                        committed: r.committed,
                        lag: r.lag(),
                    },
                )
            })
            .collect();
        let total = rows.values().filter_map(|r| r.lag).sum();
        Sample { at, total, rows }
    }
}

#[derive(Default)]
pub struct LagHistory {
    groups: Mutex<BTreeMap<String, VecDeque<Sample>>>,
    /// What [`LagHistory::run`] sleeps on between rounds.
    sleep: Mutex<()>,
    wake: Condvar,
}

impl LagHistory {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, VecDeque<Sample>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The samples of `group`, oldest first.
    pub fn samples(&self, group: &str) -> Vec<Sample> {
        self.lock()
            .get(group)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn record(&self, group: &str, sample: Sample) {
        let mut groups = self.lock();
        let s = groups.entry(group.to_string()).or_default();
        s.push_back(sample);
        while s.len() > KEEP {
            s.pop_front();
        }
    }

    /// One round: a sample of each group (the first [`MAX_GROUPS`]); gone groups forgotten.
    pub fn sample_all(&self, bootstrap: &str) -> anyhow::Result<()> {
        let groups = crate::admin::group::list_groups(bootstrap)?;
        self.lock().retain(|g, _| groups.contains_key(g));
        for g in groups.keys().take(MAX_GROUPS) {
            match crate::admin::group::snapshot(bootstrap, g) {
                Ok(s) => self.record(g, Sample::of(&s, crate::log::now_ms())),
                Err(e) => tracing::debug!(group = %g, "lag not sampled: {e}"),
            }
        }
        Ok(())
    }

    /// Samples every `interval` until `stop`, through the listener `reach` gives (`None`:
    /// no listener usable without a login; nothing is sampled).
    pub fn run(
        &self,
        interval: Duration,
        reach: impl Fn() -> Option<(String, ClientSecurity)>,
        stop: &AtomicBool,
    ) {
        // Bounded by `stop`; each round waits for the interval.
        while !stop.load(Ordering::Relaxed) {
            if let Some((bootstrap, security)) = reach() {
                let r =
                    crate::admin::client::with_security(security, || self.sample_all(&bootstrap));
                if let Err(e) = r {
                    tracing::debug!("group lag not sampled: {e}");
                }
            }
            let s = self.sleep.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self
                .wake
                .wait_timeout_while(s, interval, |_| !stop.load(Ordering::Relaxed));
        }
    }

    /// Lets [`LagHistory::run`] see its stop flag at once.
    pub fn wake(&self) {
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_window() {
        let h = LagHistory::default();
        for i in 0..(KEEP as i64 + 5) {
            h.record(
                "g",
                Sample {
                    at: i,
                    total: i,
                    rows: BTreeMap::new(),
                },
            );
        }
        let s = h.samples("g");
        assert_eq!(s.len(), KEEP);
        assert_eq!(s[0].at, 5);
        assert!(h.samples("other").is_empty());
    }
}
