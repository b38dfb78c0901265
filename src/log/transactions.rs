//! A log's side of transactions: writing a coordinator's COMMIT/ABORT marker, and what a
//! read_committed fetch needs — the last stable offset and the aborted transactions.
//!
//! Invariant: a marker is appended like any batch (queued in offset order, stamped, and
//! recorded in the producer state, whose transaction index the LSO comes from); a marker
//! of an epoch older than the producer's current one is refused.

use super::batch;
use super::producer_state::SequenceError;
use super::txn_index::{self, Marker};
use super::{now_ms, AppendInfo, Log, LogError};

/// Aborted transactions one fetch answer names at most (each is 16 bytes on the wire).
pub const MAX_ABORTED_PER_FETCH: usize = 100_000;

/// A producer as DescribeProducers shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerView {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// First offset of its open transaction here, or -1.
    pub txn_start_offset: i64,
}

impl Log {
    /// Appends `pid`'s transaction marker at `epoch` (a coordinator's WriteTxnMarkers):
    /// its transaction on this partition ends. `durable`: as an acks=all append.
    pub async fn append_marker(
        &self,
        pid: i64,
        epoch: i16,
        m: Marker,
        coordinator_epoch: i32,
        durable: bool,
    ) -> Result<AppendInfo, LogError> {
        let b = txn_index::marker_batch(pid, epoch, m, coordinator_epoch, now_ms());
        let h = batch::validate(&b)?;
        self.wait_for_room().await;
        {
            let st = self.inner.state.borrow();
            if let Some(e) = st.producers.get(pid) {
                if epoch < e.epoch {
                    return Err(SequenceError::InvalidEpoch {
                        pid,
                        got: epoch,
                        current: e.epoch,
                    }
                    .into());
                }
            }
        }
        let (rx, info) = self.queue(&b, &[(0, h)], durable, true, now_ms());
        self.finish(super::Enqueued::Queued(rx, info)).await
    }

    /// The last stable offset: below it every transaction is decided (and its marker under
    /// the high watermark).
    pub fn last_stable_offset(&self) -> i64 {
        self.inner
            .state
            .borrow_mut()
            .read_bounds(super::Isolation::Committed)
            .1
    }

    /// The aborted transactions a read_committed fetch from `from` that read below `upper`
    /// must name, as (producer id, first offset).
    pub fn aborted_txns(&self, from: i64, upper: i64) -> Vec<(i64, i64)> {
        self.inner
            .state
            .borrow()
            .producers
            .txns
            .aborted_in(from, upper, MAX_ABORTED_PER_FETCH)
    }

    /// Aborted transactions with batches in `[from, to)`: (producer id, first, marker).
    pub fn aborted_ranges(&self, from: i64, to: i64) -> Vec<(i64, i64, i64)> {
        self.inner
            .state
            .borrow()
            .producers
            .txns
            .aborted_ranges(from, to)
    }

    /// The producers this partition keeps state for (DescribeProducers), at most `max`.
    pub fn producers(&self, max: usize) -> Vec<ProducerView> {
        let st = self.inner.state.borrow();
        st.producers
            .iter()
            .take(max)
            .map(|(pid, e)| ProducerView {
                producer_id: pid,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_append_ms,
                txn_start_offset: st.producers.txns.open_of(pid).unwrap_or(-1),
            })
            .collect()
    }
}
