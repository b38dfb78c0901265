//! Replication on the data plane: a leading shard tracks its followers and advances the
//! high watermark; a following shard fetches from its leader and stores the leader's bytes.
//!
//! Invariants:
//! - Roles come only from the catalog the metadata quorum produced: this module never
//!   decides who leads; it follows the placement (replicas, ISR, leader, leader epoch).
//! - A leader's high watermark is the smallest log end among the in-sync replicas, never
//!   moves back, and does not move while the ISR is smaller than `min.insync.replicas`.
//! - A follower stores only whole batches the leader sent, at their offsets, after
//!   truncating where its log diverged; its high watermark is the leader's, capped by its
//!   own log end.
//! - It knows nothing of connections' framing beyond the Fetch it sends, and nothing of
//!   consensus; all its state is per shard (no locks) and soft: follower progress is
//!   rebuilt from the followers' next fetches.

pub mod checkpoint;
pub mod coordinator_log;
pub mod follower;
pub mod leader;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::broker::shard::PartitionKey;

/// What a leader knows of one follower of one partition.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The follower's log end: the offset of its last fetch.
    pub log_end: i64,
    /// When it last fetched, and when it last had everything the leader had (ms).
    pub last_fetch_ms: i64,
    pub caught_up_ms: i64,
    /// The leader's log end when that fetch came (Kafka's lastFetchLeaderLogEndOffset).
    pub leader_end_at_fetch: i64,
}

/// A shard's replication figures for its metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub max_lag: u64,
    /// The largest lag in bytes, and in time since a follower last had everything (ms).
    pub max_lag_bytes: u64,
    pub max_lag_ms: u64,
    pub fetched_bytes: u64,
}

/// A shard's replication state.
#[derive(Default)]
pub struct ShardReplication {
    /// Counters for the metrics (the lag is computed at the scrape).
    pub stats: std::cell::Cell<Stats>,
    /// Leader side: per partition this shard leads, its followers' progress by node.
    pub progress: RefCell<HashMap<PartitionKey, BTreeMap<u64, Progress>>>,
    /// Follower side: the leaders (node, shard) this shard runs a fetcher for.
    pub fetchers: RefCell<BTreeMap<(u64, u16), ()>>,
    /// Since when (ms) this shard leads each partition at its current leader epoch.
    pub led_since: RefCell<HashMap<PartitionKey, (i32, i64)>>,
    /// Partitions with an ISR change proposed and not yet answered (one at a time).
    pub isr_in_flight: RefCell<std::collections::HashSet<PartitionKey>>,
    /// The high watermarks last written to the checkpoint, and those read from it at start
    /// (taken by each replica as it is first seen).
    pub checkpointed: RefCell<Vec<(PartitionKey, i64)>>,
    pub restored: RefCell<Option<HashMap<PartitionKey, i64>>>,
}

/// After a new catalog is installed on `shard`: high watermarks of the partitions it leads
/// recomputed (the ISR may have changed), progress of those it no longer leads dropped, and
/// a fetcher running for every leader it follows.
pub fn on_catalog(shard: &std::rc::Rc<crate::broker::shard::Shard>) {
    let cat = shard.catalog();
    if cat.cluster.is_none() {
        return;
    }
    let mut led = std::collections::HashSet::new();
    let now = crate::log::now_ms();
    // A replicated partition seen for the first time since the start: its high watermark
    // from the checkpoint (capped by its log end), or its log start.
    if shard.replication.restored.borrow().is_none() {
        let loaded = checkpoint::load(shard);
        *shard.replication.restored.borrow_mut() = Some(loaded);
    }
    let restored_cell = shard.replication.restored.borrow();
    let restored = restored_cell.as_ref();
    for ((topic, p), log) in shard.open_logs() {
        let replicated = cat.place(&topic, p).is_some_and(leader::replicated);
        if replicated && log.committed().is_none() {
            let hw = restored
                .and_then(|r| r.get(&(topic.clone(), p)).copied())
                .unwrap_or_else(|| log.log_start_offset());
            log.set_committed(Some(hw.clamp(log.log_start_offset(), log.written_end())));
        }
        if cat.locate(&topic, p, shard.nshards) == Some(shard.id) {
            leader::update_high_watermark(shard, &cat, &topic, p, &log);
            let epoch = cat.place(&topic, p).map_or(0, |pl| pl.leader_epoch);
            let mut since = shard.replication.led_since.borrow_mut();
            let entry = since.entry((topic.clone(), p)).or_insert((epoch, now));
            if entry.0 != epoch {
                *entry = (epoch, now);
            }
            led.insert((topic, p));
        }
    }
    drop(restored_cell);
    shard
        .replication
        .progress
        .borrow_mut()
        .retain(|k, _| led.contains(k));
    shard
        .replication
        .led_since
        .borrow_mut()
        .retain(|k, _| led.contains(k));
    follower::ensure_fetchers(shard);
}

impl ShardReplication {
    pub fn count(&self, f: impl FnOnce(&mut Stats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }
}

/// The shard's replication figures now: its counters and its followers' largest lag.
pub fn stats(shard: &crate::broker::shard::Shard) -> Stats {
    let mut s = shard.replication.stats.get();
    let now = crate::log::now_ms();
    let progress = shard.replication.progress.borrow();
    for ((topic, p), followers) in progress.iter() {
        if let Some(log) = shard.log(topic, *p) {
            let end = log.written_end();
            for f in followers.values().filter(|f| f.log_end < end) {
                s.max_lag = s.max_lag.max((end - f.log_end) as u64);
                s.max_lag_bytes = s.max_lag_bytes.max(log.bytes_from(f.log_end));
                s.max_lag_ms = s.max_lag_ms.max((now - f.caught_up_ms).max(0) as u64);
            }
        }
    }
    s
}
