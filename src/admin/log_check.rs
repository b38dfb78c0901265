//! `shardlog log check DATA_DIR`: offline verification of every partition's segments, like
//! Kafka's `kafka-dump-log --verify`. Reads the files with plain blocking I/O (the broker
//! must not be running on that directory, or its active segments may change underneath).
//!
//! Checked: every batch's header, length and CRC-32C; offsets increasing across batches and
//! segments; every record of every batch framed right with its offset delta inside the
//! batch (compressed batches decompressed within the produce-time budget); every offset
//! index entry pointing at the batch it names, and both indexes increasing. Reports each
//! problem with the offsets it makes unreadable, and the DeleteRecords offset that moves a
//! partition past it.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::log::batch::{self, BatchError, BatchScan};
use crate::log::codec;
use crate::log::index::{OffsetIndex, TimeIndex};
use crate::log::records::RecordWalk;
use crate::log::validate::MAX_DECOMPRESSED_BYTES;

/// Bytes read per step.
const CHUNK: usize = 8 << 20;
/// Problems listed per partition before the rest are only counted.
const MAX_LISTED: usize = 20;

/// What the check found in one partition.
#[derive(Debug, Default)]
pub struct PartitionReport {
    pub dir: PathBuf,
    pub segments: usize,
    pub batches: u64,
    pub problems: Vec<String>,
    /// Problems beyond [`MAX_LISTED`].
    pub unlisted: usize,
}

impl PartitionReport {
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        } else {
            self.unlisted += 1;
        }
    }
}

/// Checks every partition under `data_dir/topics`; prints a line per partition and a
/// summary. Returns the number of partitions with problems.
pub fn run(data_dir: &Path) -> Result<usize> {
    let topics = data_dir.join("topics");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&topics)
        .with_context(|| format!("cannot read {}", topics.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut bad = 0;
    for d in &dirs {
        let r = check_partition(d)?;
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if r.problems.is_empty() {
            println!(
                "{name}: ok ({} segments, {} batches)",
                r.segments, r.batches
            );
        } else {
            bad += 1;
            println!(
                "{name}: {} PROBLEM(S) ({} segments, {} batches)",
                r.problems.len() + r.unlisted,
                r.segments,
                r.batches
            );
            for p in &r.problems {
                println!("  {p}");
            }
            if r.unlisted > 0 {
                println!("  ... and {} more", r.unlisted);
            }
        }
    }
    println!("checked {} partitions: {} with problems", dirs.len(), bad);
    Ok(bad)
}

/// Base offsets of the segments in a partition directory, ascending.
fn segment_bases(dir: &Path) -> Result<Vec<i64>> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_suffix(".log").and_then(|b| b.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

/// Checks one partition directory.
pub fn check_partition(dir: &Path) -> Result<PartitionReport> {
    let mut r = PartitionReport {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let bases = segment_bases(dir)?;
    r.segments = bases.len();
    let mut next = i64::MIN;
    for (i, base) in bases.iter().enumerate() {
        let seg_end = bases.get(i + 1).copied();
        let (positions, readable) = check_segment(dir, *base, seg_end, &mut next, &mut r)?;
        check_indexes(dir, *base, &positions, readable, &mut r)?;
    }
    Ok(r)
}

/// Walks one segment's batches; returns each batch's position and base offset, and where
/// the readable batches end.
fn check_segment(
    dir: &Path,
    base: i64,
    seg_end: Option<i64>,
    next: &mut i64,
    r: &mut PartitionReport,
) -> Result<(HashMap<u32, i64>, u64)> {
    let path = dir.join(crate::log::segment::file_name(base, "log"));
    let mut f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = f.metadata()?.len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut positions = HashMap::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = 0u64; // file position of buf[0]
    let mut eof = false;
    // Each iteration consumes the whole batches in `buf` and reads more, or stops.
    loop {
        if !eof {
            let mut more = vec![0u8; CHUNK.max(buf.len())];
            let n = f.read(&mut more)?;
            more.truncate(n);
            eof = n == 0;
            buf.extend_from_slice(&more);
        }
        let mut scan = BatchScan::new(&buf, true);
        for (at, h) in scan.by_ref() {
            let pos = buf_pos + at as u64;
            r.batches += 1;
            positions.insert(pos as u32, h.base_offset);
            if h.base_offset < base || h.base_offset < *next {
                r.problem(format!(
                    "{name} @{pos}: batch at offset {} is out of order (expected at least {})",
                    h.base_offset,
                    (*next).max(base)
                ));
            }
            if seg_end.is_some_and(|e| h.last_offset() >= e) {
                r.problem(format!(
                    "{name} @{pos}: batch {}..{} runs into the next segment",
                    h.base_offset,
                    h.last_offset()
                ));
            }
            *next = (*next).max(h.last_offset() + 1);
            if let Some(why) = records_problem(&buf[at..at + h.size], &h) {
                r.problem(format!(
                    "{name} @{pos}: batch {}..{}: {why}",
                    h.base_offset,
                    h.last_offset()
                ));
            }
        }
        let consumed = scan.position();
        let stopped = scan.stopped.take();
        buf.drain(..consumed);
        buf_pos += consumed as u64;
        match stopped {
            None if eof || buf_pos >= size => break,
            None => {}
            Some(BatchError::Truncated { need, .. }) if !eof && buf_pos + need as u64 <= size => {}
            Some(e) => {
                let (topic, partition) = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .and_then(|n| {
                        n.rsplit_once('-')
                            .map(|(t, p)| (t.to_string(), p.to_string()))
                    })
                    .unwrap_or_else(|| ("<topic>".into(), "<p>".into()));
                let after = match seg_end {
                    Some(end) => {
                        format!("offsets {}..{} of this segment", (*next).max(base), end - 1)
                    }
                    None => format!("offsets from {} to the end of the log", (*next).max(base)),
                };
                r.problem(format!(
                    "{name} @{buf_pos}: {e}; {} bytes from here cannot be read ({after}); \
                     to move consumers past it: shardlog records delete {topic} --partition {partition} --before {}",
                    size - buf_pos,
                    seg_end.map_or("<the end of the log>".to_string(), |e| e.to_string())
                ));
                break;
            }
        }
        if eof && buf.is_empty() {
            break;
        }
    }
    Ok((positions, buf_pos))
}

/// Why the records of a whole batch do not read back, if they don't.
fn records_problem(b: &[u8], h: &batch::BatchHeader) -> Option<String> {
    if h.attributes & batch::ATTR_CONTROL != 0 {
        return None;
    }
    let section = match codec::batch_records(b, h, MAX_DECOMPRESSED_BYTES) {
        Ok((_, s)) => s,
        Err(e) => return Some(format!("records do not decompress: {e}")),
    };
    let mut walk = RecordWalk::new(&section, h);
    let n = walk.by_ref().count();
    if !walk.complete() {
        return Some(format!(
            "records do not decode (record {n} of {}): framing or offset delta",
            h.record_count
        ));
    }
    None
}

/// Checks a segment's index files against the batch positions found in its log.
fn check_indexes(
    dir: &Path,
    base: i64,
    positions: &HashMap<u32, i64>,
    readable: u64,
    r: &mut PartitionReport,
) -> Result<()> {
    let read = |ext: &str| std::fs::read(dir.join(crate::log::segment::file_name(base, ext)));
    let log_size = std::fs::metadata(dir.join(crate::log::segment::file_name(base, "log")))?.len();
    match read("index") {
        Err(_) => r.problem(format!("segment {base}: offset index missing (rebuilt at the next start)")),
        Ok(bytes) => match OffsetIndex::decode(&bytes, log_size.max(1)) {
            None => r.problem(format!(
                "segment {base}: offset index not increasing or past the log (rebuilt at the next start)"
            )),
            Some(idx) => {
                // Entries past unreadable bytes cannot be checked (that damage is reported).
                for e in idx.entries().iter().filter(|e| u64::from(e.position) < readable) {
                    let named = base + i64::from(e.rel_offset);
                    match positions.get(&e.position) {
                        Some(b) if *b == named => {}
                        found => r.problem(format!(
                            "segment {base}: index entry for offset {named} points at position {} where {} (the broker rebuilds this index when a read meets it)",
                            e.position,
                            found.map_or("no batch starts".to_string(), |b| format!("the batch at offset {b} starts"))
                        )),
                    }
                }
            }
        },
    }
    if let Ok(bytes) = read("timeindex") {
        if TimeIndex::decode(&bytes).is_none() {
            r.problem(format!(
                "segment {base}: time index not increasing (rebuilt at the next start)"
            ));
        }
    }
    Ok(())
}
