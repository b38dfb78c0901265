//! Sparse per-segment indexes, kept in memory and mirrored append-only to disk.
//!
//! - Offset index (`.index`): entries of (offset relative to the segment base: u32,
//!   byte position in the segment: u32), big-endian, 8 bytes each, one entry per
//!   `index_interval_bytes` of appended data.
//! - Time index (`.timeindex`): entries of (max timestamp so far: i64, relative offset: u32),
//!   12 bytes each, added when the segment's max timestamp grows past an interval.
//!
//! Invariant: entries are strictly increasing in both fields; a file that breaks this is
//! treated as missing and rebuilt from the segment by the caller.

/// Offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub rel_offset: u32,
    pub position: u32,
}

/// Time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub rel_offset: u32,
}

pub const OFFSET_ENTRY_LEN: usize = 8;
pub const TIME_ENTRY_LEN: usize = 12;

#[derive(Debug, Default, Clone)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
}

impl OffsetIndex {
    pub fn entries(&self) -> &[OffsetEntry] {
        &self.entries
    }

    /// Appends an entry if it keeps the index strictly increasing; returns whether it did.
    pub fn push(&mut self, e: OffsetEntry) -> bool {
        if let Some(last) = self.entries.last() {
            if e.rel_offset <= last.rel_offset || e.position <= last.position {
                return false;
            }
        }
        self.entries.push(e);
        true
    }

    /// Position of the last indexed batch starting at or before `rel_offset` (0 if none).
    pub fn lookup(&self, rel_offset: u32) -> u32 {
        self.lookup_entry(rel_offset).map_or(0, |e| e.position)
    }

    /// The last entry for a batch starting at or before `rel_offset`.
    pub fn lookup_entry(&self, rel_offset: u32) -> Option<OffsetEntry> {
        let i = self.entries.partition_point(|e| e.rel_offset <= rel_offset);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry for a batch starting at or before byte `position`.
    pub fn entry_at_or_before(&self, position: u32) -> Option<OffsetEntry> {
        let i = self.entries.partition_point(|e| e.position <= position);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// Drops entries at or beyond `position` (after a truncation).
    pub fn truncate_to_position(&mut self, position: u32) {
        let i = self.entries.partition_point(|e| e.position < position);
        self.entries.truncate(i);
    }

    pub fn encode_entry(e: OffsetEntry, out: &mut Vec<u8>) {
        out.extend_from_slice(&e.rel_offset.to_be_bytes());
        out.extend_from_slice(&e.position.to_be_bytes());
    }

    /// Parses an index file; `None` if it is not strictly increasing or points past
    /// `segment_size`. A trailing partial entry is ignored.
    pub fn decode(buf: &[u8], segment_size: u64) -> Option<OffsetIndex> {
        let mut idx = OffsetIndex::default();
        for c in buf.chunks_exact(OFFSET_ENTRY_LEN) {
            let e = OffsetEntry {
                rel_offset: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                position: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            };
            if u64::from(e.position) >= segment_size || !idx.push(e) {
                return None;
            }
        }
        Some(idx)
    }

    pub fn encode_all(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for e in &self.entries {
            Self::encode_entry(*e, &mut out);
        }
        out
    }
}

#[derive(Debug, Default, Clone)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    pub fn push(&mut self, e: TimeEntry) -> bool {
        if let Some(last) = self.entries.last() {
            if e.timestamp <= last.timestamp || e.rel_offset <= last.rel_offset {
                return false;
            }
        }
        self.entries.push(e);
        true
    }

    /// Relative offset from which to scan for the first record with timestamp >= `ts`:
    /// the entry before the first one whose timestamp reaches `ts`.
    pub fn scan_start(&self, ts: i64) -> u32 {
        let i = self.entries.partition_point(|e| e.timestamp < ts);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].rel_offset
        }
    }

    pub fn truncate_to_offset(&mut self, rel_offset: u32) {
        let i = self.entries.partition_point(|e| e.rel_offset < rel_offset);
        self.entries.truncate(i);
    }

    pub fn encode_entry(e: TimeEntry, out: &mut Vec<u8>) {
        out.extend_from_slice(&e.timestamp.to_be_bytes());
        out.extend_from_slice(&e.rel_offset.to_be_bytes());
    }

    pub fn decode(buf: &[u8]) -> Option<TimeIndex> {
        let mut idx = TimeIndex::default();
        for c in buf.chunks_exact(TIME_ENTRY_LEN) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&c[..8]);
            let e = TimeEntry {
                timestamp: i64::from_be_bytes(ts),
                rel_offset: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
            };
            if !idx.push(e) {
                return None;
            }
        }
        Some(idx)
    }

    pub fn encode_all(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for e in &self.entries {
            Self::encode_entry(*e, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_floor_entry() {
        let mut idx = OffsetIndex::default();
        assert_eq!(idx.lookup(5), 0);
        assert!(idx.push(OffsetEntry {
            rel_offset: 10,
            position: 4096
        }));
        assert!(idx.push(OffsetEntry {
            rel_offset: 20,
            position: 8192
        }));
        assert!(!idx.push(OffsetEntry {
            rel_offset: 15,
            position: 9000
        }));
        assert_eq!(idx.lookup(9), 0);
        assert_eq!(idx.lookup(10), 4096);
        assert_eq!(idx.lookup(19), 4096);
        assert_eq!(idx.lookup(1000), 8192);
        let round = OffsetIndex::decode(&idx.encode_all(), 10_000).expect("decodes");
        assert_eq!(round.entries(), idx.entries());
        assert!(OffsetIndex::decode(&idx.encode_all(), 8000).is_none());
    }

    #[test]
    fn time_scan_start() {
        let mut t = TimeIndex::default();
        t.push(TimeEntry {
            timestamp: 100,
            rel_offset: 5,
        });
        t.push(TimeEntry {
            timestamp: 200,
            rel_offset: 9,
        });
        assert_eq!(t.scan_start(50), 0);
        assert_eq!(t.scan_start(150), 5);
        assert_eq!(t.scan_start(200), 5);
        assert_eq!(t.scan_start(201), 9);
        let round = TimeIndex::decode(&t.encode_all()).expect("decodes");
        assert_eq!(round.entries(), t.entries());
    }
}
