//! The log as a replica sees it: the leader epoch its appends are stamped with, where an
//! epoch ends (for a follower that must truncate, KIP-101/KIP-279), and a follower's
//! append of the leader's batches at the offsets they already carry.
//!
//! Invariants: a follower append never reassigns offsets or epochs — the stored bytes are
//! the leader's — and it must start exactly at this log's end; a batch whose CRC or framing
//! is wrong, or that leaves a gap or overlap, is refused whole and nothing is written.

use std::time::Duration;

use tracing::{error, info};

use super::batch::{self, BatchError, BatchHeader};
use super::segment;
use super::writer::producer_state_file;
use super::{AppendInfo, Log, LogError};

/// How long a truncation waits for a running cleaner pass before giving up (the follower
/// tries again on its next fetch).
const CLEANER_WAIT: Duration = Duration::from_secs(30);

impl Log {
    /// The epoch this log stamps on its appends.
    pub fn leader_epoch(&self) -> i32 {
        self.inner.state.borrow().leader_epoch
    }

    /// Makes this replica the leader for `epoch`: its appends from now on carry it (the
    /// cache records where it starts with the first of them). An epoch older than the
    /// newest one the log holds is ignored, so epochs never go backwards.
    pub fn set_leader_epoch(&self, epoch: i32) {
        let mut st = self.inner.state.borrow_mut();
        let newest = st.epochs.latest_epoch().unwrap_or(0).max(st.leader_epoch);
        if epoch >= newest {
            st.leader_epoch = epoch;
        }
    }

    /// The newest epoch in this log's batches, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.state.borrow().epochs.latest_epoch()
    }

    /// KIP-279: the largest epoch ≤ `epoch` this log holds and the offset where it ends
    /// (the next epoch's start, or the written end for the newest); `None` when `epoch`
    /// is older than all of them.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let st = self.inner.state.borrow();
        st.epochs.end_offset_for(epoch, st.high_watermark)
    }

    /// The first offset appended at `epoch`, if this log has batches of it.
    pub fn epoch_start(&self, epoch: i32) -> Option<i64> {
        let st = self.inner.state.borrow();
        st.epochs
            .entries()
            .iter()
            .find(|e| e.epoch == epoch)
            .map(|e| e.start_offset)
    }

    /// Bytes of the log from `offset` to its written end (a follower's lag in bytes), from
    /// the in-memory indexes: exact to within one index interval, no I/O.
    pub fn bytes_from(&self, offset: i64) -> u64 {
        let st = self.inner.state.borrow();
        st.segments
            .iter()
            .filter(|s| s.next_offset > offset)
            .map(|s| {
                if offset <= s.base_offset {
                    s.size
                } else {
                    let rel = (offset - s.base_offset).min(i64::from(u32::MAX)) as u32;
                    s.size.saturating_sub(u64::from(s.index.lookup(rel)))
                }
            })
            .sum()
    }

    /// The next offset an append gets (written or queued).
    pub fn log_end_offset(&self) -> i64 {
        self.inner.state.borrow().next_offset
    }

    /// A follower's append: `records` are whole batches from the leader's log, stored
    /// unchanged at the offsets they carry, which must start at this log's end and follow
    /// on without gaps. Resolves once written (and fdatasynced when `durable` under
    /// `flush=always`).
    pub async fn append_replica(
        &self,
        records: &[u8],
        durable: bool,
    ) -> Result<AppendInfo, LogError> {
        let headers = self.check_replica_batches(records)?;
        // Like a leader's append: after any truncation (another fetcher's, when the
        // leader changed meanwhile), with room in the queue.
        self.wait_for_room().await;
        let expected = self.log_end_offset();
        match headers.first() {
            Some((_, h)) if h.base_offset == expected => {}
            Some((_, h)) => {
                return Err(LogError::NotAtEnd {
                    base: h.base_offset,
                    end: expected,
                })
            }
            None => unreachable_empty()?,
        }
        let (rx, info) = self.queue(records, &headers, durable, false, super::now_ms());
        self.finish(super::Enqueued::Queued(rx, info)).await
    }

    /// Validates a follower's batches: each whole, CRC-valid, within `max.message.bytes`,
    /// each starting right after the one before.
    fn check_replica_batches(&self, records: &[u8]) -> Result<Vec<(usize, BatchHeader)>, LogError> {
        let max = self.inner.state.borrow().config.max_batch_bytes;
        let mut headers: Vec<(usize, BatchHeader)> = Vec::new();
        let mut pos = 0usize;
        // Bounded: each batch advances `pos` by its (nonzero) size.
        while pos < records.len() {
            let h = batch::validate(&records[pos..])?;
            if h.size > max {
                return Err(LogError::TooLarge { size: h.size, max });
            }
            if h.last_offset_delta < 0 || h.leader_epoch < 0 {
                return Err(BatchError::BadCounts {
                    count: h.record_count,
                    delta: h.last_offset_delta,
                }
                .into());
            }
            if let Some((_, prev)) = headers.last() {
                if h.base_offset != prev.last_offset() + 1 || h.leader_epoch < prev.leader_epoch {
                    return Err(LogError::NotAtEnd {
                        base: h.base_offset,
                        end: prev.last_offset() + 1,
                    });
                }
            }
            headers.push((pos, h));
            pos += h.size;
        }
        if headers.is_empty() {
            unreachable_empty()?;
        }
        Ok(headers)
    }
}

/// Marks a truncation or reset under way (set right after the writer went idle, with no
/// await between, so no append slips in): appends wait for it, and answers computed before
/// it are not trusted after it. Ended however the truncation ends.
struct Truncating<'a>(&'a Log);

impl<'a> Truncating<'a> {
    fn begin(log: &'a Log) -> Self {
        log.inner.truncating.set(true);
        Truncating(log)
    }
}

impl Drop for Truncating<'_> {
    fn drop(&mut self) {
        let inner = &self.0.inner;
        inner.truncating.set(false);
        inner.truncations.set(inner.truncations.get() + 1);
        inner.written.notify_all();
    }
}

impl Log {
    /// Waits until nothing is queued behind the writer and it has stopped (a follower's log
    /// has no other writer, so this ends after the writes already queued).
    async fn writer_idle(&self) {
        // Bounded: each wait ends at the next write.
        loop {
            let written = self.inner.written.notified();
            {
                let st = self.inner.state.borrow();
                if st.pending.buf.is_empty() && !st.writer_active {
                    return;
                }
            }
            written.await;
        }
    }

    /// Removes every batch at or after `offset` (a follower whose log diverged from its
    /// new leader's, KIP-101): the batch holding `offset` goes whole, so the log ends at a
    /// batch boundary at or below it. Returns the new log end. Waits for queued writes and
    /// any cleaner pass first; the cleaner stays off while it runs.
    ///
    /// Crash safety: later segments are renamed away, then the cut segment is truncated and
    /// fsynced; a crash in between leaves a longer log, which the follower truncates again.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, LogError> {
        self.writer_idle().await;
        let _truncating = Truncating::begin(self);
        if let Some(end) = self.nothing_to_cut(offset)? {
            return Ok(end);
        }
        let waited = std::time::Instant::now();
        // Bounded by CLEANER_WAIT.
        while self.inner.cleaner_busy.replace(true) {
            if waited.elapsed() > CLEANER_WAIT {
                return Err(LogError::Busy);
            }
            crate::runtime::sleep(Duration::from_millis(20)).await;
        }
        // Retention may have moved the log start while this waited: checked again, and the
        // cleaner let go if nothing is cut after all.
        match self.nothing_to_cut(offset) {
            Ok(None) => {}
            other => {
                self.inner.cleaner_busy.set(false);
                return other.map(|end| end.unwrap_or(offset));
            }
        }
        let r = self.truncate_locked(offset).await;
        match &r {
            Ok(_) => self.inner.cleaner_busy.set(false),
            // Memory and disk may disagree until recovery: the cleaner stays off, and the
            // shard reports the log failed.
            Err(e) => error!(dir = %self.inner.dir.display(), offset, "truncation failed: {e}"),
        }
        r
    }

    /// `Some(log end)` when truncating to `offset` cuts nothing (it is at or past the end);
    /// an error when it is below the log start; `None` when there is something to cut.
    fn nothing_to_cut(&self, offset: i64) -> Result<Option<i64>, LogError> {
        let st = self.inner.state.borrow();
        if offset >= st.high_watermark {
            return Ok(Some(st.high_watermark));
        }
        if offset < st.log_start_offset {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start: st.log_start_offset,
                end: st.high_watermark,
            });
        }
        Ok(None)
    }

    async fn truncate_locked(&self, offset: i64) -> Result<i64, LogError> {
        let end = self.inner.state.borrow().high_watermark;
        let Some((file, pos, seg_end)) = self.scan_starts(offset).await?.into_iter().next() else {
            return Ok(end);
        };
        let max_batch = self.inner.state.borrow().config.max_batch_bytes;
        let mut cut: Option<(u64, i64)> = None;
        segment::scan_batches(&file, pos, seg_end, max_batch, |p, h| {
            if cut.is_none() && h.last_offset() >= offset {
                cut = Some((p, h.base_offset));
            }
        })
        .await?;
        let (seg_base, cut_pos, new_end) = {
            let st = self.inner.state.borrow();
            let Some(seg) = st.segments.iter().find(|s| s.log.same(&file)) else {
                return Err(LogError::Busy);
            };
            let (p, e) = cut.unwrap_or((seg.size, seg.next_offset));
            (seg.base_offset, p, e)
        };
        // Memory first (nothing reads past the new end from here on), then the files.
        let (later, detached, interval) = {
            let mut st = self.inner.state.borrow_mut();
            let later: Vec<i64> = st
                .segments
                .iter()
                .map(|s| s.base_offset)
                .filter(|b| *b > seg_base)
                .collect();
            st.segments.retain(|s| s.base_offset <= seg_base);
            st.next_offset = new_end;
            st.high_watermark = new_end;
            st.epochs.truncate_from_end(new_end);
            st.cleaner_checkpoint = st.cleaner_checkpoint.min(new_end);
            let detached = st.segments.last().map(|s| s.detached());
            (later, detached, st.config.index_interval_bytes)
        };
        for base in &later {
            segment::remove_files_later(&self.inner.dir, *base)?;
        }
        file.truncate(cut_pos).await?;
        file.sync().await?;
        if let Some(d) = detached {
            let rebuilt = d.rebuilt(cut_pos, interval, max_batch).await?;
            let mut st = self.inner.state.borrow_mut();
            if let Some(last) = st.segments.last_mut().filter(|s| s.base_offset == seg_base) {
                *last = rebuilt;
            }
        }
        // Producer state as of the new end: snapshots past it go, the rest is replayed.
        for entry in std::fs::read_dir(&self.inner.dir)? {
            let name = entry?.file_name().to_string_lossy().to_string();
            let at = name
                .strip_suffix(".snapshot")
                .and_then(|s| s.parse::<i64>().ok());
            if let Some(at) = at.filter(|a| *a > new_end) {
                std::fs::remove_file(self.inner.dir.join(producer_state_file(at)))?;
            }
        }
        let mut report = Vec::new();
        self.recover_producers(&mut report).await?;
        self.inner.state.borrow_mut().epochs.persist()?;
        info!(
            dir = %self.inner.dir.display(),
            from = end,
            to = new_end,
            segments_removed = later.len(),
            "truncated the log to its leader's"
        );
        Ok(new_end)
    }
}

impl Log {
    /// Empties the log and starts it at `offset` (a follower whose log end is below its
    /// leader's log start: the leader no longer has what it would fetch next). Every
    /// segment goes; the log start offset is persisted first, so a crash midway leaves
    /// either the old log or an empty one starting at `offset`.
    pub async fn reset_to(&self, offset: i64) -> Result<(), LogError> {
        self.writer_idle().await;
        let _truncating = Truncating::begin(self);
        if self.inner.cleaner_busy.replace(true) {
            return Err(LogError::Busy);
        }
        let r = self.reset_locked(offset).await;
        if r.is_ok() {
            self.inner.cleaner_busy.set(false);
        }
        r
    }

    async fn reset_locked(&self, offset: i64) -> Result<(), LogError> {
        let dir = self.inner.dir.clone();
        let fresh = segment::Segment::create(&dir, offset, super::now_ms()).await?;
        super::writer::write_log_start(&dir, offset)?;
        let old: Vec<i64> = {
            let mut st = self.inner.state.borrow_mut();
            let old = st
                .segments
                .iter()
                .map(|s| s.base_offset)
                .filter(|b| *b != offset)
                .collect();
            st.segments = vec![fresh];
            st.log_start_offset = offset;
            st.next_offset = offset;
            st.high_watermark = offset;
            st.committed = st.committed.map(|_| offset);
            st.cleaner_checkpoint = offset;
            st.epochs.truncate_from_end(i64::MIN);
            st.producers = super::producer_state::ProducerState::default();
            old
        };
        for base in old {
            segment::remove_files_later(&dir, base)?;
        }
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().to_string();
            if let Some(at) = name
                .strip_suffix(".snapshot")
                .and_then(|s| s.parse::<i64>().ok())
            {
                std::fs::remove_file(dir.join(producer_state_file(at)))?;
            }
        }
        self.inner.state.borrow_mut().epochs.persist()?;
        info!(dir = %dir.display(), offset, "replica log emptied to start at its leader's log start");
        Ok(())
    }
}

/// An append of no batch at all.
fn unreachable_empty() -> Result<(), LogError> {
    Err(BatchError::Truncated {
        have: 0,
        need: batch::HEADER_LEN,
    }
    .into())
}
