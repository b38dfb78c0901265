//! The storage engine: one append-only log of record batches per partition, split into
//! segments with sparse offset and time indexes.
//!
//! Invariants:
//! - `log/` knows nothing of Kafka requests, connections or shards; it stores and serves
//!   record batches by offset.
//! - Only the shard that owns a partition holds its `Log` (`Log` is `!Send`).
//! - Appends are written by one writer task per log, in offset order, as large sequential
//!   io_uring writes; readers see a batch only after its write completed (`high_watermark`).
//! - A failed write is never acknowledged: the file is cut back and every append queued behind
//!   it fails too, so the log has no holes.

mod append;
pub mod batch;
pub mod checksum;
mod cleaner;
pub mod codec;
pub mod epochs;
pub mod file;
pub mod index;
pub mod producer_state;
pub mod read;
pub mod records;
mod recovery;
mod replica;
pub mod segment;
pub mod send_range;
mod transactions;
pub mod txn_index;
pub mod validate;
mod writer;

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;
use thiserror::Error;
use tracing::info;

use crate::notify::Notify;
use batch::{BatchError, BatchHeader};
use file::LogFile;
use producer_state::{ProducerState, SequenceError};
use segment::Segment;
use writer::{flush, write_log_start, write_snapshot};

/// When appended data is made durable (fdatasync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Appends that ask for durability (acks=all) are acknowledged only after an fdatasync;
    /// all such appends of one writer round share it (group commit). Others are flushed
    /// in the background like `Interval`.
    Always,
    /// No acknowledgement waits; data is flushed every `flush_ms` or `flush_messages`.
    Interval,
    /// No explicit flush except at segment roll and clean shutdown.
    Never,
}

impl std::str::FromStr for FlushPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "always" => Ok(FlushPolicy::Always),
            "interval" => Ok(FlushPolicy::Interval),
            "never" => Ok(FlushPolicy::Never),
            other => Err(format!("expected always, interval or never, got {other:?}")),
        }
    }
}

impl std::fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FlushPolicy::Always => "always",
            FlushPolicy::Interval => "interval",
            FlushPolicy::Never => "never",
        })
    }
}

/// `cleanup.policy`: `delete`, `compact` or both (`compact,delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Retention (`retention.ms`, `retention.bytes`) deletes old segments.
    pub delete: bool,
    /// The cleaner keeps the latest record per key.
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
}

impl std::str::FromStr for CleanupPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "delete" => p.delete = true,
                "compact" => p.compact = true,
                other => {
                    return Err(format!(
                        "expected delete, compact or compact,delete, got {other:?}"
                    ))
                }
            }
        }
        Ok(p)
    }
}

impl std::fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        })
    }
}

/// Per-log settings (Kafka topic config names in comments).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: i64,
    /// `index.interval.bytes`
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: largest batch accepted.
    pub max_batch_bytes: usize,
    /// `producer.id.expiration.ms`: idempotent-producer state kept this long after a
    /// producer's last append.
    pub producer_expiration_ms: i64,
    /// Flush policy (`--flush`).
    pub flush: FlushPolicy,
    /// `flush.ms`: longest time written data stays unflushed (Always and Interval).
    pub flush_ms: i64,
    /// `flush.messages`: most records written before a flush (Interval).
    pub flush_messages: i64,
    /// `retention.ms`: closed segments whose newest record is older are deleted (-1: keep).
    pub retention_ms: i64,
    /// `retention.bytes`: oldest closed segments are deleted while the log is larger (-1:
    /// no limit).
    pub retention_bytes: i64,
    /// `cleanup.policy`
    pub cleanup: CleanupPolicy,
    /// `delete.retention.ms`: a tombstone stays readable at least this long after its
    /// segment's newest record.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: segments with a record newer than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: share of uncleaned bytes among closed segments before a
    /// log is cleaned.
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            max_batch_bytes: 1_048_588,
            producer_expiration_ms: producer_state::DEFAULT_EXPIRATION_MS,
            flush: FlushPolicy::Always,
            flush_ms: 1000,
            flush_messages: i64::MAX,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

/// Bytes of appends allowed to queue behind the writer before producers wait.
const MAX_PENDING_BYTES: usize = 64 << 20;

#[derive(Debug, Error)]
pub enum LogError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("corrupt record batch: {0}")]
    Corrupt(#[from] BatchError),
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("offset {requested} out of range [{start}, {end}]")]
    OffsetOutOfRange {
        requested: i64,
        start: i64,
        end: i64,
    },
    #[error("append failed because an earlier write to this log failed")]
    Aborted,
    #[error("invalid records: {0}")]
    Records(#[from] validate::RecordError),
    #[error("idempotent producer: {0}")]
    Sequence(#[from] SequenceError),
    #[error("a batch of an idempotent producer must be alone in its produce request")]
    MultipleIdempotentBatches,
    #[error("replica batch at offset {base} does not follow on at {end}")]
    NotAtEnd { base: i64, end: i64 },
    #[error("the log is busy (a cleaner pass or a segment change); try again")]
    Busy,
}

/// An append queued behind the writer (or a retried idempotent batch already there).
pub enum Enqueued {
    Queued(oneshot::Receiver<Result<(), LogError>>, AppendInfo),
    /// (producer id, the batch's record, the log's truncation count when it was found).
    Duplicate(i64, producer_state::BatchRecord, u64),
}

/// Result of a successful append.
#[derive(Debug, Clone, Copy)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
}

/// Result of a read.
#[derive(Debug, Clone)]
pub struct ReadInfo {
    /// Whole record batches, starting with the one holding the requested offset.
    pub records: Bytes,
    /// Records in `records` (sum of the batches' record counts).
    pub record_count: u64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

/// An append waiting for its answer.
type Waiter = oneshot::Sender<Result<(), LogError>>;

struct Pending {
    buf: Vec<u8>,
    batches: Vec<(usize, BatchHeader)>,
    /// (waiter, wants durability)
    waiters: Vec<(Waiter, bool)>,
}

impl Pending {
    fn new() -> Self {
        Pending {
            buf: Vec::new(),
            batches: Vec::new(),
            waiters: Vec::new(),
        }
    }
}

struct State {
    segments: Vec<Segment>,
    log_start_offset: i64,
    /// Next offset to hand out (includes queued, unwritten appends).
    next_offset: i64,
    /// End of written, readable data.
    high_watermark: i64,
    pending: Pending,
    writer_active: bool,
    /// Written files waiting for an fdatasync, each with the durable appends it will answer
    /// (none: a flush the policy asked for), and whether the syncer task runs.
    syncs: Vec<(LogFile, Vec<Waiter>)>,
    syncer_active: bool,
    config: LogConfig,
    /// Idempotent producers' recent batches, updated as batches are queued.
    producers: ProducerState,
    last_expiry_ms: i64,
    /// Records written since the last flush, and when that flush was.
    unflushed_records: i64,
    last_flush_ms: i64,
    /// Offsets below this were cleaned by the last compaction (the next pass starts here).
    cleaner_checkpoint: i64,
    /// The epoch this log's appends are stamped with (its leader's; 0 on a single node).
    leader_epoch: i32,
    /// Which epoch appended from which offset (written before the batches it names).
    epochs: epochs::EpochCache,
    /// A replicated partition's high watermark (what every in-sync replica has), set by
    /// the replication layer; `None`: not replicated, everything written is visible.
    committed: Option<i64>,
}

impl State {
    /// The high watermark consumers read below: everything written, or what every in-sync
    /// replica has when the partition is replicated.
    fn visible_end(&self) -> i64 {
        self.committed
            .map_or(self.high_watermark, |c| c.min(self.high_watermark))
    }

    /// What a read by `iso` sees: (high watermark, last stable offset, where it stops —
    /// the written end for a follower, the high watermark for a read_uncommitted consumer,
    /// the last stable offset for a read_committed one).
    fn read_bounds(&mut self, iso: Isolation) -> (i64, i64, i64) {
        let hw = self.visible_end();
        let lso = self.producers.txns.lso(hw);
        let bound = match iso {
            Isolation::Replica => self.high_watermark,
            Isolation::Uncommitted => hw,
            Isolation::Committed => lso,
        };
        (hw, lso, bound)
    }
}

/// Who reads, and so how far: a follower to the written end, consumers to the high
/// watermark (read_uncommitted) or the last stable offset (read_committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    Replica,
    Uncommitted,
    Committed,
}

impl Isolation {
    /// A fetch's isolation: a follower's (`replica_id >= 0`), else its `isolation_level`.
    pub fn of_fetch(replica_id: i32, isolation_level: i8) -> Isolation {
        if replica_id >= 0 {
            Isolation::Replica
        } else if isolation_level == 1 {
            Isolation::Committed
        } else {
            Isolation::Uncommitted
        }
    }
}

struct Inner {
    dir: PathBuf,
    state: RefCell<State>,
    /// Fired after each completed write (new data readable, pending space freed).
    written: Notify,
    /// The log was dropped from its shard (topic deleted): the cleaner must not swap files.
    closed: std::cell::Cell<bool>,
    /// A cleaner pass is running, or the cleaner failed and is off until restart.
    cleaner_busy: std::cell::Cell<bool>,
    /// A follower's truncation or reset is under way: appends wait for it to end.
    truncating: std::cell::Cell<bool>,
    /// Truncations and resets so far: an answer computed before one may name cut offsets.
    truncations: std::cell::Cell<u64>,
    /// (segment, position) of corrupt batches already reported (each is logged once).
    damaged: RefCell<Vec<(i64, u64)>>,
}

/// A partition's log. Cheap to clone (shared handle on the owning shard).
#[derive(Clone)]
pub struct Log {
    inner: Rc<Inner>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Log {
    /// Writes a snapshot of the producer state as of the end of the written log, keeping
    /// the two newest snapshots.
    pub async fn snapshot_producers(&self) -> Result<(), LogError> {
        let (bytes, at) = {
            let st = self.inner.state.borrow();
            if !st.pending.buf.is_empty() {
                // Queued batches are already recorded; a snapshot now would name offsets
                // that are not written yet. The next roll or shutdown takes it.
                return Ok(());
            }
            (st.producers.encode(), st.high_watermark)
        };
        write_snapshot(&self.inner.dir, at, bytes).await
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The high watermark: consumers read below it. Everything written, unless the
    /// partition is replicated: then what every in-sync replica has ([`Log::set_committed`]).
    pub fn high_watermark(&self) -> i64 {
        self.inner.state.borrow().visible_end()
    }

    /// The end of written, readable data (a follower fetches up to it).
    pub fn written_end(&self) -> i64 {
        self.inner.state.borrow().high_watermark
    }

    /// The replicated high watermark, if one was set ([`Log::set_committed`]).
    pub fn committed(&self) -> Option<i64> {
        self.inner.state.borrow().committed
    }

    /// Sets the replicated high watermark (`None`: not replicated). Readers and waiters
    /// are woken when it moves up.
    pub fn set_committed(&self, committed: Option<i64>) {
        let moved = {
            let mut st = self.inner.state.borrow_mut();
            let before = st.committed;
            st.committed = committed;
            match (before, committed) {
                (Some(a), Some(b)) => b > a,
                (a, b) => a != b,
            }
        };
        if moved {
            self.inner.written.notify_all();
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.state.borrow().log_start_offset
    }

    /// Total bytes of whole batches across segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .state
            .borrow()
            .segments
            .iter()
            .map(|s| s.size)
            .sum()
    }

    /// Bytes queued behind the writer, not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.inner.state.borrow().pending.buf.capacity()
    }

    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    /// Base offset of the active (last) segment: everything below it is in closed segments.
    pub fn active_base(&self) -> i64 {
        self.inner
            .state
            .borrow()
            .segments
            .last()
            .map(|s| s.base_offset)
            .unwrap_or(0)
    }

    /// Deletes closed segments that end at or before `offset` and advances the log start
    /// offset to the first remaining segment. The active segment is never deleted. Returns
    /// how many segments were removed.
    pub fn delete_segments_before(&self, offset: i64) -> Result<usize, LogError> {
        let removed: Vec<i64> = {
            let mut st = self.inner.state.borrow_mut();
            let n = st.segments.len();
            let mut k = 0;
            while k + 1 < n && st.segments[k].next_offset <= offset {
                k += 1;
            }
            let removed = st.segments.drain(..k).map(|s| s.base_offset).collect();
            if let Some(first) = st.segments.first() {
                st.log_start_offset = st.log_start_offset.max(first.base_offset);
            }
            let start = st.log_start_offset;
            st.producers.txns.trim_before(start);
            removed
        };
        for base in &removed {
            segment::remove_files_later(&self.inner.dir, *base)?;
            info!(dir = %self.inner.dir.display(), base_offset = base, "deleted segment");
        }
        Ok(removed.len())
    }

    /// Marks the log as dropped by its shard (its directory is about to be removed): no
    /// background work may touch its files any more.
    pub fn close(&self) {
        self.inner.closed.set(true);
    }

    pub fn set_config(&self, config: LogConfig) {
        self.inner.state.borrow_mut().config = config;
    }

    /// A future completing after the next write lands.
    pub fn written(&self) -> crate::notify::Notified<'_> {
        self.inner.written.notified()
    }

    /// Whether the policy wants a background flush now (cheap: no I/O).
    pub fn flush_due(&self, now_ms: i64) -> bool {
        let st = self.inner.state.borrow();
        st.config.flush != FlushPolicy::Never
            && st.unflushed_records > 0
            && now_ms - st.last_flush_ms >= st.config.flush_ms
    }

    /// Flushes written data if the policy says it is due (`flush.ms` passed since the last
    /// flush with data unflushed). Called periodically by the owning shard.
    pub async fn flush_if_due(&self, now_ms: i64) -> Result<bool, LogError> {
        let file = {
            let due = self.flush_due(now_ms);
            let st = self.inner.state.borrow();
            match (due, st.segments.last()) {
                (true, Some(s)) => s.log.clone(),
                _ => return Ok(false),
            }
        };
        flush(&self.inner, &file).await?;
        Ok(true)
    }

    /// DeleteRecords: moves the log start offset up to `offset` (-1: the high watermark),
    /// persists it, and deletes the segments wholly below it. Returns the new log start.
    pub fn delete_records(&self, offset: i64) -> Result<i64, LogError> {
        let (hw, start) = (self.high_watermark(), self.log_start_offset());
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start,
                end: hw,
            });
        }
        if target <= start {
            return Ok(start);
        }
        write_log_start(&self.inner.dir, target)?;
        self.inner.state.borrow_mut().log_start_offset = target;
        self.delete_segments_before(target)?;
        info!(dir = %self.inner.dir.display(), log_start_offset = target, "records deleted below offset");
        Ok(target)
    }

    /// Applies `retention.ms` and `retention.bytes`: deletes whole closed segments from the
    /// start of the log (never the active one) and advances the log start offset. Returns
    /// the number of segments deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let cut = {
            let st = self.inner.state.borrow();
            let cfg = &st.config;
            if !cfg.cleanup.delete {
                return Ok(0);
            }
            let closed = st.segments.len().saturating_sub(1);
            let mut total: i64 = st.segments.iter().map(|s| s.size as i64).sum();
            let mut cut = None;
            for seg in st.segments.iter().take(closed) {
                let too_old = cfg.retention_ms >= 0
                    && seg.max_timestamp >= 0
                    && now_ms - seg.max_timestamp > cfg.retention_ms;
                let too_big =
                    cfg.retention_bytes >= 0 && total - seg.size as i64 >= cfg.retention_bytes;
                if !(too_old || too_big) {
                    break;
                }
                total -= seg.size as i64;
                cut = Some(seg.next_offset);
            }
            cut
        };
        match cut {
            Some(offset) => {
                let n = self.delete_segments_before(offset)?;
                if n > 0 {
                    info!(
                        dir = %self.inner.dir.display(),
                        segments = n,
                        log_start_offset = self.log_start_offset(),
                        "retention deleted segments"
                    );
                }
                Ok(n)
            }
            None => Ok(0),
        }
    }

    /// Makes all written data and the active segment's indexes durable.
    pub async fn sync(&self) -> Result<(), LogError> {
        let work = {
            let mut st = self.inner.state.borrow_mut();
            st.segments.last_mut().map(|s| s.take_sync_work())
        };
        if let Some(w) = work {
            w.run().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;
