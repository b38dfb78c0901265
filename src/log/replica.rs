//! The log as a replica sees it: the leader epoch its appends are stamped with, where an
//! epoch ends (for a follower that must truncate, KIP-101/KIP-279), and a follower's
//! append of the leader's batches at the offsets they already carry.
//!
//! Invariants: a follower append never reassigns offsets or epochs — the stored bytes are
//! the leader's — and it must start exactly at this log's end; a batch whose CRC or framing
//! is wrong, or that leaves a gap or overlap, is refused whole and nothing is written.

use super::batch::{self, BatchError, BatchHeader};
use super::{AppendInfo, Log, LogError};

impl Log {
    /// The epoch this log stamps on its appends.
    pub fn leader_epoch(&self) -> i32 {
        self.inner.state.borrow().leader_epoch
    }

    /// Makes this replica the leader for `epoch`: its appends from now on carry it (the
    /// cache records where it starts with the first of them). An epoch older than the
    /// newest one the log holds is ignored, so epochs never go backwards.
    pub fn set_leader_epoch(&self, epoch: i32) {
        let mut st = self.inner.state.borrow_mut();
        let newest = st.epochs.latest_epoch().unwrap_or(0).max(st.leader_epoch);
        if epoch >= newest {
            st.leader_epoch = epoch;
        }
    }

    /// The newest epoch in this log's batches, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.state.borrow().epochs.latest_epoch()
    }

    /// KIP-279: the largest epoch ≤ `epoch` this log holds and the offset where it ends
    /// (the next epoch's start, or the written end for the newest); `None` when `epoch`
    /// is older than all of them.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let st = self.inner.state.borrow();
        st.epochs.end_offset_for(epoch, st.high_watermark)
    }

    /// The next offset an append gets (written or queued).
    pub fn log_end_offset(&self) -> i64 {
        self.inner.state.borrow().next_offset
    }

    /// A follower's append: `records` are whole batches from the leader's log, stored
    /// unchanged at the offsets they carry, which must start at this log's end and follow
    /// on without gaps. Resolves once written (and fdatasynced when `durable` under
    /// `flush=always`).
    pub async fn append_replica(
        &self,
        records: &[u8],
        durable: bool,
    ) -> Result<AppendInfo, LogError> {
        let headers = self.check_replica_batches(records)?;
        // Backpressure like a leader's append: each wait ends at the next write.
        while self.inner.state.borrow().pending.buf.len() >= super::MAX_PENDING_BYTES {
            self.inner.written.notified().await;
        }
        let expected = self.log_end_offset();
        match headers.first() {
            Some((_, h)) if h.base_offset == expected => {}
            Some((_, h)) => {
                return Err(LogError::NotAtEnd {
                    base: h.base_offset,
                    end: expected,
                })
            }
            None => unreachable_empty()?,
        }
        let (rx, info) = self.queue(records, &headers, durable, false, super::now_ms());
        self.finish(super::Enqueued::Queued(rx, info)).await
    }

    /// Validates a follower's batches: each whole, CRC-valid, within `max.message.bytes`,
    /// each starting right after the one before.
    fn check_replica_batches(&self, records: &[u8]) -> Result<Vec<(usize, BatchHeader)>, LogError> {
        let max = self.inner.state.borrow().config.max_batch_bytes;
        let mut headers: Vec<(usize, BatchHeader)> = Vec::new();
        let mut pos = 0usize;
        // Bounded: each batch advances `pos` by its (nonzero) size.
        while pos < records.len() {
            let h = batch::validate(&records[pos..])?;
            if h.size > max {
                return Err(LogError::TooLarge { size: h.size, max });
            }
            if h.last_offset_delta < 0 || h.leader_epoch < 0 {
                return Err(BatchError::BadCounts {
                    count: h.record_count,
                    delta: h.last_offset_delta,
                }
                .into());
            }
            if let Some((_, prev)) = headers.last() {
                if h.base_offset != prev.last_offset() + 1 || h.leader_epoch < prev.leader_epoch {
                    return Err(LogError::NotAtEnd {
                        base: h.base_offset,
                        end: prev.last_offset() + 1,
                    });
                }
            }
            headers.push((pos, h));
            pos += h.size;
        }
        if headers.is_empty() {
            unreachable_empty()?;
        }
        Ok(headers)
    }
}

/// An append of no batch at all.
fn unreachable_empty() -> Result<(), LogError> {
    Err(BatchError::Truncated {
        have: 0,
        need: batch::HEADER_LEN,
    }
    .into())
}
