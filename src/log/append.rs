//! The write side of a log: validating a producer's batches, checking idempotent
//! producers' sequences, assigning offsets and queuing behind the writer, and answering
//! once written (or, for a retried batch, with its original offsets).
//!
//! Invariants: batches are queued in offset order and recorded in the producer state as
//! they are queued; nothing is queued while a truncation runs; an append is answered only
//! after its write (and, when asked, its fdatasync) completed.

use futures::channel::oneshot;
use tracing::info;

use super::batch::{self, BatchError, BatchHeader};
use super::producer_state::{self, Verdict};
use super::writer::run_writer;
use super::{
    now_ms, txn_index, validate, AppendInfo, Enqueued, FlushPolicy, Log, LogError,
    MAX_PENDING_BYTES,
};

impl Log {
    /// Waits while a truncation is under way (its producer state and segment end are being
    /// rebuilt: nothing may be checked against them or written behind them) and while the
    /// queue behind the writer is full. Each wait ends at the next write or when the
    /// truncation ends. The caller queues without awaiting after this.
    pub(super) async fn wait_for_room(&self) {
        loop {
            let truncating = self.inner.truncating.get();
            if !truncating && self.inner.state.borrow().pending.buf.len() < MAX_PENDING_BYTES {
                return;
            }
            self.inner.written.notified().await;
        }
    }

    /// Validates every batch in `records` (magic 2, CRC-32C, dense offsets, every record's
    /// framing: [`validate::check_records`]), assigns offsets
    /// and appends them. Nothing is written if any batch is invalid. Resolves once the data
    /// is written to the page cache.
    pub async fn append(&self, records: &[u8]) -> Result<AppendInfo, LogError> {
        self.append_with(records, false).await
    }

    /// Like [`Log::append`]; with `durable` (acks=all) and the `Always` flush policy, it
    /// resolves only after the data is fdatasynced.
    pub async fn append_with(&self, records: &[u8], durable: bool) -> Result<AppendInfo, LogError> {
        let queued = self.enqueue(records, durable).await?;
        self.finish(queued).await
    }

    /// The first half of an append: validates `records`, waits while the queue behind the
    /// writer is full, then assigns offsets and queues the batches. Appends enqueued one
    /// after another get offsets in that order; [`Log::finish`] waits for the write.
    pub async fn enqueue(&self, records: &[u8], durable: bool) -> Result<Enqueued, LogError> {
        self.enqueue_without(records, durable, &[]).await
    }

    /// Like [`Log::enqueue`], but each batch is stored without the records `drop` names
    /// (batch index in `records`, offset delta): the batch keeps its offsets and its
    /// producer's sequence range, as a compacted batch does, and one left with no record
    /// keeps its header alone. Validation and duplicate detection see the batches as sent.
    /// (Schema validation's dead-letter mode.)
    pub async fn enqueue_without(
        &self,
        records: &[u8],
        durable: bool,
        drop: &[(usize, i64)],
    ) -> Result<Enqueued, LogError> {
        let max = self.inner.state.borrow().config.max_batch_bytes;
        let mut headers = Vec::new();
        let mut pos = 0usize;
        while pos < records.len() {
            let h = batch::validate_incoming(&records[pos..])?;
            if h.size > max {
                return Err(LogError::TooLarge { size: h.size, max });
            }
            validate::check_records(&records[pos..pos + h.size], &h)?;
            headers.push((pos, h));
            pos += h.size;
        }
        if headers.is_empty() {
            return Err(BatchError::Truncated {
                have: 0,
                need: batch::HEADER_LEN,
            }
            .into());
        }
        self.wait_for_room().await;
        let idempotent = headers.iter().any(|(_, h)| h.producer_id >= 0);
        if idempotent && headers.len() > 1 {
            return Err(LogError::MultipleIdempotentBatches);
        }
        if idempotent {
            let h = &headers[0].1;
            let (verdict, known) = {
                let st = self.inner.state.borrow();
                (
                    st.producers.check(h)?,
                    st.producers.get(h.producer_id).is_some(),
                )
            };
            if let Verdict::Duplicate(rec) = verdict {
                let truncations = self.inner.truncations.get();
                return Ok(Enqueued::Duplicate(h.producer_id, rec, truncations));
            }
            if !known && h.base_sequence != 0 {
                // Once per producer and partition: tracked from here on.
                info!(
                    dir = %self.inner.dir.display(), producer = h.producer_id,
                    sequence = h.base_sequence,
                    "a producer this partition has no state for is taken at its sequence"
                );
            }
        }
        let now = if idempotent { now_ms() } else { 0 };
        if drop.is_empty() {
            let (rx, info) = self.queue(records, &headers, durable, true, now);
            return Ok(Enqueued::Queued(rx, info));
        }
        let (kept, kept_headers) = without(records, &headers, drop)?;
        let (rx, info) = self.queue(&kept, &kept_headers, durable, true, now);
        Ok(Enqueued::Queued(rx, info))
    }

    /// Queues validated batches behind the writer at the next offsets. `stamp` (a leader's
    /// append): each gets its offsets and this log's leader epoch written in; otherwise (a
    /// follower's) they keep the ones they carry, which the caller checked follow on.
    pub(super) fn queue(
        &self,
        records: &[u8],
        headers: &[(usize, BatchHeader)],
        durable: bool,
        stamp: bool,
        now: i64,
    ) -> (oneshot::Receiver<Result<(), LogError>>, AppendInfo) {
        let (rx, info, spawn) = {
            let mut st = self.inner.state.borrow_mut();
            let st = &mut *st;
            let base = st.next_offset;
            let mut next = base;
            for (at, h) in headers {
                let start = st.pending.buf.len();
                st.pending
                    .buf
                    .extend_from_slice(&records[*at..*at + h.size]);
                let mut stored = *h;
                if stamp {
                    batch::stamp(
                        &mut st.pending.buf[start..start + h.size],
                        next,
                        st.leader_epoch,
                    );
                    stored.base_offset = next;
                    stored.leader_epoch = st.leader_epoch;
                }
                st.epochs.assign(stored.leader_epoch, stored.base_offset);
                let marker = txn_index::marker_of(&records[*at..*at + h.size], h);
                st.producers.record(&stored, marker, now);
                st.pending.batches.push((start, stored));
                next = stored.last_offset() + 1;
            }
            st.next_offset = next;
            let (tx, rx) = oneshot::channel();
            let durable = durable && st.config.flush == FlushPolicy::Always;
            st.pending.waiters.push((tx, durable));
            let spawn = !st.writer_active;
            st.writer_active = true;
            (
                rx,
                AppendInfo {
                    base_offset: base,
                    last_offset: next - 1,
                },
                spawn,
            )
        };
        if spawn {
            let inner = self.inner.clone();
            crate::runtime::spawn_local(async move { run_writer(inner).await });
        }
        (rx, info)
    }

    /// The second half of an append: resolves once the write (and, for a durable append
    /// under `flush=always`, its fdatasync) is done.
    pub async fn finish(&self, queued: Enqueued) -> Result<AppendInfo, LogError> {
        match queued {
            Enqueued::Duplicate(pid, rec, truncations) => {
                self.await_duplicate(pid, rec, truncations).await
            }
            Enqueued::Queued(rx, info) => match rx.await {
                Ok(Ok(())) => Ok(info),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(LogError::Aborted),
            },
        }
    }

    /// Answers a retried batch with its original offsets once they are written.
    async fn await_duplicate(
        &self,
        pid: i64,
        rec: producer_state::BatchRecord,
        truncations: u64,
    ) -> Result<AppendInfo, LogError> {
        // Bounded: each wait ends at the next write; the original is either written (high
        // watermark passes it) or failed (forgotten by the producer state). A truncation
        // meanwhile may have cut it: the client is told to retry, and its retry is checked
        // against the rebuilt state.
        loop {
            if self.inner.truncating.get() || self.inner.truncations.get() != truncations {
                return Err(LogError::Aborted);
            }
            let written = self.inner.written.notified();
            {
                let st = self.inner.state.borrow();
                if st.high_watermark > rec.last_offset {
                    return Ok(AppendInfo {
                        base_offset: rec.first_offset,
                        last_offset: rec.last_offset,
                    });
                }
                let known = st
                    .producers
                    .get(pid)
                    .is_some_and(|e| e.batches.iter().any(|b| *b == rec));
                if !known {
                    return Err(LogError::Aborted);
                }
            }
            written.await;
        }
    }
}

/// Batches laid out in one buffer, with each one's position and header.
type Laid = (Vec<u8>, Vec<(usize, BatchHeader)>);

/// The batches of `records` (validated, at `headers`) without the records `drop` names
/// (batch index, offset delta), and their new headers.
fn without(
    records: &[u8],
    headers: &[(usize, BatchHeader)],
    drop: &[(usize, i64)],
) -> Result<Laid, LogError> {
    use super::cleaner::{filter_batch, Filtered};
    let mut out = Vec::with_capacity(records.len());
    let mut out_headers = Vec::with_capacity(headers.len());
    for (i, (at, h)) in headers.iter().enumerate() {
        let b = &records[*at..*at + h.size];
        let gone: Vec<i64> = drop
            .iter()
            .filter(|(bi, _)| *bi == i)
            .map(|(_, d)| *d)
            .collect();
        let rebuilt = if gone.is_empty() {
            None
        } else {
            match filter_batch(b, h, |_, r| !gone.contains(&r.offset_delta)).0 {
                Filtered::Unchanged => None,
                Filtered::Rewritten(v) => Some(v),
                Filtered::Empty => Some(header_only(b)),
            }
        };
        let bytes = rebuilt.as_deref().unwrap_or(b);
        let nh = batch::validate(bytes)?;
        out_headers.push((out.len(), nh));
        out.extend_from_slice(bytes);
    }
    Ok((out, out_headers))
}

/// Batch `b` with no records: its header (offsets, producer, sequence range) alone,
/// uncompressed.
fn header_only(b: &[u8]) -> Vec<u8> {
    let mut out = b[..batch::HEADER_LEN].to_vec();
    let attributes = i16::from_be_bytes([out[21], out[22]]) & !0x07;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[57..61].copy_from_slice(&0i32.to_be_bytes());
    batch::seal(&mut out);
    out
}
