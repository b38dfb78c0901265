//! The offsets partitions a coordinator holds, and how a commit becomes durable.
//!
//! On a single node the coordinator opens its offsets logs itself (under
//! `<data-dir>/groups/`) and compacts them into snapshot files ([`offsets::compact`]). In a
//! cluster they are ordinary replicated partitions of the shard (`__consumer_offsets`,
//! `cleanup.policy=compact`, cleaned by the log cleaner like any compacted topic): the
//! coordinator holds the ones its shard leads, rebuilt from the log when leadership arrives
//! and dropped with their groups when it goes, and a commit is answered only once the
//! in-sync replicas have it ([`Replicator`]).
//!
//! Invariants: a group is served only while its partition is held, and a replicated
//! partition only at the leader epoch it was loaded at; the in-memory offsets of a key move
//! only forward in log order (a commit that finished waiting after a later one does not
//! overwrite it). This module knows the log, not shards or the replication protocol.

use std::collections::HashMap;
use std::path::Path;

use tracing::{error, info, warn};

use super::coordinator::{Coordinator, KAFKA_STORAGE_ERROR, NOT_COORDINATOR};
use super::offsets::{self, encode_key, encode_value, OffsetKey};
use super::state::{self, Committed, Group};
use super::{offsets_partition, OFFSETS_TOPIC};
pub use crate::internal_log::{Held, Replicator};
use crate::log::records::{build_batch, Record};
use crate::log::{now_ms, Log, LogConfig};

pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub use crate::internal_log::COORDINATOR_NOT_AVAILABLE;
/// Records per batch when legacy offsets are copied into a replicated partition.
const MIGRATE_BATCH: usize = 500;

fn legacy_dir(data_dir: &Path, partition: i32) -> std::path::PathBuf {
    data_dir
        .join("groups")
        .join(format!("{OFFSETS_TOPIC}-{partition}"))
}

impl Coordinator {
    /// Single node: opens the offsets partitions in `parts` this shard does not hold yet
    /// (its own logs under `<data-dir>/groups/`) and rebuilds their groups' offsets.
    pub async fn adopt(&self, data_dir: &Path, parts: &[i32], clean: bool) {
        for &p in parts {
            if self.logs.borrow().contains_key(&p) {
                continue;
            }
            let Some(log) = open_legacy(data_dir, p, clean).await else {
                continue;
            };
            match offsets::recover(&log).await {
                Ok(map) => self.install(map),
                Err(e) => error!(partition = p, "cannot replay offsets log: {e}"),
            }
            self.load_staged(p, &log).await;
            self.logs.borrow_mut().insert(p, Held { log, epoch: None });
        }
    }

    /// In a cluster, on every new catalog: `led` are the offsets partitions this shard now
    /// leads, with their epochs and logs. Drops the groups of partitions no longer led (or
    /// led at another epoch) and returns those to load, which [`Coordinator::load`] then
    /// rebuilds (the caller runs the loads as tasks, so a long replay holds up nothing).
    pub fn lead(&self, led: &[(i32, i32, Log)]) -> Vec<(i32, i32, Log)> {
        let (resign, load) = crate::internal_log::lead(&self.logs, &self.loading, led);
        for p in resign {
            self.resign(p);
        }
        load
    }

    /// Stops coordinating the groups of offsets partition `p`: their members get
    /// NOT_COORDINATOR and find the new leader.
    fn resign(&self, p: i32) {
        self.logs.borrow_mut().remove(&p);
        self.staged.borrow_mut().remove(&p);
        self.loading.borrow_mut().remove(&p);
        let mut groups = self.groups.borrow_mut();
        let before = groups.len();
        groups.retain(|id, _| offsets_partition(id) != p);
        let dropped = before - groups.len();
        self.applied
            .borrow_mut()
            .retain(|(g, _, _), _| offsets_partition(g) != p);
        info!(
            partition = p,
            groups = dropped,
            "no longer leads offsets partition: its groups are dropped"
        );
    }

    /// Rebuilds the groups of offsets partition `p` from its log (led at `epoch`), after
    /// copying in what a single-node version left under `<data-dir>/groups/` for it, then
    /// serves them, unless leadership moved on meanwhile.
    pub async fn load(&self, data_dir: &Path, p: i32, epoch: i32, log: Log, clean: bool) {
        let started = std::time::Instant::now();
        let mut map = match offsets::recover(&log).await {
            Ok(map) => map,
            Err(e) => {
                error!(partition = p, "cannot replay offsets log: {e}");
                self.loading.borrow_mut().remove(&p);
                return;
            }
        };
        if self.loading.borrow().get(&p) != Some(&epoch) {
            return;
        }
        let held = Held {
            log,
            epoch: Some(epoch),
        };
        if let Err(code) = self.migrate(data_dir, p, &held, &mut map, clean).await {
            warn!(
                partition = p,
                code, "legacy offsets not copied yet; the next leadership change retries"
            );
        }
        if self.loading.borrow().get(&p) != Some(&epoch) {
            return;
        }
        self.loading.borrow_mut().remove(&p);
        let groups = map.len();
        self.install(map);
        self.load_staged(p, &held.log).await;
        self.logs.borrow_mut().insert(p, held);
        info!(
            partition = p,
            epoch,
            offsets = groups,
            ms = started.elapsed().as_millis() as u64,
            "leads offsets partition: groups loaded"
        );
    }

    /// Copies the offsets a single-node version (or an earlier cluster version) kept in
    /// its own log under `<data-dir>/groups/` into the replicated partition — keys the
    /// partition already has stay as they are — then renames that directory away.
    async fn migrate(
        &self,
        data_dir: &Path,
        p: i32,
        held: &Held,
        map: &mut HashMap<OffsetKey, Committed>,
        clean: bool,
    ) -> Result<(), i16> {
        let dir = legacy_dir(data_dir, p);
        if !dir.is_dir() {
            return Ok(());
        }
        let Some(old) = open_legacy(data_dir, p, clean).await else {
            return Err(KAFKA_STORAGE_ERROR);
        };
        let legacy = offsets::recover(&old).await.map_err(|e| {
            error!(partition = p, "cannot replay legacy offsets log: {e}");
            KAFKA_STORAGE_ERROR
        })?;
        old.close();
        drop(old);
        let missing: Vec<(OffsetKey, Committed)> = legacy
            .into_iter()
            .filter(|(k, _)| !map.contains_key(k))
            .collect();
        for chunk in missing.chunks(MIGRATE_BATCH) {
            let records = chunk
                .iter()
                .map(|((g, t, part), c)| (encode_key(g, t, *part), Some(encode_value(c))))
                .collect();
            self.append_to(p, held, records).await?;
            map.extend(chunk.iter().cloned());
        }
        let to = dir.with_extension("migrated");
        if let Err(e) = std::fs::rename(&dir, &to) {
            warn!(dir = %dir.display(), "legacy offsets copied but not renamed: {e}");
        }
        info!(
            partition = p,
            offsets = missing.len(),
            "copied legacy offsets into the replicated offsets partition"
        );
        Ok(())
    }

    /// Adds replayed offsets to their groups.
    fn install(&self, map: HashMap<OffsetKey, Committed>) {
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        for ((g, t, part), c) in map {
            groups
                .entry(g.clone())
                .or_insert_with(|| Group::new(&g, now))
                .offsets
                .insert((t, part), c);
        }
    }

    /// Whether this shard serves `group` now: NONE, NOT_COORDINATOR, or
    /// COORDINATOR_LOAD_IN_PROGRESS while its partition is being loaded.
    pub fn serves(&self, group: &str) -> i16 {
        let p = offsets_partition(group);
        if self.logs.borrow().contains_key(&p) {
            state::NONE
        } else if self.loading.borrow().contains_key(&p) {
            COORDINATOR_LOAD_IN_PROGRESS
        } else {
            NOT_COORDINATOR
        }
    }

    /// The offsets logs this shard holds.
    fn all_held(&self) -> Vec<(i32, Held)> {
        self.logs
            .borrow()
            .iter()
            .map(|(p, h)| (*p, h.clone()))
            .collect()
    }

    /// Appends commit records (`None` value: tombstone) for a group, durably and, in a
    /// cluster, on every in-sync replica: the batch's base offset, or the Kafka error.
    pub(super) async fn append_records(
        &self,
        group: &str,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<i64, i16> {
        let p = offsets_partition(group);
        let Some(held) = self.logs.borrow().get(&p).cloned() else {
            return Err(NOT_COORDINATOR);
        };
        self.append_to(p, &held, records).await
    }

    /// Rebuilds the offsets transactions staged on partition `p`.
    async fn load_staged(&self, p: i32, log: &Log) {
        match super::txn_offsets::replay_staged(log).await {
            Ok(s) if !s.is_empty() => {
                self.staged.borrow_mut().insert(p, s);
            }
            Ok(_) => {}
            Err(e) => error!(
                partition = p,
                "cannot replay staged transactional offsets: {e}"
            ),
        }
    }

    pub(super) async fn append_to(
        &self,
        p: i32,
        held: &Held,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<i64, i16> {
        let replicator = self.replicator.borrow().clone();
        let refs: Vec<Record<'_>> = records
            .iter()
            .map(|(k, v)| (Some(k.as_slice()), v.as_deref()))
            .collect();
        let batch = build_batch(&refs, now_ms());
        let info =
            crate::internal_log::append(p, held, replicator.as_deref(), &batch, "offset commit")
                .await?;
        Ok(info.base_offset)
    }

    /// Applies a written value (`None`: deleted) of `key` appended at `at`, unless a later
    /// append of the same key was applied first.
    pub(super) fn apply(&self, key: OffsetKey, at: i64, value: Option<Committed>) {
        let mut applied = self.applied.borrow_mut();
        if applied.get(&key).is_some_and(|prev| *prev > at) {
            return;
        }
        let mut groups = self.groups.borrow_mut();
        let (g, t, part) = key.clone();
        match value {
            Some(c) => {
                if let Some(group) = groups.get_mut(&g) {
                    group.offsets.insert((t, part), c);
                }
            }
            None => {
                if let Some(group) = groups.get_mut(&g) {
                    group.offsets.remove(&(t, part));
                }
            }
        }
        applied.insert(key, at);
    }

    /// Single node: compacts its own offsets logs that rolled since their last snapshot (a
    /// cluster's replicated ones are cleaned by the log cleaner).
    pub async fn compact(&self) {
        for (p, held) in self.all_held() {
            if held.epoch.is_some() || self.has_staged(p) {
                continue;
            }
            match offsets::compact(&held.log).await {
                Ok(Some(at)) => info!(
                    partition = p,
                    offset = at,
                    "compacted offsets log into a snapshot"
                ),
                Ok(None) => {}
                Err(e) => warn!(partition = p, "offsets compaction failed: {e}"),
            }
        }
    }

    /// Flushes its own offsets logs (clean shutdown; the shard syncs replicated ones);
    /// whether all succeeded.
    pub async fn sync_logs(&self) -> bool {
        let mut ok = true;
        for (p, held) in self.all_held() {
            if held.epoch.is_some() {
                continue;
            }
            if let Err(e) = held.log.sync().await {
                error!(partition = p, "offsets log sync failed: {e}");
                ok = false;
            }
        }
        ok
    }
}

/// Opens a coordinator-owned offsets log under `<data-dir>/groups/`.
async fn open_legacy(data_dir: &Path, p: i32, clean: bool) -> Option<Log> {
    let dir = legacy_dir(data_dir, p);
    let lc = LogConfig {
        segment_bytes: 100 << 20,
        ..LogConfig::default()
    };
    match Log::open_with(&dir, lc, clean).await {
        Ok((log, report)) => {
            for line in report {
                info!(partition = p, "offsets log recovery: {line}");
            }
            Some(log)
        }
        Err(e) => {
            error!(partition = p, dir = %dir.display(), "cannot open offsets log: {e}");
            None
        }
    }
}
