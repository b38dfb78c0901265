//! The zero-copy read: a fetch's whole batches as a range of a segment file, left in the page
//! cache and spliced to the socket when the response is written, instead of being read into
//! memory and copied out again.
//!
//! Invariants:
//! - A range is offered only when every page of it is in the page cache (`cachestat`), so
//!   sending it never waits for the disk on the shard's thread; anything else (cold data,
//!   small reads, an index entry that does not check out) goes through the copying read,
//!   which verifies every batch's CRC and repairs indexes.
//! - A range starts at the batch holding the fetch offset (its header read and checked) and
//!   ends at the end of the segment's written data or at an offset-index entry whose batch
//!   header was read and matches: whole batches only, never past the high watermark.
//! - The range's descriptor is pinned ([`Pinned`]) from here until it is sent.
//! - This path does not CRC-check the batches it sends (as Kafka's sendfile does not); every
//!   batch was checked when produced, and clients check CRCs (`check.crcs`).

use bytes::Bytes;

use super::batch::{self, BatchHeader};
use super::file::Pinned;
use super::{Isolation, Log, LogError, ReadInfo};

/// Ranges smaller than this are copied: a splice round costs more than copying them.
pub const MIN_RANGE: usize = 64 << 10;

/// Bytes read at a time to find the batch holding the fetch offset after its index entry. A
/// consumer reading on asks for the offset of the batch the last range ended at, which is
/// where an index entry points, so one read usually finds it.
const HEAD_WINDOW: usize = 4 << 10;

/// Reads of [`HEAD_WINDOW`] allowed before giving up on a range (the copying read follows);
/// the wanted batch is at most an index interval and one batch past its entry.
const MAX_HEAD_READS: usize = 64;

/// Without `cachestat` (Linux < 6.5), ranges are sent only from the active segment's newest
/// bytes, which were written recently and are very likely cached.
const UNKNOWN_CACHE_TAIL: u64 = 64 << 20;

/// What a fetch sends for one partition: bytes in memory, or a range of a segment file.
pub enum Records {
    Bytes(Bytes),
    File(FileRange),
}

impl Records {
    pub fn len(&self) -> usize {
        match self {
            Records::Bytes(b) => b.len(),
            Records::File(r) => r.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records in memory (a file range is read, copying).
    pub async fn into_bytes(self) -> Result<Bytes, LogError> {
        match self {
            Records::Bytes(b) => Ok(b),
            Records::File(r) => {
                let buf = r.file.read_at(r.pos, r.len).await?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

/// Whole batches at `[pos, pos + len)` of a pinned segment file.
pub struct FileRange {
    pub file: Pinned,
    pub pos: u64,
    pub len: usize,
}

/// A read for a fetch: like [`ReadInfo`], with the records possibly left in the file.
pub struct SendRead {
    pub records: Records,
    /// Records (for a file range: offsets) in `records`.
    pub record_count: u64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

impl From<ReadInfo> for SendRead {
    fn from(r: ReadInfo) -> Self {
        SendRead {
            records: Records::Bytes(r.records),
            record_count: r.record_count,
            high_watermark: r.high_watermark,
            last_stable_offset: r.last_stable_offset,
            log_start_offset: r.log_start_offset,
        }
    }
}

/// One segment's state, taken under the borrow.
struct Snap {
    file: super::file::LogFile,
    base: i64,
    end: u64,
    next_offset: i64,
    active: bool,
    /// The offset index's entry at or before the fetch offset.
    entry: Option<super::index::OffsetEntry>,
}

impl Log {
    /// Like [`Log::read`], but a large range of cached batches comes back as a file range to
    /// splice to the socket (see the module's invariants); everything else is read as usual.
    pub async fn read_for_send(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        iso: Isolation,
    ) -> Result<SendRead, LogError> {
        if max_bytes >= MIN_RANGE {
            if let Some(r) = self.file_range(offset, max_bytes, min_one, iso).await {
                return Ok(r);
            }
        }
        Ok(self.read_as(offset, max_bytes, min_one, iso).await?.into())
    }

    /// The zero-copy range for a read, if there is one to offer (`None`: copy instead). It
    /// ends below the high watermark (a `replica`: the written end), or there is none.
    async fn file_range(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        iso: Isolation,
    ) -> Option<SendRead> {
        let (hw, lso, bound, start, seg) = {
            let mut st = self.inner.state.borrow_mut();
            let (hw, lso, bound) = st.read_bounds(iso);
            if offset < st.log_start_offset || offset >= bound {
                return None;
            }
            let i = st
                .segments
                .partition_point(|s| s.base_offset <= offset)
                .checked_sub(1)?;
            let s = &st.segments[i];
            let active = i + 1 == st.segments.len();
            let rel = (offset - s.base_offset).clamp(0, u32::MAX as i64) as u32;
            let snap = Snap {
                file: s.log.clone(),
                base: s.base_offset,
                end: s.size,
                next_offset: if active {
                    st.high_watermark
                } else {
                    s.next_offset
                },
                active,
                entry: s.index.lookup_entry(rel),
            };
            (hw, lso, bound, st.log_start_offset, snap)
        };
        let entry = seg.entry;
        let from = entry.map_or(0, |e| u64::from(e.position));
        let named = entry.map(|e| seg.base + i64::from(e.rel_offset));
        let (p0, h0) = first_batch(&seg, from, named, offset).await?;
        if h0.size > max_bytes && !min_one {
            return None;
        }
        let limit = (p0 + max_bytes.max(h0.size) as u64).min(seg.end);
        let first_end = p0 + h0.size as u64;
        if first_end > seg.end {
            return None;
        }
        let (end, end_offset) = if limit == seg.end {
            (seg.end, seg.next_offset)
        } else {
            match self.index_entry_at_or_before(seg.base, limit) {
                Some(e) if u64::from(e.position) > first_end => {
                    let at = u64::from(e.position);
                    let off = seg.base + i64::from(e.rel_offset);
                    // The entry must name the batch found at its position.
                    let head = seg.file.read_at(at, batch::HEADER_LEN).await.ok()?;
                    if batch::parse_header(&head).ok()?.base_offset != off {
                        return None;
                    }
                    (at, off)
                }
                _ => (first_end, h0.last_offset() + 1),
            }
        };
        let len = (end - p0) as usize;
        if len < MIN_RANGE || end_offset > bound {
            return None;
        }
        let file = seg.file.pin().await?;
        let cached = match file.cached(p0, len as u64) {
            Some(all) => all,
            None => seg.active && seg.end - p0 <= UNKNOWN_CACHE_TAIL,
        };
        if !cached {
            return None;
        }
        Some(SendRead {
            records: Records::File(FileRange { file, pos: p0, len }),
            record_count: (end_offset - h0.base_offset).max(0) as u64,
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: start,
        })
    }
}

impl Log {
    /// The offset-index entry of segment `base` at or before byte `position`, if the
    /// segment is still in the log.
    fn index_entry_at_or_before(
        &self,
        base: i64,
        position: u64,
    ) -> Option<super::index::OffsetEntry> {
        let st = self.inner.state.borrow();
        let seg = st.segments.iter().find(|s| s.base_offset == base)?;
        seg.index
            .entry_at_or_before(position.min(u64::from(u32::MAX)) as u32)
    }
}

/// The position and header of the batch holding `offset`, walking batch headers from `from`
/// (an index entry's position naming the batch at `named`, checked), in a few small reads.
async fn first_batch(
    seg: &Snap,
    from: u64,
    named: Option<i64>,
    offset: i64,
) -> Option<(u64, BatchHeader)> {
    let mut pos = from;
    let mut check = named;
    // Each read covers at least one header; bounded by MAX_HEAD_READS.
    for _ in 0..MAX_HEAD_READS {
        let want = HEAD_WINDOW.min(seg.end.checked_sub(pos)? as usize);
        if want < batch::HEADER_LEN {
            return None;
        }
        let buf = seg.file.read_at(pos, want).await.ok()?;
        let mut at = 0usize;
        // Each iteration moves past one batch header in this window.
        while at + batch::HEADER_LEN <= buf.len() {
            let h = batch::parse_header(&buf[at..]).ok()?;
            if let Some(n) = check.take() {
                if h.base_offset != n {
                    return None;
                }
            }
            if h.last_offset() >= offset {
                return Some((pos + at as u64, h));
            }
            at += h.size;
        }
        pos += at as u64;
    }
    None
}
