//! The leader-epoch cache of one log (KIP-101): for each leader epoch that appended to
//! the log, the first offset it appended. A follower whose log diverged from a new leader's
//! asks where an epoch ends ([`EpochCache::end_offset_for`]) and truncates there.
//!
//! Invariants: epochs and start offsets both strictly increase; no entry starts at or past
//! the log end (truncation removes them) and none below the log start except the one that
//! covers it. Kept durably in `leader-epoch-checkpoint` (Kafka's text format: version,
//! count, then `epoch offset` lines), replaced whole by temp file, fsync and rename.

use std::io;
use std::path::{Path, PathBuf};

use super::writer::sync_dir;

pub const FILE: &str = "leader-epoch-checkpoint";
/// More entries than any real history; a longer file is damaged.
const MAX_ENTRIES: usize = 100_000;

/// One epoch's first offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug, Clone)]
pub struct EpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
    /// Changed since the last [`EpochCache::persist`].
    dirty: bool,
}

impl EpochCache {
    /// Loads `dir/leader-epoch-checkpoint`; a missing file is an empty cache, a damaged one
    /// an error (the caller rebuilds from the batches).
    pub fn load(dir: &Path) -> io::Result<EpochCache> {
        let path = dir.join(FILE);
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(EpochCache {
            path,
            entries,
            dirty: false,
        })
    }

    /// An empty cache for `dir` (written on the first persist).
    pub fn empty(dir: &Path) -> EpochCache {
        EpochCache {
            path: dir.join(FILE),
            entries: Vec::new(),
            dirty: true,
        }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` appends from `offset` on. Ignored unless it is newer than the
    /// latest epoch (batches of one epoch arrive in order; an older one cannot start later).
    pub fn assign(&mut self, epoch: i32, offset: i64) {
        match self.entries.last() {
            Some(last) if epoch <= last.epoch => {}
            Some(last) if offset < last.start_offset => {}
            _ => {
                self.entries.push(EpochEntry {
                    epoch,
                    start_offset: offset,
                });
                self.dirty = true;
            }
        }
    }

    /// KIP-279: the largest epoch ≤ `epoch` this log has and the offset where it ends (the
    /// next epoch's start, or `log_end` for the latest); `None` when `epoch` is older than
    /// every entry (Kafka answers UNDEFINED_EPOCH, -1).
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let i = self.entries.iter().rposition(|e| e.epoch <= epoch)?;
        let end = self
            .entries
            .get(i + 1)
            .map_or(log_end, |next| next.start_offset);
        Some((self.entries[i].epoch, end))
    }

    /// The epoch of the batch holding `offset` (the entry that covers it).
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map(|e| e.epoch)
    }

    /// Drops the entries that start at or after `end` (the log was truncated to `end`).
    pub fn truncate_from_end(&mut self, end: i64) {
        let keep = self.entries.partition_point(|e| e.start_offset < end);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.dirty = true;
        }
    }

    /// The log now starts at `start`: entries wholly below it go; the one covering it
    /// starts there.
    pub fn truncate_from_start(&mut self, start: i64) {
        let covering = self.entries.iter().rposition(|e| e.start_offset <= start);
        if let Some(i) = covering {
            if i > 0 || self.entries[i].start_offset < start {
                self.entries.drain(..i);
                self.entries[0].start_offset = start;
                self.dirty = true;
            }
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes the cache if it changed (temp file, fsync, rename, fsync of the directory).
    pub fn persist(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        // A log written by epoch 0 alone needs no file (no file means exactly that), so a
        // single node never writes one.
        let only_zero = self.entries.iter().all(|e| e.epoch == 0);
        if only_zero && self.entries.len() <= 1 && !self.path.exists() {
            self.dirty = false;
            return Ok(());
        }
        use std::io::Write;
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.dirty = false;
        Ok(())
    }
}

fn parse(text: &str) -> Result<Vec<EpochEntry>, String> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("0") {
        return Err("unknown version".into());
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("no entry count")?;
    if count > MAX_ENTRIES {
        return Err(format!("{count} entries"));
    }
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(count);
    for _ in 0..count {
        let line = lines.next().ok_or("fewer entries than counted")?;
        let mut parts = line.split_whitespace();
        let epoch: i32 = parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("bad line {line:?}"))?;
        let start_offset: i64 = parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("bad line {line:?}"))?;
        if let Some(last) = entries.last() {
            if epoch <= last.epoch || start_offset < last.start_offset {
                return Err(format!("entry {line:?} does not increase"));
            }
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = EpochCache::empty(dir.path());
        for (e, o) in entries {
            c.assign(*e, *o);
        }
        c
    }

    #[test]
    fn end_offsets_follow_kip_279() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(c.end_offset_for(1, 40), Some((1, 10)));
        // An epoch this log never had: the largest smaller one, ending where the next starts.
        assert_eq!(c.end_offset_for(2, 40), Some((1, 10)));
        assert_eq!(c.end_offset_for(3, 40), Some((3, 25)));
        assert_eq!(c.end_offset_for(4, 40), Some((4, 40)));
        assert_eq!(c.end_offset_for(9, 40), Some((4, 40)));
        assert_eq!(c.end_offset_for(0, 40), None);
        assert_eq!(c.epoch_at(24), Some(3));
        assert_eq!(c.epoch_at(25), Some(4));
    }

    #[test]
    fn assign_keeps_both_orders_and_truncation_trims() {
        let mut c = cache(&[(1, 0), (3, 10)]);
        c.assign(2, 20);
        c.assign(3, 30);
        c.assign(5, 5);
        assert_eq!(
            c.latest_epoch(),
            Some(3),
            "older or backwards entries ignored"
        );
        c.assign(5, 30);
        c.truncate_from_end(30);
        assert_eq!(c.latest_epoch(), Some(3));
        c.truncate_from_end(10);
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 1,
                start_offset: 0
            }]
        );
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        c.truncate_from_start(12);
        assert_eq!(
            c.entries(),
            &[
                EpochEntry {
                    epoch: 3,
                    start_offset: 12
                },
                EpochEntry {
                    epoch: 4,
                    start_offset: 25
                }
            ]
        );
    }

    #[test]
    fn persists_and_refuses_damaged_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = EpochCache::empty(dir.path());
        c.assign(2, 0);
        c.assign(7, 100);
        c.persist().expect("persist");
        let back = EpochCache::load(dir.path()).expect("load");
        assert_eq!(back.entries(), c.entries());
        assert!(!back.is_dirty());
        for bad in [
            "1\n0\n",
            "0\n2\n1 0\n",
            "0\n2\n3 0\n2 5\n",
            "0\nx\n",
            "0\n999999999\n",
        ] {
            std::fs::write(dir.path().join(FILE), bad).expect("write");
            assert!(EpochCache::load(dir.path()).is_err(), "{bad:?}");
        }
        std::fs::remove_file(dir.path().join(FILE)).expect("rm");
        assert!(EpochCache::load(dir.path())
            .expect("none")
            .entries()
            .is_empty());
    }
}
