//! One segment of a partition log: `<base>.log` holding whole record batches back to back,
//! with its `<base>.index` and `<base>.timeindex`.
//!
//! Invariant: `size` covers only whole, acknowledged batches; bytes past it are never read.
//! Only the partition's owning shard holds a `Segment`.

use std::io;
use std::path::Path;

use tracing::warn;

use super::batch::{parse_header, BatchError, BatchHeader, BatchScan, HEADER_LEN};
use super::file::LogFile;
use super::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};

/// Bytes read per I/O while scanning a segment.
const SCAN_CHUNK: usize = 4 << 20;

pub struct Segment {
    pub base_offset: i64,
    pub log: LogFile,
    index_file: LogFile,
    time_file: LogFile,
    /// Bytes of whole batches.
    pub size: u64,
    /// One past the last offset stored here.
    pub next_offset: i64,
    pub max_timestamp: i64,
    /// Base offset of the last batch appended.
    last_batch_offset: i64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    bytes_since_index: u64,
    index_on_disk: u64,
    time_on_disk: u64,
    /// Wall-clock milliseconds when the segment was created (for `segment.ms`).
    pub created_ms: i64,
}

/// Where a scan stopped.
pub struct ScanEnd {
    /// End of the last whole valid batch.
    pub valid_end: u64,
    /// Why the scan stopped before the end, if it did.
    pub error: Option<BatchError>,
}

pub fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// The files of a segment, by extension.
const EXTENSIONS: [&str; 3] = ["log", "index", "timeindex"];

/// Removes the files of the segment at `base_offset` (each extension followed by `suffix`);
/// files already gone are fine.
pub fn remove_files(dir: &Path, base_offset: i64, suffix: &str) -> io::Result<()> {
    for ext in EXTENSIONS {
        let path = dir.join(file_name(base_offset, &format!("{ext}{suffix}")));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Suffix of segment files renamed for deletion; their unlink runs off the shard thread.
pub const DELETED: &str = ".deleted";

/// Like [`remove_files`] (suffix ""), with the slow part off the shard thread: each file is
/// renamed to `<name>.deleted` at once (the name is free, nothing reads it any more) and the
/// unlinks, which free a whole segment's blocks and can take milliseconds, run on a blocking
/// thread. A crash before they run leaves `.deleted` files that [`remove_deleted`] clears.
pub fn remove_files_later(dir: &Path, base_offset: i64) -> io::Result<()> {
    let mut doomed = Vec::new();
    for ext in EXTENSIONS {
        let path = dir.join(file_name(base_offset, ext));
        let to = dir.join(file_name(base_offset, &format!("{ext}{DELETED}")));
        match std::fs::rename(&path, &to) {
            Ok(()) => doomed.push(to),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    crate::runtime::spawn_blocking_detached(move || {
        for p in doomed {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(path = %p.display(), "cannot remove deleted segment file: {e}");
                }
            }
        }
    });
    Ok(())
}

/// Removes `.deleted` files a crash left in `dir`; returns how many.
pub fn remove_deleted(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(DELETED) {
            // The background unlink of a deletion just made may get there first.
            match std::fs::remove_file(&path) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(n)
}

impl Segment {
    /// Creates an empty segment (truncating any stale files of the same name).
    pub async fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        Self::create_named(dir, base_offset, "", now_ms).await
    }

    /// Like [`Segment::create`], with `suffix` after each file name (the cleaner builds
    /// `<base>.log.cleaned` and its indexes before swapping them in).
    pub async fn create_named(
        dir: &Path,
        base_offset: i64,
        suffix: &str,
        now_ms: i64,
    ) -> io::Result<Segment> {
        let open = |ext: &str| dir.join(file_name(base_offset, &format!("{ext}{suffix}")));
        let log = LogFile::open(&open("log")).await?;
        let index_file = LogFile::open(&open("index")).await?;
        let time_file = LogFile::open(&open("timeindex")).await?;
        log.truncate(0).await?;
        index_file.truncate(0).await?;
        time_file.truncate(0).await?;
        Ok(Segment {
            base_offset,
            log,
            index_file,
            time_file,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            last_batch_offset: base_offset,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            index_on_disk: 0,
            time_on_disk: 0,
            created_ms: now_ms,
        })
    }

    /// Opens an existing segment. A closed segment (`next_offset` known from the segment
    /// after it) trusts its index files when they are consistent; the active segment
    /// (`next_offset == None`) is scanned — wholly, or after a clean shutdown
    /// (`trust_index_tail`) from its last indexed batch — and a torn or corrupt tail is cut.
    /// Returns the segment and a human-readable line for each repair made.
    pub async fn open(
        dir: &Path,
        base_offset: i64,
        next_offset: Option<i64>,
        index_interval: u64,
        max_batch: usize,
        now_ms: i64,
        trust_index_tail: bool,
    ) -> io::Result<(Segment, Vec<String>)> {
        let mut report = Vec::new();
        let log = LogFile::open(&dir.join(file_name(base_offset, "log"))).await?;
        let index_file = LogFile::open(&dir.join(file_name(base_offset, "index"))).await?;
        let time_file = LogFile::open(&dir.join(file_name(base_offset, "timeindex"))).await?;
        let file_size = log.size().await?;
        let mut seg = Segment {
            base_offset,
            log,
            index_file,
            time_file,
            size: file_size,
            next_offset: next_offset.unwrap_or(base_offset),
            max_timestamp: -1,
            last_batch_offset: base_offset,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            index_on_disk: 0,
            time_on_disk: 0,
            created_ms: now_ms,
        };
        if next_offset.is_some() {
            if let Some((idx, tidx)) = seg.load_indexes(file_size).await? {
                if file_size == 0 || !tidx.entries().is_empty() {
                    seg.index_on_disk =
                        (idx.entries().len() * super::index::OFFSET_ENTRY_LEN) as u64;
                    seg.time_on_disk = (tidx.entries().len() * super::index::TIME_ENTRY_LEN) as u64;
                    if let Some(last) = tidx.entries().last() {
                        seg.max_timestamp = last.timestamp;
                        seg.last_batch_offset = base_offset + i64::from(last.rel_offset);
                    }
                    seg.index = idx;
                    seg.time_index = tidx;
                    return Ok((seg, report));
                }
            }
            report.push(format!(
                "segment {}: index files missing or inconsistent, rebuilt from the log",
                log_path(dir, base_offset)
            ));
        }
        // Scan the segment, rebuilding both indexes: from the start, or — after a clean
        // shutdown, when the index files are consistent — from the last indexed batch.
        let mut start = 0u64;
        if trust_index_tail && next_offset.is_none() {
            if let Some((idx, tidx)) = seg.load_indexes(file_size).await? {
                // Trusted only if the batch at the last entry is the one the entry names.
                let last = idx.entries().last().copied();
                let points_right = match last {
                    None => true,
                    Some(e) => {
                        let at = seg.log.read_at(u64::from(e.position), HEADER_LEN).await?;
                        let named = base_offset + i64::from(e.rel_offset);
                        parse_header(&at).map(|h| h.base_offset).ok() == Some(named)
                    }
                };
                if points_right {
                    if let Some(e) = last {
                        start = u64::from(e.position);
                        seg.next_offset = base_offset + i64::from(e.rel_offset);
                    }
                    if let Some(t) = tidx.entries().last() {
                        seg.max_timestamp = t.timestamp;
                    }
                    seg.index = idx;
                    seg.time_index = tidx;
                } else {
                    report.push(format!(
                        "segment {}: last index entry does not point at its batch; scanned whole",
                        log_path(dir, base_offset)
                    ));
                }
            }
        }
        seg.size = start;
        let file = seg.log.clone();
        let end = scan_batches(&file, start, file_size, max_batch, |pos, h| {
            seg.track(pos, h, index_interval);
        })
        .await?;
        seg.size = end.valid_end;
        if end.valid_end < file_size {
            let reason = end
                .error
                .map(|e| e.to_string())
                .unwrap_or_else(|| "incomplete batch".into());
            if next_offset.is_none() {
                let line = format!(
                    "segment {}: cut {} bytes of torn or corrupt tail at position {} ({}); \
                     log now ends at offset {}",
                    log_path(dir, base_offset),
                    file_size - end.valid_end,
                    end.valid_end,
                    reason,
                    seg.next_offset
                );
                warn!("{line}");
                report.push(line);
                seg.log.truncate(end.valid_end).await?;
                seg.log.sync().await?;
            } else {
                let line = format!(
                    "segment {}: corrupt batch at position {} ({}); data after it is not served",
                    log_path(dir, base_offset),
                    end.valid_end,
                    reason
                );
                warn!("{line}");
                report.push(line);
            }
        }
        seg.rewrite_indexes().await?;
        Ok((seg, report))
    }

    /// Reads both index files; `None` if either is inconsistent (see [`OffsetIndex::decode`]).
    async fn load_indexes(&self, file_size: u64) -> io::Result<Option<(OffsetIndex, TimeIndex)>> {
        let ib = self.index_file.size().await?;
        let tb = self.time_file.size().await?;
        let ibuf = self.index_file.read_at(0, ib as usize).await?;
        let tbuf = self.time_file.read_at(0, tb as usize).await?;
        Ok(OffsetIndex::decode(&ibuf, file_size.max(1)).zip(TimeIndex::decode(&tbuf)))
    }

    /// Records a batch appended at `pos` in the in-memory indexes. A time index entry
    /// `(t, o)` means: every batch up to and including the one at offset `o` has a timestamp
    /// of at most `t`.
    pub fn track(&mut self, pos: u64, h: &BatchHeader, index_interval: u64) {
        let rel = (h.base_offset - self.base_offset) as u32;
        let index_due = self.bytes_since_index >= index_interval;
        if index_due
            && self.index.push(OffsetEntry {
                rel_offset: rel,
                position: pos as u32,
            })
        {
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size as u64;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
        }
        self.last_batch_offset = h.base_offset;
        let time_due = index_due || self.time_index.entries().is_empty();
        let grew = self
            .time_index
            .entries()
            .last()
            .is_none_or(|e| self.max_timestamp > e.timestamp);
        if time_due && grew && self.max_timestamp >= 0 {
            self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                rel_offset: rel,
            });
        }
        self.size = self.size.max(pos + h.size as u64);
        self.next_offset = self.next_offset.max(h.last_offset() + 1);
    }

    /// Takes the index entries not yet on disk as a write to run without borrowing the
    /// segment. Index files are a cache of the log: if the write fails, the caller logs it and
    /// the next recovery rebuilds them.
    pub fn take_index_work(&mut self) -> IoWork {
        let mut work = IoWork::default();
        let done = self.index_on_disk as usize / super::index::OFFSET_ENTRY_LEN;
        if done < self.index.entries().len() {
            let mut out = Vec::new();
            for e in &self.index.entries()[done..] {
                OffsetIndex::encode_entry(*e, &mut out);
            }
            let at = self.index_on_disk;
            self.index_on_disk += out.len() as u64;
            work.writes.push((self.index_file.clone(), out, at));
        }
        let done = self.time_on_disk as usize / super::index::TIME_ENTRY_LEN;
        if done < self.time_index.entries().len() {
            let mut out = Vec::new();
            for e in &self.time_index.entries()[done..] {
                TimeIndex::encode_entry(*e, &mut out);
            }
            let at = self.time_on_disk;
            self.time_on_disk += out.len() as u64;
            work.writes.push((self.time_file.clone(), out, at));
        }
        work
    }

    /// Its files were renamed to the segment's own names in `dir` (the cleaner's swap).
    pub fn renamed(&self, dir: &Path) {
        for (f, ext) in [
            (&self.log, "log"),
            (&self.index_file, "index"),
            (&self.time_file, "timeindex"),
        ] {
            f.renamed(&dir.join(file_name(self.base_offset, ext)));
        }
    }

    /// The same files with empty in-memory indexes, to rebuild them from the log without
    /// holding the segment (see [`Segment::rebuilt`]).
    pub fn detached(&self) -> Segment {
        Segment {
            base_offset: self.base_offset,
            log: self.log.clone(),
            index_file: self.index_file.clone(),
            time_file: self.time_file.clone(),
            size: 0,
            next_offset: self.base_offset,
            max_timestamp: -1,
            last_batch_offset: self.base_offset,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            index_on_disk: 0,
            time_on_disk: 0,
            created_ms: self.created_ms,
        }
    }

    /// A detached segment's indexes rebuilt from the batches in `[0, end)` of its log, and
    /// written to its index files.
    pub async fn rebuilt(mut self, end: u64, interval: u64, max_batch: usize) -> io::Result<Self> {
        let file = self.log.clone();
        scan_batches(&file, 0, end, max_batch, |pos, h| {
            self.track(pos, h, interval);
        })
        .await?;
        self.rewrite_indexes().await?;
        Ok(self)
    }

    /// Takes the indexes of `from` (rebuilt from this segment's log by [`Segment::rebuilt`]).
    pub fn adopt_indexes(&mut self, from: Segment) {
        self.index = from.index;
        self.time_index = from.time_index;
        self.index_on_disk = from.index_on_disk;
        self.time_on_disk = from.time_on_disk;
        self.bytes_since_index = from.bytes_since_index;
    }

    async fn rewrite_indexes(&mut self) -> io::Result<()> {
        self.index_file.truncate(0).await?;
        self.time_file.truncate(0).await?;
        self.index_on_disk = 0;
        self.time_on_disk = 0;
        self.take_index_work().run().await
    }

    /// Seals the segment before a roll: the time index gets the segment's true maximum, and
    /// data and indexes are made durable.
    pub fn take_seal_work(&mut self) -> IoWork {
        if self.max_timestamp >= 0 {
            self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                rel_offset: (self.last_batch_offset - self.base_offset) as u32,
            });
        }
        self.take_sync_work()
    }

    /// Index entries not yet on disk plus fsyncs of data and indexes, without sealing.
    pub fn take_sync_work(&mut self) -> IoWork {
        let mut work = self.take_index_work();
        work.syncs = vec![
            self.log.clone(),
            self.index_file.clone(),
            self.time_file.clone(),
        ];
        work
    }
}

/// File writes and syncs computed under a borrow and run after it is released.
#[derive(Default)]
pub struct IoWork {
    writes: Vec<(LogFile, Vec<u8>, u64)>,
    syncs: Vec<LogFile>,
}

impl IoWork {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.syncs.is_empty()
    }

    pub async fn run(self) -> io::Result<()> {
        for (f, buf, at) in self.writes {
            f.write_all_at(buf, at).await?;
        }
        for f in self.syncs {
            f.sync().await?;
        }
        Ok(())
    }
}

fn log_path(dir: &Path, base: i64) -> String {
    dir.join(file_name(base, "log")).display().to_string()
}

/// Reads whole, CRC-valid batches in `[start, end)` of a file, a chunk at a time. A batch
/// larger than `max_batch` counts as corruption.
pub struct BatchChunks {
    file: LogFile,
    pos: u64,
    end: u64,
    chunk: usize,
    max_batch: usize,
    stop: Option<BatchError>,
    done: bool,
}

/// A chunk read by [`BatchChunks`]: its file position, its bytes, and the whole batches in
/// it as `(position in bytes, header)`.
pub type Chunk = (u64, Vec<u8>, Vec<(usize, BatchHeader)>);

impl BatchChunks {
    pub fn new(file: &LogFile, start: u64, end: u64, max_batch: usize) -> Self {
        BatchChunks {
            file: file.clone(),
            pos: start,
            end,
            chunk: SCAN_CHUNK,
            max_batch,
            stop: None,
            done: false,
        }
    }

    /// Where the batches read so far end, and why reading stopped early if it did.
    pub fn finish(self) -> ScanEnd {
        ScanEnd {
            valid_end: self.pos,
            error: self.stop,
        }
    }

    /// The next chunk holding at least one whole batch; `None` at the end or at the first
    /// torn or corrupt batch.
    pub async fn next(&mut self) -> io::Result<Option<Chunk>> {
        // Each iteration returns, stops, or grows the chunk to fit the next batch (at most
        // once per batch, up to `max_batch`).
        while !self.done && self.pos < self.end {
            let want = self.chunk.min((self.end - self.pos) as usize);
            let at = self.pos;
            let buf = self.file.read_at(at, want).await?;
            if buf.is_empty() {
                self.done = true;
                break;
            }
            let mut scan = BatchScan::new(&buf, true);
            let batches: Vec<(usize, BatchHeader)> = scan.by_ref().collect();
            let consumed = scan.position();
            self.pos += consumed as u64;
            match scan.stopped {
                None => self.done = buf.len() < want,
                Some(BatchError::Truncated { need, .. })
                    if at + (consumed + need) as u64 <= self.end && need <= self.max_batch =>
                {
                    if consumed == 0 {
                        if need <= self.chunk {
                            // A short read with the batch fully inside the file: give up.
                            self.stop = Some(BatchError::Truncated {
                                have: buf.len(),
                                need,
                            });
                            self.done = true;
                        } else {
                            self.chunk = need;
                        }
                    }
                }
                Some(e) => {
                    self.stop = Some(e);
                    self.done = true;
                }
            }
            if !batches.is_empty() {
                return Ok(Some((at, buf, batches)));
            }
        }
        Ok(None)
    }
}

/// Scans whole, CRC-valid batches in `[start, end)` of `file`, calling `f(position, header)`
/// for each. Reads in chunks; a batch larger than `max_batch` counts as corruption.
pub async fn scan_batches(
    file: &LogFile,
    start: u64,
    end: u64,
    max_batch: usize,
    mut f: impl FnMut(u64, &BatchHeader),
) -> io::Result<ScanEnd> {
    scan_whole_batches(file, start, end, max_batch, |pos, h, _| f(pos, h)).await
}

/// Like [`scan_batches`], calling `f(position, header, the whole batch's bytes)`.
pub async fn scan_whole_batches(
    file: &LogFile,
    start: u64,
    end: u64,
    max_batch: usize,
    mut f: impl FnMut(u64, &BatchHeader, &[u8]),
) -> io::Result<ScanEnd> {
    let mut chunks = BatchChunks::new(file, start, end, max_batch);
    while let Some((at, buf, batches)) = chunks.next().await? {
        for (pos, h) in &batches {
            f(at + *pos as u64, h, &buf[*pos..*pos + h.size]);
        }
    }
    Ok(chunks.finish())
}
