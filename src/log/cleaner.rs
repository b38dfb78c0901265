//! Log compaction (`cleanup.policy=compact`): keeps the latest record of each key, drops
//! tombstones once `delete.retention.ms` has passed, and never renumbers a record.
//!
//! A pass (1) maps each key of the dirty section (closed segments from the checkpoint on) to
//! its latest offset, within a memory budget, then (2) rewrites the closed segments up to the
//! end of that map in groups of at most `segment.bytes`, each into `<base>.log.cleaned`, and
//! (3) swaps each group in. A batch keeps its base offset and last offset delta; removed
//! records leave gaps, a batch left with no record is dropped, and a compressed batch that
//! loses records is recompressed with its own codec.
//!
//! Invariants:
//! - Only closed segments are read or replaced; the active segment and the writer are never
//!   touched, so produce on the shard waits for nothing but the cleaner's CPU slices (each
//!   at most one chunk of batches, then a yield).
//! - The swap is crash-safe: renaming `<base>.log.cleaned` to `<base>-<end>.swap` is the
//!   commit point; recovery finishes a swap it finds (removes the replaced segments in
//!   `[base, end)`, renames the swap to `<base>.log`) and deletes any `.cleaned` leftover.
//! - A record is removed only when a later record with the same key stays in the log, or it
//!   is an expired tombstone; a batch whose records cannot be decoded is kept unchanged.

use std::io;
use std::path::Path;

use ahash::RandomState;
use tracing::{info, warn};

use super::batch::{self, BatchHeader, HEADER_LEN};
use super::codec;
use super::file::LogFile;
use super::records::{RawRecord, RecordWalk};
use super::segment::{file_name, remove_files, BatchChunks, Segment};
use super::writer::{read_offset_file, sync_dir, write_offset_file};
use super::{Log, LogError};

const CHECKPOINT_FILE: &str = "cleaner-checkpoint";
const CLEANED: &str = ".cleaned";
/// Largest records section the cleaner decompresses for one batch.
const MAX_DECOMPRESSED: usize = 64 << 20;
/// Bytes of rewritten batches buffered before one write.
const WRITE_CHUNK: usize = 1 << 20;
/// Map cost of one key beyond its bytes (hash table slot, box, offset).
const ENTRY_OVERHEAD: usize = 48;

/// What one cleaner pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// Offsets below this are now clean.
    pub cleaned_to: i64,
}

/// A closed segment as the cleaner sees it at the start of a pass.
struct SegInfo {
    base: i64,
    end: i64,
    size: u64,
    max_ts: i64,
    file: LogFile,
}

/// Latest offset of each key, with the bytes the map holds.
struct KeyMap {
    map: std::collections::HashMap<Box<[u8]>, i64, RandomState>,
    bytes: usize,
}

impl KeyMap {
    fn insert(&mut self, key: &[u8], offset: i64) {
        match self.map.get_mut(key) {
            Some(o) => *o = (*o).max(offset),
            None => {
                self.bytes += key.len() + ENTRY_OVERHEAD;
                self.map.insert(key.into(), offset);
            }
        }
    }
}

/// What the filter made of one batch.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Filtered {
    /// Every record stays: copy the batch as it is.
    Unchanged,
    /// No record stays: drop the batch.
    Empty,
    /// Some records stay: the rebuilt batch.
    Rewritten(Vec<u8>),
}

/// Applies `keep(offset, record)` to the records of one whole batch `b`. Returns the result
/// and how many records were removed. A batch that cannot be decoded stays unchanged.
pub(super) fn filter_batch(
    b: &[u8],
    h: &BatchHeader,
    mut keep: impl FnMut(i64, &RawRecord<'_>) -> bool,
) -> (Filtered, u64) {
    // Transaction markers stay: their records' keys are not the topic's keys.
    if h.attributes & super::batch::ATTR_CONTROL != 0 {
        return (Filtered::Unchanged, 0);
    }
    let Ok((codec, section)) = codec::batch_records(b, h, MAX_DECOMPRESSED) else {
        return (Filtered::Unchanged, 0);
    };
    let mut walk = RecordWalk::new(&section, h);
    let mut kept = Vec::with_capacity(section.len());
    let (mut n_kept, mut removed) = (0i32, 0u64);
    for r in walk.by_ref() {
        if keep(h.base_offset + r.offset_delta, &r) {
            kept.extend_from_slice(r.bytes);
            n_kept += 1;
        } else {
            removed += 1;
        }
    }
    if !walk.complete() || removed == 0 {
        return (Filtered::Unchanged, 0);
    }
    if n_kept == 0 {
        return (Filtered::Empty, removed);
    }
    let Ok(section) = codec::compress(codec, &kept) else {
        return (Filtered::Unchanged, 0);
    };
    let mut out = Vec::with_capacity(HEADER_LEN + section.len());
    out.extend_from_slice(&b[..HEADER_LEN]);
    out.extend_from_slice(&section);
    out[57..61].copy_from_slice(&n_kept.to_be_bytes());
    batch::seal(&mut out);
    (Filtered::Rewritten(out), removed)
}

pub(super) fn read_checkpoint(dir: &Path) -> i64 {
    read_offset_file(dir, CHECKPOINT_FILE).unwrap_or(0)
}

fn swap_name(base: i64, end: i64) -> String {
    format!("{base:020}-{end:020}.swap")
}

/// Removes the segment files of every base in `[base, end)` and renames the swap file to
/// `<base>.log` (its indexes are rebuilt on open if they are not in place).
fn finish_swap(dir: &Path, base: i64, end: i64, bases: &[i64]) -> io::Result<()> {
    for b in bases.iter().filter(|b| (base..end).contains(*b)) {
        remove_files(dir, *b, "")?;
    }
    for ext in ["index", "timeindex"] {
        let from = dir.join(file_name(base, &format!("{ext}{CLEANED}")));
        if from.exists() {
            std::fs::rename(&from, dir.join(file_name(base, ext)))?;
        }
    }
    std::fs::rename(
        dir.join(swap_name(base, end)),
        dir.join(file_name(base, "log")),
    )?;
    sync_dir(dir)
}

/// Startup: finishes swaps a crash interrupted and deletes unfinished cleaner output.
/// Returns one line per repair.
pub(super) fn recover_swaps(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().to_string());
    }
    let bases: Vec<i64> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".log")?.parse().ok())
        .collect();
    let mut report = Vec::new();
    for n in &names {
        let Some((base, end)) = n
            .strip_suffix(".swap")
            .and_then(|s| s.split_once('-'))
            .and_then(|(b, e)| Some((b.parse::<i64>().ok()?, e.parse::<i64>().ok()?)))
        else {
            continue;
        };
        finish_swap(dir, base, end, &bases)?;
        report.push(format!(
            "finished an interrupted compaction swap of offsets [{base}, {end})"
        ));
    }
    // Leftovers; a finished swap above may already have renamed its index files.
    for n in names.iter().filter(|n| n.ends_with(CLEANED)) {
        match std::fs::remove_file(dir.join(n)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(report)
}

impl Log {
    /// Runs one compaction pass if the log's policy includes `compact` and enough of its
    /// closed segments are dirty. `map_budget` bounds the key map's memory. Returns what the
    /// pass did, `None` if there was nothing to do.
    pub async fn clean(
        &self,
        now_ms: i64,
        map_budget: usize,
    ) -> Result<Option<CleanStats>, LogError> {
        if self.inner.cleaner_busy.replace(true) {
            return Ok(None);
        }
        let r = self.clean_pass(now_ms, map_budget).await;
        // A failure after a swap's commit point leaves memory and disk apart until restart
        // (recovery finishes the swap): the cleaner stays off for this log until then.
        self.inner.cleaner_busy.set(r.is_err());
        r
    }

    async fn clean_pass(
        &self,
        now: i64,
        map_budget: usize,
    ) -> Result<Option<CleanStats>, LogError> {
        let (cfg, segs, first_dirty) = {
            let st = self.inner.state.borrow();
            let closed = st.segments.len().saturating_sub(1);
            let segs: Vec<SegInfo> = st.segments[..closed]
                .iter()
                .map(|s| SegInfo {
                    base: s.base_offset,
                    end: s.next_offset,
                    size: s.size,
                    max_ts: s.max_timestamp,
                    file: s.log.clone(),
                })
                .collect();
            let first_dirty = st.cleaner_checkpoint.max(st.log_start_offset);
            (st.config.clone(), segs, first_dirty)
        };
        if !cfg.cleanup.compact || self.inner.closed.get() {
            return Ok(None);
        }
        let lag_horizon = now.saturating_sub(cfg.min_compaction_lag_ms);
        let cleanable = segs.iter().take_while(|s| s.max_ts <= lag_horizon).count();
        // Never past the last stable offset: an open transaction's fate is not known yet.
        let lso = self.last_stable_offset();
        let stable = segs.iter().take_while(|s| s.end <= lso).count();
        let segs = &segs[..cleanable.min(stable)];
        let total: u64 = segs.iter().map(|s| s.size).sum();
        let dirty: u64 = segs
            .iter()
            .filter(|s| s.end > first_dirty)
            .map(|s| s.size)
            .sum();
        if dirty == 0 || (dirty as f64) < cfg.min_cleanable_dirty_ratio * total as f64 {
            return Ok(None);
        }
        let (map, map_end) = self.build_map(segs, first_dirty, map_budget, &cfg).await?;
        let mut stats = CleanStats {
            cleaned_to: map_end,
            ..Default::default()
        };
        let tombstone_horizon = now.saturating_sub(cfg.delete_retention_ms);
        // Groups of consecutive segments below the map's end, each at most segment.bytes.
        let todo: Vec<&SegInfo> = segs.iter().filter(|s| s.base < map_end).collect();
        let mut i = 0;
        while i < todo.len() {
            let mut j = i + 1;
            let mut size = todo[i].size;
            while j < todo.len() && size + todo[j].size <= cfg.segment_bytes {
                size += todo[j].size;
                j += 1;
            }
            let group = &todo[i..j];
            let keep = |offset: i64, r: &RawRecord<'_>, seg_max_ts: i64, st: &mut CleanStats| {
                let Some(key) = r.key else { return true };
                if offset >= map_end {
                    return true;
                }
                if map.map.get(key).is_some_and(|latest| *latest > offset) {
                    return false;
                }
                if r.value.is_none() && seg_max_ts < tombstone_horizon {
                    st.tombstones_removed += 1;
                    return false;
                }
                true
            };
            let new = self
                .rewrite_group(group, &cfg, now, keep, &mut stats)
                .await?;
            stats.segments_before += group.len();
            stats.bytes_before += size;
            stats.segments_after += 1;
            stats.bytes_after += new.size;
            if !self.swap_in(group, new)? {
                info!(dir = %self.inner.dir.display(), "log changed during compaction; pass abandoned");
                return Ok(None);
            }
            i = j;
        }
        write_offset_file(&self.inner.dir, CHECKPOINT_FILE, map_end)?;
        self.inner.state.borrow_mut().cleaner_checkpoint = map_end;
        info!(
            dir = %self.inner.dir.display(),
            segments = format!("{} -> {}", stats.segments_before, stats.segments_after),
            bytes = format!("{} -> {}", stats.bytes_before, stats.bytes_after),
            records_removed = stats.records_removed,
            tombstones_removed = stats.tombstones_removed,
            cleaned_to = map_end,
            "compacted log"
        );
        Ok(Some(stats))
    }

    /// Maps each key in the dirty section to its latest offset until the budget is spent.
    /// Returns the map and the offset its coverage ends at.
    async fn build_map(
        &self,
        segs: &[SegInfo],
        first_dirty: i64,
        budget: usize,
        cfg: &super::LogConfig,
    ) -> Result<(KeyMap, i64), LogError> {
        let mut map = KeyMap {
            map: Default::default(),
            bytes: 0,
        };
        let mut map_end = first_dirty;
        // Records of aborted transactions never shadow a key: (producer, first, marker).
        let aborted = self.aborted_ranges(first_dirty, i64::MAX);
        let is_aborted = |h: &super::batch::BatchHeader| {
            h.attributes & super::batch::ATTR_CONTROL != 0
                || (h.attributes & super::batch::ATTR_TRANSACTIONAL != 0
                    && aborted.iter().any(|(pid, first, last)| {
                        *pid == h.producer_id && (*first..=*last).contains(&h.base_offset)
                    }))
        };
        for s in segs.iter().filter(|s| s.end > first_dirty) {
            let mut chunks = BatchChunks::new(&s.file, 0, s.size, cfg.max_batch_bytes);
            while let Some((_, buf, batches)) = chunks.next().await? {
                for (at, h) in &batches {
                    if h.last_offset() < first_dirty {
                        continue;
                    }
                    let b = &buf[*at..*at + h.size];
                    if is_aborted(h) {
                        map_end = h.last_offset() + 1;
                        continue;
                    }
                    // Only a batch that decodes whole, with its records' offsets inside it,
                    // counts: a key's latest offset must never come from a crafted record.
                    if let Ok((_, section)) = codec::batch_records(b, h, MAX_DECOMPRESSED) {
                        let mut walk = RecordWalk::new(&section, h);
                        let keys: Vec<_> = walk
                            .by_ref()
                            .filter_map(|r| Some((r.key?, r.offset_delta)))
                            .collect();
                        if walk.complete() {
                            for (k, delta) in keys {
                                map.insert(k, h.base_offset + delta);
                            }
                        } else {
                            warn!(dir = %self.inner.dir.display(), offset = h.base_offset, "compaction keeps a batch whose records do not decode, and ignores its keys");
                        }
                    }
                    map_end = h.last_offset() + 1;
                    if map.bytes >= budget {
                        return Ok((map, map_end));
                    }
                }
                crate::runtime::yield_now().await;
            }
            let end = chunks.finish();
            if let Some(e) = end.error.filter(|_| end.valid_end < s.size) {
                warn!(dir = %self.inner.dir.display(), base = s.base, "compaction stops at a corrupt batch: {e}");
                return Ok((map, map_end));
            }
            map_end = s.end;
        }
        Ok((map, map_end))
    }

    /// Writes the kept batches of `group` into a new segment `<base>.log.cleaned`, with its
    /// indexes, durably.
    async fn rewrite_group(
        &self,
        group: &[&SegInfo],
        cfg: &super::LogConfig,
        now: i64,
        mut keep: impl FnMut(i64, &RawRecord<'_>, i64, &mut CleanStats) -> bool,
        stats: &mut CleanStats,
    ) -> Result<Segment, LogError> {
        let dir = &self.inner.dir;
        let mut new = Segment::create_named(dir, group[0].base, CLEANED, now).await?;
        let mut out: Vec<u8> = Vec::with_capacity(WRITE_CHUNK + cfg.max_batch_bytes);
        let mut written = 0u64;
        for s in group {
            let mut chunks = BatchChunks::new(&s.file, 0, s.size, cfg.max_batch_bytes);
            while let Some((_, buf, batches)) = chunks.next().await? {
                for (at, h) in &batches {
                    let b = &buf[*at..*at + h.size];
                    let (filtered, removed) =
                        filter_batch(b, h, |o, r| keep(o, r, s.max_ts, stats));
                    stats.records_removed += removed;
                    let bytes = match &filtered {
                        Filtered::Unchanged => b,
                        Filtered::Empty => continue,
                        Filtered::Rewritten(nb) => nb.as_slice(),
                    };
                    let nh = batch::parse_header(bytes)?;
                    new.track(written + out.len() as u64, &nh, cfg.index_interval_bytes);
                    out.extend_from_slice(bytes);
                }
                if out.len() >= WRITE_CHUNK {
                    let len = out.len() as u64;
                    let full = std::mem::replace(&mut out, Vec::with_capacity(WRITE_CHUNK));
                    new.log.write_all_at(full, written).await?;
                    written += len;
                }
                crate::runtime::yield_now().await;
            }
        }
        if !out.is_empty() {
            let len = out.len() as u64;
            new.log.write_all_at(out, written).await?;
            written += len;
        }
        new.size = written;
        new.next_offset = group.last().map(|s| s.end).unwrap_or(new.base_offset);
        new.take_seal_work().run().await?;
        Ok(new)
    }

    /// Replaces `group` with `new` on disk and in memory, if the group is still in the log
    /// as it was (retention, DeleteRecords or a topic deletion may have changed it).
    fn swap_in(&self, group: &[&SegInfo], new: Segment) -> Result<bool, LogError> {
        let dir = self.inner.dir.clone();
        let base = group[0].base;
        let end = group.last().map(|s| s.end).unwrap_or(base);
        let mut st = self.inner.state.borrow_mut();
        let at = st.segments.iter().position(|s| s.base_offset == base);
        let intact = !self.inner.closed.get()
            && at.is_some_and(|i| {
                i + group.len() < st.segments.len()
                    && st.segments[i..i + group.len()]
                        .iter()
                        .zip(group)
                        .all(|(s, g)| s.base_offset == g.base && s.size == g.size)
            });
        let (true, Some(i)) = (intact, at) else {
            drop(st);
            remove_files(&dir, base, CLEANED)?;
            return Ok(false);
        };
        // Commit point: from here recovery finishes the swap.
        std::fs::rename(
            dir.join(file_name(base, &format!("log{CLEANED}"))),
            dir.join(swap_name(base, end)),
        )?;
        sync_dir(&dir)?;
        let bases: Vec<i64> = group.iter().map(|s| s.base).collect();
        finish_swap(&dir, base, end, &bases)?;
        new.renamed(&dir);
        st.segments.splice(i..i + group.len(), [new]);
        Ok(true)
    }
}
