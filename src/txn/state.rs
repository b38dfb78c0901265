//! One transactional id's state and the transitions Kafka allows between its states
//! (TransactionMetadata.scala): pure functions of the state and a request.

use std::collections::BTreeSet;

pub const NONE: i16 = 0;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const INVALID_TXN_STATE: i16 = 48;
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
pub const PRODUCER_FENCED: i16 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    /// Every state, in the order of its id.
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn from_id(id: i8) -> Option<TxnState> {
        Self::ALL.get(usize::try_from(id).ok()?).copied()
    }

    /// The name Kafka's admin APIs use (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        use TxnState::*;
        match self {
            Empty => "Empty",
            Ongoing => "Ongoing",
            PrepareCommit => "PrepareCommit",
            PrepareAbort => "PrepareAbort",
            CompleteCommit => "CompleteCommit",
            CompleteAbort => "CompleteAbort",
            Dead => "Dead",
            PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// A decision is made and its markers are (being) written.
    pub fn preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// No transaction is open: a new one may begin.
    pub fn idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions of the open (or deciding) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    /// When the open transaction began (-1: none).
    pub start_ms: i64,
}

/// What a request names as the producer, checked against the stored one.
pub fn check_producer(m: &TxnMeta, pid: i64, epoch: i16, fenced_code: i16) -> Result<(), i16> {
    if m.producer_id != pid {
        return Err(INVALID_PRODUCER_ID_MAPPING);
    }
    if m.epoch != epoch {
        return Err(fenced_code);
    }
    Ok(())
}

impl TxnMeta {
    /// After AddPartitionsToTxn/AddOffsetsToTxn: the transaction is open with `parts`
    /// added; `None` if nothing changes (all already in).
    pub fn add(&self, parts: &[(String, i32)], now: i64) -> Result<Option<TxnMeta>, i16> {
        if self.state.preparing() || self.state == TxnState::PrepareEpochFence {
            return Err(CONCURRENT_TRANSACTIONS);
        }
        if self.state == TxnState::Ongoing && parts.iter().all(|p| self.partitions.contains(p)) {
            return Ok(None);
        }
        let mut next = self.clone();
        if self.state.idle() {
            next.partitions.clear();
            next.start_ms = now;
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(parts.iter().cloned());
        next.last_update_ms = now;
        Ok(Some(next))
    }

    /// EndTxn: the decision to write (`Ok(Some)`), nothing to do because this is a retry
    /// of the decision already made (`Ok(None)`), or the error.
    pub fn end(&self, commit: bool, now: i64) -> Result<Option<TxnMeta>, i16> {
        use TxnState::*;
        match (self.state, commit) {
            (Ongoing, _) => {
                let mut next = self.clone();
                next.state = if commit { PrepareCommit } else { PrepareAbort };
                next.last_update_ms = now;
                Ok(Some(next))
            }
            (CompleteCommit, true) | (CompleteAbort, false) => Ok(None),
            (PrepareCommit, true) | (PrepareAbort, false) => Err(CONCURRENT_TRANSACTIONS),
            // Aborting with nothing open is harmless (a client aborting after an error
            // before any partition was added).
            (Empty, false) => Ok(None),
            _ => Err(INVALID_TXN_STATE),
        }
    }

    /// Complete* after the markers of a Prepare* state are written.
    pub fn completed(&self, now: i64) -> TxnMeta {
        let mut next = self.clone();
        next.state = if self.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        next.last_update_ms = now;
        next.start_ms = -1;
        next
    }

    /// The coordinator aborts the open transaction itself (timeout, or a new producer
    /// instance): PrepareAbort at the next epoch, so the old instance is fenced.
    pub fn fence_abort(&self, now: i64) -> TxnMeta {
        let mut next = self.clone();
        next.state = TxnState::PrepareAbort;
        next.epoch = self.epoch.saturating_add(1).min(i16::MAX - 1);
        next.last_update_ms = now;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(state: TxnState) -> TxnMeta {
        TxnMeta {
            producer_id: 5,
            epoch: 2,
            timeout_ms: 60_000,
            state,
            partitions: BTreeSet::new(),
            last_update_ms: 0,
            start_ms: -1,
        }
    }

    #[test]
    fn transitions_follow_kafka() {
        let p = vec![("t".to_string(), 0)];
        let open = meta(TxnState::Empty)
            .add(&p, 10)
            .expect("add")
            .expect("changed");
        assert_eq!(open.state, TxnState::Ongoing);
        assert_eq!(open.start_ms, 10);
        assert_eq!(open.add(&p, 11), Ok(None));
        let prep = open.end(true, 12).expect("end").expect("decided");
        assert_eq!(prep.state, TxnState::PrepareCommit);
        assert_eq!(prep.add(&p, 13), Err(CONCURRENT_TRANSACTIONS));
        assert_eq!(prep.end(true, 13), Err(CONCURRENT_TRANSACTIONS));
        assert_eq!(prep.end(false, 13), Err(INVALID_TXN_STATE));
        let done = prep.completed(14);
        assert_eq!(done.state, TxnState::CompleteCommit);
        assert!(done.partitions.is_empty());
        assert_eq!(done.end(true, 15), Ok(None));
        assert_eq!(done.end(false, 15), Err(INVALID_TXN_STATE));
        let fenced = open.fence_abort(20);
        assert_eq!((fenced.state, fenced.epoch), (TxnState::PrepareAbort, 3));
        assert_eq!(
            check_producer(&fenced, 5, 2, PRODUCER_FENCED),
            Err(PRODUCER_FENCED)
        );
        assert_eq!(
            check_producer(&fenced, 6, 3, PRODUCER_FENCED),
            Err(INVALID_PRODUCER_ID_MAPPING)
        );
        assert_eq!(check_producer(&fenced, 5, 3, PRODUCER_FENCED), Ok(()));
        assert_eq!(meta(TxnState::Empty).end(true, 1), Err(INVALID_TXN_STATE));
    }
}
