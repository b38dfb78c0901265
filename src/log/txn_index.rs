//! Transactions on one partition (KIP-98): which producers have a transaction open here and
//! where it began, which finished ones were aborted (the aborted-transactions index a
//! read_committed fetch returns), and from those the last stable offset (LSO).
//!
//! Invariants: kept inside the producer state, so it is updated in offset order as batches
//! are queued (leader) or copied (follower), snapshotted with it and rebuilt from a snapshot
//! plus the batches after it — a restart or a truncation sees exactly the transactions of
//! the log it keeps. Entries of aborted transactions the log no longer holds are dropped as
//! the log start moves. Knows offsets and producer ids only, never records.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::batch::{self, BatchHeader, ATTR_CONTROL, ATTR_TRANSACTIONAL};
use super::records::{put_varint, RecordWalk};

/// Control record type of a commit marker (ControlRecordType.COMMIT); 0 is ABORT.
const CONTROL_COMMIT: i16 = 1;
const CONTROL_ABORT: i16 = 0;

/// One aborted transaction of this partition (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
    /// The first offset still unstable once it finished: every transaction aborted later
    /// began at or after it (so a fetch's scan can stop there).
    pub last_stable: i64,
}

/// A transaction's fate, read from its control batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Commit,
    Abort,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TxnIndex {
    /// Open transactions: first offset → producer id.
    open: BTreeMap<i64, i64>,
    /// Producer id → first offset of its open transaction.
    open_by_pid: HashMap<i64, i64>,
    /// Finished transactions whose marker may still be above the high watermark, as
    /// (marker offset, first offset): unstable until the marker is.
    finishing: VecDeque<(i64, i64)>,
    aborted: VecDeque<AbortedTxn>,
}

impl TxnIndex {
    /// The first offset of `pid`'s open transaction here, if it has one.
    pub fn open_of(&self, pid: i64) -> Option<i64> {
        self.open_by_pid.get(&pid).copied()
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Producers with a transaction open here, as (producer id, first offset).
    pub fn open_txns(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.open.iter().map(|(first, pid)| (*pid, *first))
    }

    /// A transactional data batch of `pid` starting at `first`: opens its transaction here
    /// if none is open.
    pub fn data(&mut self, pid: i64, first: i64) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.open_by_pid.entry(pid) {
            e.insert(first);
            self.open.insert(first, pid);
        }
    }

    /// `pid`'s marker at `offset`: its transaction here (if one is open) is finished.
    pub fn marker(&mut self, pid: i64, offset: i64, m: Marker) {
        let Some(first) = self.open_by_pid.remove(&pid) else {
            return;
        };
        self.open.remove(&first);
        self.finishing.push_back((offset, first));
        if m == Marker::Abort {
            let last_stable = self
                .open
                .keys()
                .next()
                .copied()
                .unwrap_or(offset + 1)
                .min(offset + 1);
            self.aborted.push_back(AbortedTxn {
                producer_id: pid,
                first_offset: first,
                last_offset: offset,
                last_stable,
            });
        }
    }

    /// The last stable offset given the high watermark `hw`: the first offset of the
    /// earliest transaction still open, or finished with its marker at or above `hw`.
    pub fn lso(&mut self, hw: i64) -> i64 {
        while self.finishing.front().is_some_and(|(m, _)| *m < hw) {
            self.finishing.pop_front();
        }
        let open = self.open.keys().next().copied().unwrap_or(hw);
        let finishing = self.finishing.iter().map(|(_, f)| *f).min().unwrap_or(hw);
        hw.min(open).min(finishing)
    }

    /// Aborted transactions a fetch from `from` reading below `upper` must name, as
    /// (producer id, first offset), at most `max` of them.
    pub fn aborted_in(&self, from: i64, upper: i64, max: usize) -> Vec<(i64, i64)> {
        let i = self.aborted.partition_point(|a| a.last_offset < from);
        let mut out = Vec::new();
        for a in self.aborted.iter().skip(i) {
            if a.last_stable > upper || out.len() >= max {
                break;
            }
            if a.first_offset < upper {
                out.push((a.producer_id, a.first_offset));
            }
        }
        out
    }

    /// Aborted transactions whose batches lie in `[from, to)`, as (producer id, first
    /// offset, marker offset) — what the cleaner may drop.
    pub fn aborted_ranges(&self, from: i64, to: i64) -> Vec<(i64, i64, i64)> {
        let i = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted
            .iter()
            .skip(i)
            .filter(|a| a.first_offset < to)
            .map(|a| (a.producer_id, a.first_offset, a.last_offset))
            .collect()
    }

    /// Forgets what starts at or after `end` (appends that were never written).
    pub fn forget_from(&mut self, end: i64) {
        self.open.retain(|first, _| *first < end);
        self.open_by_pid.retain(|_, first| *first < end);
        self.finishing.retain(|(m, _)| *m < end);
        while self.aborted.back().is_some_and(|a| a.last_offset >= end) {
            self.aborted.pop_back();
        }
    }

    /// Drops aborted transactions wholly below the log start.
    pub fn trim_before(&mut self, start: i64) {
        while self.aborted.front().is_some_and(|a| a.last_offset < start) {
            self.aborted.pop_front();
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.open.len() as u32).to_be_bytes());
        for (first, pid) in &self.open {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&first.to_be_bytes());
        }
        out.extend_from_slice(&(self.aborted.len() as u32).to_be_bytes());
        for a in &self.aborted {
            for v in [a.producer_id, a.first_offset, a.last_offset, a.last_stable] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    /// An index of these open transactions (producer id, first offset) and aborted ones
    /// (in marker order), as [`TxnIndex::encode`] wrote them.
    pub fn from_parts(open: Vec<(i64, i64)>, aborted: Vec<AbortedTxn>) -> TxnIndex {
        let mut t = TxnIndex::default();
        for (pid, first) in open {
            t.open.insert(first, pid);
            t.open_by_pid.insert(pid, first);
        }
        t.aborted = aborted.into();
        t
    }
}

/// Whether `h` is a transactional data batch.
pub fn is_txn_data(h: &BatchHeader) -> bool {
    h.attributes & ATTR_TRANSACTIONAL != 0 && h.attributes & ATTR_CONTROL == 0
}

/// The marker a control batch (`batch`, whole, header `h`) carries; `None` if `h` is no
/// control batch or its record is not a COMMIT or ABORT marker.
pub fn marker_of(batch: &[u8], h: &BatchHeader) -> Option<Marker> {
    if h.attributes & ATTR_CONTROL == 0 || batch.len() < batch::HEADER_LEN {
        return None;
    }
    // Control batches are never compressed.
    let rec = RecordWalk::new(&batch[batch::HEADER_LEN..], h).next()?;
    let key = rec.key?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_COMMIT => Some(Marker::Commit),
        CONTROL_ABORT => Some(Marker::Abort),
        _ => None,
    }
}

/// A control batch holding one COMMIT or ABORT marker of producer `pid` at `epoch`
/// (offset 0; the log stamps it), as Kafka's `EndTransactionMarker` writes it.
pub fn marker_batch(
    pid: i64,
    epoch: i16,
    m: Marker,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let kind = match m {
        Marker::Commit => CONTROL_COMMIT,
        Marker::Abort => CONTROL_ABORT,
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut r = vec![0u8]; // record attributes
    put_varint(&mut r, 0); // timestamp delta
    put_varint(&mut r, 0); // offset delta
    put_varint(&mut r, key.len() as i64);
    r.extend_from_slice(&key);
    put_varint(&mut r, value.len() as i64);
    r.extend_from_slice(&value);
    put_varint(&mut r, 0); // headers
    let mut section = Vec::with_capacity(r.len() + 2);
    put_varint(&mut section, r.len() as i64);
    section.extend_from_slice(&r);
    let mut b = vec![0u8; batch::HEADER_LEN];
    b.extend_from_slice(&section);
    let h = BatchHeader {
        base_offset: 0,
        size: 0,
        leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: ATTR_TRANSACTIONAL | ATTR_CONTROL,
        last_offset_delta: 0,
        base_timestamp: timestamp,
        max_timestamp: timestamp,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: -1,
        record_count: 1,
    };
    batch::write_header(&h, &mut b);
    batch::seal(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lso_and_aborted_index() {
        let mut t = TxnIndex::default();
        assert_eq!(t.lso(10), 10);
        t.data(7, 10);
        t.data(7, 12); // same transaction
        t.data(8, 11);
        assert_eq!(t.lso(20), 10);
        t.marker(7, 20, Marker::Abort);
        // 8 still open from 11; 7's marker at 20 not yet below the high watermark.
        assert_eq!(t.lso(20), 10);
        assert_eq!(t.lso(21), 11);
        t.marker(8, 21, Marker::Commit);
        assert_eq!(t.lso(21), 11);
        assert_eq!(t.lso(22), 22);
        assert_eq!(t.aborted_in(0, 22, 100), vec![(7, 10)]);
        assert_eq!(t.aborted_in(21, 22, 100), Vec::<(i64, i64)>::new());
        assert_eq!(t.aborted_in(0, 10, 100), Vec::<(i64, i64)>::new());
        t.data(7, 30);
        t.marker(7, 31, Marker::Abort);
        assert_eq!(t.aborted_in(0, 40, 100), vec![(7, 10), (7, 30)]);
        assert_eq!(t.aborted_in(0, 40, 1), vec![(7, 10)]);
        assert_eq!(t.aborted_ranges(25, 40), vec![(7, 30, 31)]);
        let mut out = Vec::new();
        t.encode(&mut out);
        t.forget_from(31);
        assert_eq!(t.aborted_in(0, 40, 100), vec![(7, 10)]);
        t.trim_before(21);
        assert!(t.aborted_in(0, 40, 100).is_empty());
    }

    #[test]
    fn marker_batches_round_trip() {
        for m in [Marker::Commit, Marker::Abort] {
            let b = marker_batch(42, 3, m, 9, 1_700_000_000_000);
            let h = batch::validate(&b).expect("valid batch");
            assert_eq!(h.producer_id, 42);
            assert_eq!(h.producer_epoch, 3);
            assert_eq!(h.base_sequence, -1);
            assert_eq!(marker_of(&b, &h), Some(m));
            assert!(!is_txn_data(&h));
        }
    }
}
