//! Idempotent-producer state of one partition (KIP-98): for each producer id, its epoch, the
//! first sequence of that epoch this log holds, and the sequence and offset ranges of its
//! last [`BATCHES_KEPT`] batches, so a retried batch is answered with its first offsets
//! instead of being written twice. A retry older than those (possible after a leader change:
//! a client may send new batches to the new leader while older ones still wait on the old
//! one's connection) is answered DUPLICATE_SEQUENCE_NUMBER, which clients take as written.
//!
//! Invariants: updated only by the owning shard, in offset order, as batches are queued for
//! writing; rebuilt on startup from the latest snapshot plus the batches after it; entries of
//! producers silent for `producer.id.expiration.ms` are dropped.

use std::collections::{HashMap, VecDeque};

use thiserror::Error;

use super::batch::BatchHeader;
use super::txn_index::{is_txn_data, AbortedTxn, Marker, TxnIndex};

/// Batches remembered per producer: Kafka keeps 5 (`max.in.flight.requests.per.connection`),
/// but a client's in-flight batches of one partition can exceed that across a leader change.
pub const BATCHES_KEPT: usize = 16;
/// Default `producer.id.expiration.ms`: one day.
pub const DEFAULT_EXPIRATION_MS: i64 = 24 * 3600 * 1000;
const SNAPSHOT_MAGIC: &[u8; 5] = b"SLPS3";
/// Snapshots from before transactions were kept.
const SNAPSHOT_MAGIC_V2: &[u8; 5] = b"SLPS2";
/// Snapshots from before `since_seq` was kept.
const SNAPSHOT_MAGIC_V1: &[u8; 5] = b"SLPS1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SequenceError {
    #[error("producer {pid} epoch {got} is older than the current epoch {current}")]
    InvalidEpoch { pid: i64, got: i16, current: i16 },
    #[error("producer {pid}: sequence {got}, expected {expected}")]
    OutOfOrder { pid: i64, got: i32, expected: i32 },
    /// A retry of batches this log holds but no longer remembers the offsets of.
    #[error("producer {pid}: sequences {first}..={last} were written already")]
    Duplicate { pid: i64, first: i32, last: i32 },
    /// A non-transactional batch while the producer has a transaction open here.
    #[error("producer {pid} has a transaction open on this partition")]
    InvalidTxnState { pid: i64 },
}

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRecord {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// First sequence of this epoch the log holds: every sequence from here to the last
    /// batch's was written (checked in order as they came).
    pub since_seq: i32,
    pub batches: VecDeque<BatchRecord>,
    /// Broker wall-clock ms of the last append (for expiration).
    pub last_append_ms: i64,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New batch in sequence: write it.
    Append,
    /// A retry of a batch already in the log: answer with its offsets, write nothing.
    Duplicate(BatchRecord),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Open and aborted transactions, the last stable offset.
    pub txns: TxnIndex,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

fn last_seq_of(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX, like offsets' deltas.
    ((i64::from(h.base_sequence) + i64::from(h.last_offset_delta)) % (i64::from(i32::MAX) + 1))
        as i32
}

impl ProducerState {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, pid: i64) -> Option<&ProducerEntry> {
        self.producers.get(&pid)
    }

    /// Every producer kept, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(p, e)| (*p, e))
    }

    /// Checks an incoming batch of an idempotent producer (`producer_id >= 0`).
    pub fn check(&self, h: &BatchHeader) -> Result<Verdict, SequenceError> {
        let pid = h.producer_id;
        let first = h.base_sequence;
        let last = last_seq_of(h);
        // A producer with no state here is taken at any sequence, as Kafka (since 2.5,
        // KIP-360) does: its state went with retention or DeleteRecords, or this replica
        // became leader without ever seeing it. Refusing it (UNKNOWN_PRODUCER_ID) leaves
        // clients retrying or bumping their epoch until their delivery timeout.
        if !is_txn_data(h) && self.txns.open_of(pid).is_some() {
            return Err(SequenceError::InvalidTxnState { pid });
        }
        let Some(e) = self.producers.get(&pid) else {
            return Ok(Verdict::Append);
        };
        if h.producer_epoch < e.epoch {
            return Err(SequenceError::InvalidEpoch {
                pid,
                got: h.producer_epoch,
                current: e.epoch,
            });
        }
        if h.producer_epoch > e.epoch {
            // A new epoch starts its sequences again at 0.
            return if first == 0 {
                Ok(Verdict::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    pid,
                    got: first,
                    expected: 0,
                })
            };
        }
        if let Some(dup) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Verdict::Duplicate(*dup));
        }
        let expected = e.batches.back().map(|b| next_seq(b.last_seq)).unwrap_or(0);
        let last_written = e.batches.back().map(|b| b.last_seq);
        if let Some(lw) = last_written {
            // Without a wrap in between, a range inside [since, last written] is in the log.
            if e.since_seq <= first && first <= last && last <= lw {
                return Err(SequenceError::Duplicate { pid, first, last });
            }
        }
        if first != expected {
            return Err(SequenceError::OutOfOrder {
                pid,
                got: first,
                expected,
            });
        }
        Ok(Verdict::Append)
    }

    /// Records a batch that was (or is being) appended at its stamped offsets; `marker`:
    /// what a control batch carries.
    pub fn record(&mut self, h: &BatchHeader, marker: Option<Marker>, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        if let Some(m) = marker {
            self.txns.marker(h.producer_id, h.base_offset, m);
            // A marker carries no sequence; a newer epoch (the coordinator fencing the
            // producer) restarts its sequences.
            if let Some(e) = self.producers.get_mut(&h.producer_id) {
                if h.producer_epoch > e.epoch {
                    e.epoch = h.producer_epoch;
                    e.since_seq = 0;
                    e.batches.clear();
                }
                e.last_append_ms = e.last_append_ms.max(now_ms);
            }
            return;
        }
        if h.attributes & super::batch::ATTR_CONTROL != 0 {
            return;
        }
        if is_txn_data(h) {
            self.txns.data(h.producer_id, h.base_offset);
        }
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                since_seq: h.base_sequence,
                batches: VecDeque::with_capacity(BATCHES_KEPT),
                last_append_ms: now_ms,
            });
        if e.batches.iter().any(|b| b.first_offset == h.base_offset) {
            // Already known (replayed from a snapshot that included queued batches).
            return;
        }
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.since_seq = h.base_sequence;
            e.batches.clear();
        }
        if e.batches.len() == BATCHES_KEPT {
            e.batches.pop_front();
        }
        e.batches.push_back(BatchRecord {
            first_seq: h.base_sequence,
            last_seq: last_seq_of(h),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        e.last_append_ms = e.last_append_ms.max(now_ms);
    }

    /// Forgets batches at or after `offset` (appends that failed to be written).
    pub fn forget_from(&mut self, offset: i64) {
        self.txns.forget_from(offset);
        let txns = &self.txns;
        self.producers.retain(|pid, e| {
            while e.batches.back().is_some_and(|b| b.first_offset >= offset) {
                e.batches.pop_back();
            }
            !e.batches.is_empty() || txns.open_of(*pid).is_some()
        });
    }

    /// Drops producers whose last append is older than `expiration_ms`. Returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        let txns = &self.txns;
        // A producer with a transaction open here stays until it ends (its coordinator
        // aborts it after its timeout).
        self.producers.retain(|pid, e| {
            now_ms - e.last_append_ms < expiration_ms || txns.open_of(*pid).is_some()
        });
        before - self.producers.len()
    }

    /// Binary snapshot ([`super::checksum`] framing): magic, count, entries, CRC-32C.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut pids: Vec<&i64> = self.producers.keys().collect();
        pids.sort();
        for pid in pids {
            let e = &self.producers[pid];
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.since_seq.to_be_bytes());
            out.extend_from_slice(&e.last_append_ms.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        self.txns.encode(&mut out);
        super::checksum::seal(&mut out);
        out
    }

    /// Parses a snapshot; `None` if it is damaged in any way.
    pub fn decode(buf: &[u8]) -> Option<ProducerState> {
        let (body, version) = match super::checksum::open(buf, SNAPSHOT_MAGIC) {
            Some(b) => (b, 3),
            None => match super::checksum::open(buf, SNAPSHOT_MAGIC_V2) {
                Some(b) => (b, 2),
                None => (super::checksum::open(buf, SNAPSHOT_MAGIC_V1)?, 1),
            },
        };
        let v2 = version >= 2;
        let mut r = Cursor { buf: body, pos: 0 };
        let n = r.u32()? as usize;
        let mut producers = HashMap::with_capacity(n.min(body.len() / 19));
        for _ in 0..n {
            let pid = r.i64()?;
            let epoch = r.i16()?;
            let since_seq = if v2 { Some(r.i32()?) } else { None };
            let last_append_ms = r.i64()?;
            let k = r.u8()? as usize;
            if k > BATCHES_KEPT {
                return None;
            }
            let mut batches = VecDeque::with_capacity(k);
            for _ in 0..k {
                batches.push_back(BatchRecord {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            // A version-1 snapshot: the oldest remembered batch is the earliest known.
            let since_seq = since_seq.or_else(|| batches.front().map(|b| b.first_seq))?;
            producers.insert(
                pid,
                ProducerEntry {
                    epoch,
                    since_seq,
                    batches,
                    last_append_ms,
                },
            );
        }
        let mut txns = TxnIndex::default();
        if version >= 3 {
            let n = r.u32()? as usize;
            let mut open = Vec::with_capacity(n.min(body.len() / 16));
            for _ in 0..n {
                open.push((r.i64()?, r.i64()?));
            }
            let n = r.u32()? as usize;
            let mut aborted = Vec::with_capacity(n.min(body.len() / 32));
            for _ in 0..n {
                aborted.push(AbortedTxn {
                    producer_id: r.i64()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    last_stable: r.i64()?,
                });
            }
            txns = TxnIndex::from_parts(open, aborted);
        }
        (r.pos == body.len()).then_some(ProducerState { producers, txns })
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.buf.get(self.pos..self.pos + N)?;
        self.pos += N;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|a| a[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take::<8>().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            size: 100,
            leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(&header(9, 0, 3, 1, 0)), Ok(Verdict::Append));
        let h0 = header(7, 0, 0, 5, 0);
        assert_eq!(s.check(&h0), Ok(Verdict::Append));
        s.record(&h0, None, 1);
        let h1 = header(7, 0, 5, 5, 5);
        assert_eq!(s.check(&h1), Ok(Verdict::Append));
        s.record(&h1, None, 1);
        // Retry of the first batch.
        assert!(matches!(s.check(&h0), Ok(Verdict::Duplicate(b)) if b.first_offset == 0));
        // Gap.
        assert!(matches!(
            s.check(&header(7, 0, 12, 1, 10)),
            Err(SequenceError::OutOfOrder { expected: 10, .. })
        ));
        // Old epoch after a bump.
        let bumped = header(7, 1, 0, 1, 10);
        assert_eq!(s.check(&bumped), Ok(Verdict::Append));
        s.record(&bumped, None, 2);
        assert!(matches!(
            s.check(&header(7, 0, 10, 1, 11)),
            Err(SequenceError::InvalidEpoch { .. })
        ));
        // Only BATCHES_KEPT batches are remembered; older retries are duplicates.
        let kept = BATCHES_KEPT as i32;
        for i in 1..=kept + 1 {
            s.record(&header(7, 1, i, 1, 10 + i64::from(i)), None, 3);
        }
        assert_eq!(s.get(7).map(|e| e.batches.len()), Some(BATCHES_KEPT));
        assert!(matches!(
            s.check(&header(7, 1, 1, 1, 99)),
            Err(SequenceError::Duplicate {
                first: 1,
                last: 1,
                ..
            })
        ));
        assert!(matches!(
            s.check(&header(7, 1, kept + 1, 1, 99)),
            Ok(Verdict::Duplicate(_))
        ));
        // Beyond the last written: a gap, not a duplicate.
        assert!(matches!(
            s.check(&header(7, 1, kept + 3, 1, 99)),
            Err(SequenceError::OutOfOrder { .. })
        ));
        let round = ProducerState::decode(&s.encode()).expect("snapshot");
        assert_eq!(round, s);
        let mut bad = s.encode();
        bad[7] ^= 1;
        assert!(ProducerState::decode(&bad).is_none());
        s.forget_from(15 + i64::from(kept) - 5);
        assert_eq!(
            s.get(7)
                .and_then(|e| e.batches.back())
                .map(|b| b.first_offset),
            Some(14 + i64::from(kept) - 5)
        );
        assert_eq!(
            s.expire(3 + DEFAULT_EXPIRATION_MS, DEFAULT_EXPIRATION_MS),
            1
        );
        assert!(s.is_empty());
    }
}
