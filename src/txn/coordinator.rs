//! A shard's transaction coordinator: the transactional ids of the `__transaction_state`
//! partitions the shard holds, the transaction APIs, the markers, and the timeout scan.
//!
//! A decision is written (PrepareCommit/PrepareAbort) before EndTxn is answered; the
//! markers then go to every partition of the transaction through the [`TxnHost`], and
//! Complete is written once all are in. EndTxn waits for that too (so a client's next
//! transaction does not meet CONCURRENT_TRANSACTIONS); a marker that cannot be written is
//! retried by [`TxnCoordinator::tick`] until it is.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use tracing::{error, info, warn};

use super::records::{encode_key, encode_value, replay};
use super::state::{self, check_producer, TxnMeta, TxnState, CONCURRENT_TRANSACTIONS};
use super::{txn_partition, TxnConfig, TXN_TOPIC};
use crate::internal_log::{self, Held, Replicator};
use crate::log::records::build_batch;
use crate::log::txn_index::Marker;
use crate::log::{now_ms, CleanupPolicy, Log, LogConfig};

pub use crate::internal_log::{COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR};
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
/// Transactional ids one shard coordinates at most (each costs a map entry).
pub const MAX_IDS: usize = 100_000;
/// Partitions one transaction may span.
pub const MAX_PARTITIONS: usize = 10_000;

/// What the coordinator needs from the broker around it.
pub trait TxnHost {
    /// A fresh producer id (never handed out before).
    fn allocate_producer_id(&self) -> LocalBoxFuture<'_, Result<i64, i16>>;
    /// Whether `topic` has partition `partition` (the internal offsets topic included).
    fn partition_exists(&self, topic: &str, partition: i32) -> bool;
    /// Writes `marker` of producer `pid` at `epoch` to each partition: one error code each
    /// (NONE, or UNKNOWN_TOPIC_OR_PARTITION for one deleted since, both done).
    fn write_markers(
        &self,
        pid: i64,
        epoch: i16,
        marker: Marker,
        partitions: Vec<(String, i32)>,
    ) -> LocalBoxFuture<'_, Vec<i16>>;
}

/// One transaction as the admin APIs show it.
#[derive(Debug, Clone)]
pub struct TxnView {
    pub id: String,
    pub meta: TxnMeta,
}

pub struct TxnCoordinator {
    pub(super) cfg: TxnConfig,
    /// The `__transaction_state` partitions held: a single node's own logs, or in a cluster
    /// the replicated partitions this shard leads (see [`super::partitions`]).
    pub(super) logs: RefCell<HashMap<i32, Held>>,
    /// Replicated partitions being loaded, with the leader epoch they are loaded at.
    pub(super) loading: RefCell<HashMap<i32, i32>>,
    pub(super) replicator: RefCell<Option<Rc<dyn Replicator>>>,
    pub(super) txns: RefCell<HashMap<String, TxnMeta>>,
    /// Ids with an operation under way.
    busy: RefCell<HashSet<String>>,
    host: RefCell<Option<Rc<dyn TxnHost>>>,
    pub(super) last_scan_ms: std::cell::Cell<i64>,
    /// A scan is under way (one at a time).
    scanning: std::cell::Cell<bool>,
}

fn log_dir(data_dir: &Path, p: i32) -> std::path::PathBuf {
    data_dir.join("txns").join(format!("{TXN_TOPIC}-{p}"))
}

/// Releases an id's busy mark when the operation ends, however it ends.
struct Busy<'a>(&'a TxnCoordinator, String);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.borrow_mut().remove(&self.1);
    }
}

impl TxnCoordinator {
    /// Opens the `__transaction_state` partitions `parts` this shard owns (under
    /// `<data-dir>/txns/`) and rebuilds their transactional ids.
    pub async fn open(data_dir: &Path, parts: &[i32], cfg: TxnConfig, clean: bool) -> Self {
        let c = TxnCoordinator {
            cfg,
            logs: Default::default(),
            loading: Default::default(),
            replicator: RefCell::new(None),
            txns: Default::default(),
            busy: Default::default(),
            host: RefCell::new(None),
            last_scan_ms: std::cell::Cell::new(0),
            scanning: std::cell::Cell::new(false),
        };
        let lc = LogConfig {
            segment_bytes: 100 << 20,
            cleanup: CleanupPolicy {
                delete: false,
                compact: true,
            },
            ..LogConfig::default()
        };
        for &p in parts {
            let dir = log_dir(data_dir, p);
            let log = match Log::open_with(&dir, lc.clone(), clean).await {
                Ok((log, report)) => {
                    for line in report {
                        info!(partition = p, "transaction log recovery: {line}");
                    }
                    log
                }
                Err(e) => {
                    error!(partition = p, dir = %dir.display(), "cannot open transaction log: {e}");
                    continue;
                }
            };
            match replay(&log).await {
                Ok(map) => {
                    let open = map.values().filter(|m| !m.state.idle()).count();
                    if !map.is_empty() {
                        info!(
                            partition = p,
                            ids = map.len(),
                            open,
                            "transaction log loaded"
                        );
                    }
                    c.txns.borrow_mut().extend(map);
                }
                Err(e) => error!(partition = p, "cannot replay transaction log: {e}"),
            }
            c.logs.borrow_mut().insert(p, Held { log, epoch: None });
        }
        c
    }

    pub fn set_replicator(&self, r: Rc<dyn Replicator>) {
        *self.replicator.borrow_mut() = Some(r);
    }

    pub fn set_host(&self, host: Rc<dyn TxnHost>) {
        *self.host.borrow_mut() = Some(host);
    }

    fn host(&self) -> Option<Rc<dyn TxnHost>> {
        self.host.borrow().clone()
    }

    /// Whether this shard coordinates `id`: NONE, NOT_COORDINATOR, or
    /// COORDINATOR_LOAD_IN_PROGRESS while its partition is being loaded.
    pub fn serves(&self, id: &str) -> i16 {
        let p = txn_partition(id);
        if self.logs.borrow().contains_key(&p) {
            state::NONE
        } else if self.loading.borrow().contains_key(&p) {
            COORDINATOR_LOAD_IN_PROGRESS
        } else {
            NOT_COORDINATOR
        }
    }

    /// Marks `id` busy for one operation, or CONCURRENT_TRANSACTIONS.
    fn claim(&self, id: &str) -> Result<Busy<'_>, i16> {
        let serves = self.serves(id);
        if serves != state::NONE {
            return Err(serves);
        }
        if !self.busy.borrow_mut().insert(id.to_string()) {
            return Err(CONCURRENT_TRANSACTIONS);
        }
        Ok(Busy(self, id.to_string()))
    }

    fn get(&self, id: &str) -> Option<TxnMeta> {
        self.txns.borrow().get(id).cloned()
    }

    /// Writes `id`'s new state durably (in a cluster: on every in-sync replica), then
    /// installs it, unless the partition changed hands meanwhile.
    async fn persist(&self, id: &str, m: TxnMeta) -> Result<(), i16> {
        let p = txn_partition(id);
        let Some(held) = self.logs.borrow().get(&p).cloned() else {
            return Err(NOT_COORDINATOR);
        };
        let (k, v) = (encode_key(id), encode_value(&m));
        let batch = build_batch(&[(Some(k.as_slice()), Some(v.as_slice()))], now_ms());
        let replicator = self.replicator.borrow().clone();
        internal_log::append(p, &held, replicator.as_deref(), &batch, "transaction state").await?;
        let still = self.logs.borrow().get(&p).map(|h| h.epoch) == Some(held.epoch);
        if !still {
            return Err(NOT_COORDINATOR);
        }
        self.txns.borrow_mut().insert(id.to_string(), m);
        Ok(())
    }

    /// InitProducerId with a transactional id: (error, producer id, epoch). A new id gets
    /// a fresh producer id; a known one the next epoch, after aborting a transaction the
    /// previous instance left open (which fences that instance).
    pub async fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        expected: (i64, i16),
        version: i16,
    ) -> (i16, i64, i16) {
        if timeout_ms <= 0 || timeout_ms > self.cfg.max_timeout_ms {
            return (INVALID_TRANSACTION_TIMEOUT, -1, -1);
        }
        let _busy = match self.claim(id) {
            Ok(b) => b,
            Err(code) => return (code, -1, -1),
        };
        let Some(host) = self.host() else {
            return (COORDINATOR_NOT_AVAILABLE, -1, -1);
        };
        let now = now_ms();
        let current = self.get(id);
        let mut m = match current {
            None => {
                if self.txns.borrow().len() >= MAX_IDS {
                    warn!(
                        transactional_id = id,
                        "too many transactional ids on this shard"
                    );
                    return (COORDINATOR_NOT_AVAILABLE, -1, -1);
                }
                let pid = match host.allocate_producer_id().await {
                    Ok(pid) => pid,
                    Err(code) => return (code, -1, -1),
                };
                TxnMeta {
                    producer_id: pid,
                    epoch: -1,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    last_update_ms: now,
                    start_ms: -1,
                }
            }
            Some(m) => m,
        };
        // KIP-360: a producer naming its current id and epoch must match, or it is fenced.
        if expected.0 >= 0 && (expected.0 != m.producer_id || expected.1 != m.epoch) {
            let code = if version >= 4 {
                state::PRODUCER_FENCED
            } else {
                state::INVALID_PRODUCER_EPOCH
            };
            return (code, -1, -1);
        }
        if m.state.preparing() {
            // Finish the decision first; the client retries.
            drop(_busy);
            self.finish(id).await;
            return (CONCURRENT_TRANSACTIONS, -1, -1);
        }
        if m.state == TxnState::Ongoing || m.state == TxnState::PrepareEpochFence {
            let why = "a new producer instance: the open transaction is aborted";
            match self.abort_fencing(id, &m, why).await {
                Ok((fenced, true)) => m = self.get(id).unwrap_or(fenced),
                Ok((_, false)) => return (CONCURRENT_TRANSACTIONS, -1, -1),
                Err(code) => return (code, -1, -1),
            }
        }
        if m.epoch >= i16::MAX - 1 {
            // Epochs exhausted: a new producer id starts again at 0.
            match host.allocate_producer_id().await {
                Ok(pid) => {
                    m.producer_id = pid;
                    m.epoch = 0;
                }
                Err(code) => return (code, -1, -1),
            }
        } else {
            m.epoch += 1;
        }
        m.timeout_ms = timeout_ms;
        m.state = TxnState::Empty;
        m.partitions.clear();
        m.start_ms = -1;
        m.last_update_ms = now;
        let (pid, epoch) = (m.producer_id, m.epoch);
        match self.persist(id, m).await {
            Ok(()) => (state::NONE, pid, epoch),
            Err(code) => (code, -1, -1),
        }
    }

    fn fenced_code(version: i16) -> i16 {
        // Kafka answers old request versions INVALID_PRODUCER_EPOCH for a fenced producer.
        if version >= 2 {
            state::PRODUCER_FENCED
        } else {
            state::INVALID_PRODUCER_EPOCH
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition): one
    /// error code for all the partitions, or per partition when some do not exist.
    pub async fn add_partitions(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[(String, i32)],
        version: i16,
    ) -> Result<(), Vec<i16>> {
        let all = |code: i16| vec![code; parts.len()];
        let Some(host) = self.host() else {
            return Err(all(COORDINATOR_NOT_AVAILABLE));
        };
        let missing: Vec<bool> = parts
            .iter()
            .map(|(t, p)| !host.partition_exists(t, *p))
            .collect();
        if missing.iter().any(|m| *m) {
            return Err(missing
                .iter()
                .map(|m| {
                    if *m {
                        UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        OPERATION_NOT_ATTEMPTED
                    }
                })
                .collect());
        }
        let _busy = self.claim(id).map_err(all)?;
        let Some(m) = self.get(id) else {
            return Err(all(state::INVALID_PRODUCER_ID_MAPPING));
        };
        check_producer(&m, pid, epoch, Self::fenced_code(version)).map_err(all)?;
        if m.partitions.len() + parts.len() > MAX_PARTITIONS {
            return Err(all(state::INVALID_TXN_STATE));
        }
        let Some(next) = m.add(parts, now_ms()).map_err(all)? else {
            return Ok(());
        };
        self.persist(id, next).await.map_err(all)
    }

    /// EndTxn: writes the decision, then the markers and Complete.
    pub async fn end_txn(&self, id: &str, pid: i64, epoch: i16, commit: bool, version: i16) -> i16 {
        let busy = match self.claim(id) {
            Ok(b) => b,
            Err(code) => return code,
        };
        let Some(m) = self.get(id) else {
            return state::INVALID_PRODUCER_ID_MAPPING;
        };
        if let Err(code) = check_producer(&m, pid, epoch, Self::fenced_code(version)) {
            return code;
        }
        let next = match m.end(commit, now_ms()) {
            Ok(Some(next)) => next,
            Ok(None) => return state::NONE,
            Err(code) => return code,
        };
        if let Err(code) = self.persist(id, next.clone()).await {
            return code;
        }
        // Decided: the rest happens whatever the client does now.
        self.write_markers_and_complete(id, &next).await;
        drop(busy);
        state::NONE
    }

    /// Writes the markers of a Prepare* state and then Complete; whether all went in (if
    /// not, the state stays Prepare* and the next tick tries again).
    async fn write_markers_and_complete(&self, id: &str, m: &TxnMeta) -> bool {
        let Some(host) = self.host() else {
            return false;
        };
        let marker = if m.state == TxnState::PrepareCommit {
            Marker::Commit
        } else {
            Marker::Abort
        };
        let parts: Vec<(String, i32)> = m.partitions.iter().cloned().collect();
        let codes = host
            .write_markers(m.producer_id, m.epoch, marker, parts.clone())
            .await;
        let failed: Vec<_> = parts
            .iter()
            .zip(&codes)
            .filter(|(_, c)| **c != state::NONE && **c != UNKNOWN_TOPIC_OR_PARTITION)
            .collect();
        if !failed.is_empty() || codes.len() != parts.len() {
            warn!(
                transactional_id = id,
                failed = failed.len(),
                "transaction markers not all written; retrying later"
            );
            return false;
        }
        self.persist(id, m.completed(now_ms())).await.is_ok()
    }

    /// Carries out `id`'s written decision, if it has one and nothing else is under way.
    async fn finish(&self, id: &str) {
        let Ok(_busy) = self.claim(id) else {
            return;
        };
        if let Some(m) = self.get(id).filter(|m| m.state.preparing()) {
            self.write_markers_and_complete(id, &m).await;
        }
    }

    /// Every `abort_scan_ms`: aborts transactions open longer than their timeout (fencing
    /// their producer) and finishes decisions whose markers are not all written.
    pub async fn tick(&self) {
        let now = now_ms();
        if now - self.last_scan_ms.get() < self.cfg.abort_scan_ms || self.scanning.replace(true) {
            return;
        }
        self.last_scan_ms.set(now);
        self.scan(now).await;
        self.scanning.set(false);
    }

    async fn scan(&self, now: i64) {
        let (expired, unfinished): (Vec<String>, Vec<String>) = {
            let txns = self.txns.borrow();
            let expired = txns
                .iter()
                .filter(|(_, m)| {
                    m.state == TxnState::Ongoing
                        && m.start_ms >= 0
                        && now - m.start_ms > i64::from(m.timeout_ms)
                })
                .map(|(id, _)| id.clone())
                .collect();
            let unfinished = txns
                .iter()
                .filter(|(_, m)| m.state.preparing())
                .map(|(id, _)| id.clone())
                .collect();
            (expired, unfinished)
        };
        for id in unfinished {
            self.finish(&id).await;
        }
        for id in expired {
            let Ok(_busy) = self.claim(&id) else {
                continue;
            };
            let Some(m) = self.get(&id).filter(|m| m.state == TxnState::Ongoing) else {
                continue;
            };
            let why = "transaction timed out: aborted, its producer fenced";
            // A failure is logged where it happens; the next scan tries again.
            let _ = self.abort_fencing(&id, &m, why).await;
        }
    }

    /// The coordinator aborts `m`'s open transaction itself, at the next epoch (fencing its
    /// producer): the decision written, then its markers and Complete. The aborting state
    /// and whether all its markers went in, or the error writing the decision.
    async fn abort_fencing(
        &self,
        id: &str,
        m: &TxnMeta,
        why: &str,
    ) -> Result<(TxnMeta, bool), i16> {
        let fenced = m.fence_abort(now_ms());
        self.persist(id, fenced.clone()).await?;
        info!(
            transactional_id = id,
            producer_id = fenced.producer_id,
            epoch = fenced.epoch,
            timeout_ms = m.timeout_ms,
            "{why}"
        );
        let done = self.write_markers_and_complete(id, &fenced).await;
        Ok((fenced, done))
    }

    /// The transactions this shard coordinates (ListTransactions), filtered.
    pub fn list(&self, states: &[String], pids: &[i64], min_duration_ms: i64) -> Vec<TxnView> {
        let now = now_ms();
        let mut out: Vec<TxnView> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, m)| states.is_empty() || states.iter().any(|s| s == m.state.name()))
            .filter(|(_, m)| pids.is_empty() || pids.contains(&m.producer_id))
            .filter(|(_, m)| {
                min_duration_ms < 0 || (m.start_ms >= 0 && now - m.start_ms >= min_duration_ms)
            })
            .map(|(id, m)| TxnView {
                id: id.clone(),
                meta: m.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// One transactional id's state (DescribeTransactions).
    pub fn describe(&self, id: &str) -> Option<TxnMeta> {
        self.get(id)
    }

    /// Single node: compacts its own logs (the log cleaner; a cluster's replicated ones
    /// are cleaned with the shard's other compacted partitions).
    pub async fn compact(&self, budget: usize) {
        let logs: Vec<(i32, Log)> = self
            .logs
            .borrow()
            .iter()
            .filter(|(_, h)| h.epoch.is_none())
            .map(|(p, h)| (*p, h.log.clone()))
            .collect();
        for (p, log) in logs {
            if let Err(e) = log.clean(now_ms(), budget).await {
                warn!(partition = p, "transaction log compaction failed: {e}");
            }
        }
    }

    /// Flushes its own logs (clean shutdown; the shard syncs replicated ones); whether all
    /// succeeded.
    pub async fn sync_logs(&self) -> bool {
        let logs: Vec<Log> = self
            .logs
            .borrow()
            .values()
            .filter(|h| h.epoch.is_none())
            .map(|h| h.log.clone())
            .collect();
        let mut ok = true;
        for log in logs {
            if let Err(e) = log.sync().await {
                error!("transaction log sync failed: {e}");
                ok = false;
            }
        }
        ok
    }
}
