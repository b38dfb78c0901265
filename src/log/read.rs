//! The read side of a log: whole batches from an offset (fetch), the first batch at or after
//! a timestamp (ListOffsets), with every index entry checked against the batch it points to.
//!
//! Invariants: reads never see past the high watermark; a batch is served only whole and
//! CRC-checked; an index entry is used only once the batch at its position is the one it
//! names (otherwise the segment's index is rebuilt from the log, never followed).

use std::cell::Cell;

use bytes::Bytes;
use tracing::{debug, error, warn};

use super::batch::{self, BatchError, BatchScan};
use super::file::LogFile;
use super::segment::{self, Segment};
use super::{Isolation, Log, LogError, ReadInfo};

/// Upper bound on one read issued for a fetch beyond the requested bytes.
const READ_SLACK: usize = 64 << 10;

impl Log {
    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes`
    /// (at least one batch when `min_one`, even if larger), below the high watermark.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadInfo, LogError> {
        self.read_as(offset, max_bytes, min_one, Isolation::Uncommitted)
            .await
    }

    /// Like [`Log::read`], up to where `iso` may read: a follower's fetch to the written
    /// end, a read_committed one to the last stable offset. An offset between the bound and
    /// the written end is empty, past the written end out of range.
    pub async fn read_as(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        iso: Isolation,
    ) -> Result<ReadInfo, LogError> {
        let (written, (hw, lso, bound), start) = {
            let mut st = self.inner.state.borrow_mut();
            (st.high_watermark, st.read_bounds(iso), st.log_start_offset)
        };
        let empty = |hw| ReadInfo {
            records: Bytes::new(),
            record_count: 0,
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: start,
        };
        if offset < start || offset > written {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start,
                end: hw,
            });
        }
        if offset >= bound || (max_bytes == 0 && !min_one) {
            return Ok(empty(hw));
        }
        // Walk segments from the one holding `offset`; bounded by the segment count.
        let mut seg_idx = {
            let st = self.inner.state.borrow();
            let i = st.segments.partition_point(|s| s.base_offset <= offset);
            i.saturating_sub(1)
        };
        let max_batch = self.inner.state.borrow().config.max_batch_bytes;
        // After a repair the segment is read again; if its index is still wrong (the
        // segment changed under the repair), from its start.
        let mut repairs = 0;
        // Each iteration moves to the next segment, or repairs the current one's index and
        // reads it again (at most twice per segment).
        loop {
            let Some(mut at) = self.start_in(seg_idx, offset) else {
                return Ok(empty(hw));
            };
            if repairs > 1 {
                at.pos = 0;
                at.names = None;
            }
            match read_from_segment(&at, offset, max_bytes, min_one, max_batch).await {
                Ok(Some((records, record_count))) => {
                    let (records, record_count) = if bound < written {
                        trim_below(records, bound)
                    } else {
                        (records, record_count)
                    };
                    return Ok(ReadInfo {
                        records,
                        record_count,
                        high_watermark: hw,
                        last_stable_offset: lso,
                        log_start_offset: start,
                    });
                }
                Ok(None) => {
                    seg_idx += 1;
                    repairs = 0;
                }
                Err(ReadFail::Index(found)) => {
                    if repairs == 0 {
                        self.repair_index(&at, found).await?;
                    }
                    repairs += 1;
                }
                Err(e) => return Err(self.failed(&at, e)),
            }
        }
    }

    /// Where reading segment `seg_idx` for `offset` starts, from its offset index.
    fn start_in(&self, seg_idx: usize, offset: i64) -> Option<Start> {
        let st = self.inner.state.borrow();
        let seg = st.segments.get(seg_idx)?;
        let rel = (offset - seg.base_offset).clamp(0, u32::MAX as i64) as u32;
        Some(Start::of(seg, rel))
    }

    /// The error to return for a failed read, reporting damage once per batch.
    fn failed(&self, at: &Start, e: ReadFail) -> LogError {
        match e {
            ReadFail::Log(e) => e,
            ReadFail::Index(found) => LogError::Corrupt(BatchError::BadLength(found as i32)),
            ReadFail::Corrupt { pos, error } => {
                let new = {
                    let mut seen = self.inner.damaged.borrow_mut();
                    let key = (at.base, pos);
                    let new = !seen.contains(&key);
                    if new && seen.len() < MAX_DAMAGE_REMEMBERED {
                        seen.push(key);
                    }
                    new
                };
                if new {
                    DAMAGE.with(|d| d.set((d.get().0 + 1, d.get().1)));
                    error!(
                        dir = %self.inner.dir.display(), segment = at.base, position = pos,
                        "corrupt batch on disk: {error}; fetches of this range fail until it is moved past (DeleteRecords; see docs/durability.md)"
                    );
                } else {
                    debug!(dir = %self.inner.dir.display(), segment = at.base, position = pos, "corrupt batch read again: {error}");
                }
                LogError::Corrupt(error)
            }
        }
    }

    /// Rebuilds the indexes of the segment `at` came from, after the batch at an index
    /// entry's position turned out not to be the one it names (`found`: the base offset
    /// there, -1 if no batch header).
    async fn repair_index(&self, at: &Start, found: i64) -> Result<(), LogError> {
        let (detached, end, interval, max_batch) = {
            let st = self.inner.state.borrow();
            let Some(seg) = st.segments.iter().find(|s| s.base_offset == at.base) else {
                return Ok(());
            };
            (
                seg.detached(),
                seg.size,
                st.config.index_interval_bytes,
                st.config.max_batch_bytes,
            )
        };
        DAMAGE.with(|d| d.set((d.get().0, d.get().1 + 1)));
        warn!(
            dir = %self.inner.dir.display(), segment = at.base, position = at.pos,
            expected = at.names.unwrap_or(-1), found,
            "offset index entry does not point at the batch it names; rebuilding the segment's indexes from the log"
        );
        let rebuilt = detached.rebuilt(end, interval, max_batch).await?;
        let mut st = self.inner.state.borrow_mut();
        if let Some(seg) = st
            .segments
            .iter_mut()
            .find(|s| s.base_offset == at.base && s.size == end)
        {
            seg.adopt_indexes(rebuilt);
        }
        Ok(())
    }

    /// The position to scan from for `at`, after checking that its index entry points at
    /// the batch it names (repairing the index if not).
    async fn checked_position(&self, at: &Start) -> Result<u64, LogError> {
        let Some(named) = at.names else {
            return Ok(at.pos);
        };
        let head = at.file.read_at(at.pos, batch::HEADER_LEN).await?;
        let found = batch::parse_header(&head)
            .map(|h| h.base_offset)
            .unwrap_or(-1);
        if found == named {
            return Ok(at.pos);
        }
        self.repair_index(at, found).await?;
        Ok(0)
    }

    /// First offset whose batch has a timestamp at or after `ts`, with that timestamp.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let candidates: Vec<Start> = {
            let st = self.inner.state.borrow();
            st.segments
                .iter()
                .filter(|s| s.max_timestamp >= ts && s.size > 0)
                .take(1)
                .map(|s| Start::of(s, s.time_index.scan_start(ts)))
                .collect()
        };
        let max_batch = self.inner.state.borrow().config.max_batch_bytes;
        for at in candidates {
            let pos = self.checked_position(&at).await?;
            let mut found = None;
            segment::scan_batches(&at.file, pos, at.end, max_batch, |_, h| {
                if found.is_none() && h.max_timestamp >= ts {
                    found = Some((h.base_offset, h.max_timestamp));
                }
            })
            .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Where to scan each segment holding offsets at or after `from`, index entries checked.
    pub(super) async fn scan_starts(
        &self,
        from: i64,
    ) -> Result<Vec<(LogFile, u64, u64)>, LogError> {
        let starts: Vec<Start> = {
            let st = self.inner.state.borrow();
            st.segments
                .iter()
                .filter(|s| s.next_offset > from && s.size > 0)
                .map(|s| Start::of(s, (from - s.base_offset).clamp(0, u32::MAX as i64) as u32))
                .collect()
        };
        let mut out = Vec::with_capacity(starts.len());
        for at in starts {
            let pos = self.checked_position(&at).await?;
            out.push((at.file, pos, at.end));
        }
        Ok(out)
    }
}

/// The batches of `records` that start below `bound` (the high watermark is a batch
/// boundary), and their record count.
fn trim_below(records: Bytes, bound: i64) -> (Bytes, u64) {
    let mut end = 0usize;
    let mut count = 0u64;
    for (at, h) in super::batch::BatchScan::new(&records, false) {
        if h.base_offset >= bound {
            break;
        }
        end = at + h.size;
        count += h.record_count.max(0) as u64;
    }
    (records.slice(..end), count)
}

/// (corrupt batches found, index repairs) on the calling shard so far.
pub fn damage_stats() -> (u64, u64) {
    DAMAGE.with(|d| d.get())
}

thread_local! {
    static DAMAGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Damaged batches a log remembers having reported (each is logged once).
pub(super) const MAX_DAMAGE_REMEMBERED: usize = 64;

/// Where a read of one segment starts.
struct Start {
    file: LogFile,
    base: i64,
    /// End of the segment's whole batches.
    end: u64,
    /// Position from the offset index.
    pos: u64,
    /// The base offset of the batch at `pos`, if `pos` came from an index entry.
    names: Option<i64>,
}

impl Start {
    fn of(seg: &Segment, rel: u32) -> Start {
        let entry = seg.index.lookup_entry(rel);
        Start {
            file: seg.log.clone(),
            base: seg.base_offset,
            end: seg.size,
            pos: entry.map_or(0, |e| u64::from(e.position)),
            names: entry.map(|e| seg.base_offset + i64::from(e.rel_offset)),
        }
    }
}

/// Why a segment read failed.
enum ReadFail {
    /// The batch at the indexed position starts at this offset (-1: no batch), not the
    /// one the index entry names.
    Index(i64),
    Corrupt {
        pos: u64,
        error: BatchError,
    },
    Log(LogError),
}

impl From<std::io::Error> for ReadFail {
    fn from(e: std::io::Error) -> Self {
        ReadFail::Log(e.into())
    }
}

/// Reads whole batches from one segment, with their record count. `None` if the segment
/// holds nothing at or after `offset`.
async fn read_from_segment(
    at: &Start,
    offset: i64,
    max_bytes: usize,
    min_one: bool,
    max_batch: usize,
) -> Result<Option<(Bytes, u64)>, ReadFail> {
    let (file, mut pos, seg_end) = (&at.file, at.pos, at.end);
    let mut check = at.names;
    // Each iteration either returns or advances `pos` past at least one batch, or re-reads
    // once with a length that fits the first wanted batch.
    let mut want = max_bytes
        .saturating_add(READ_SLACK)
        .min(max_batch.max(max_bytes) + READ_SLACK);
    while pos < seg_end {
        let len = want.min((seg_end - pos) as usize);
        let buf = file.read_at(pos, len).await?;
        if buf.is_empty() {
            return Ok(None);
        }
        if let Some(named) = check.take() {
            let found = batch::parse_header(&buf)
                .map(|h| h.base_offset)
                .unwrap_or(-1);
            if found != named {
                return Err(ReadFail::Index(found));
            }
        }
        let mut first: Option<usize> = None;
        let mut end = 0usize;
        let mut count = 0u64;
        let mut scan = BatchScan::new(&buf, true);
        for (at, h) in scan.by_ref() {
            if first.is_none() {
                if h.last_offset() < offset {
                    continue;
                }
                if !min_one && h.size > max_bytes {
                    return Ok(Some((Bytes::new(), 0)));
                }
                first = Some(at);
            } else if at + h.size - first.unwrap_or(0) > max_bytes {
                break;
            }
            end = at + h.size;
            count += h.record_count.max(0) as u64;
        }
        if let Some(f) = first {
            let mut buf = buf;
            buf.truncate(end);
            return Ok(Some((Bytes::from(buf).slice(f..), count)));
        }
        let scanned = scan.position() as u64;
        match scan.stopped {
            None => pos += scanned,
            Some(BatchError::Truncated { need, .. }) => {
                if scan.position() == 0 {
                    if need > max_batch + batch::HEADER_LEN || want >= need {
                        return Err(ReadFail::Corrupt {
                            pos,
                            error: BatchError::Truncated {
                                have: buf.len(),
                                need,
                            },
                        });
                    }
                    want = need;
                } else {
                    pos += scan.position() as u64;
                }
            }
            Some(error) => {
                return Err(ReadFail::Corrupt {
                    pos: pos + scanned,
                    error,
                })
            }
        }
    }
    Ok(None)
}
