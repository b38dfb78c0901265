//! The write side of a log: the writer task that drains the append queue into sequential
//! io_uring writes, group-commit fsyncs, segment rolls, and the small durable files beside
//! the segments (producer snapshots, the log start offset).
//!
//! Invariants: only the writer task writes segment data; a failed write is cut back and fails
//! everything queued behind it, so the log never has a hole or an unacknowledged tail. A
//! durable append is answered only after an fdatasync that *started after its write
//! completed*; that fdatasync runs in a syncer task beside the writer, so the next write is
//! issued while the previous round's sync is in flight (appends never queue behind a sync).

use std::io;
use std::path::Path;
use std::rc::Rc;

use tracing::{error, info};

use super::file::LogFile;
use super::segment::{self, Segment};
use super::{now_ms, FlushPolicy, Inner, LogError, Pending};

/// Drains the pending queue: one write per round of everything queued, rolling segments as
/// needed. Exits when the queue is empty.
pub(super) async fn run_writer(inner: Rc<Inner>) {
    loop {
        let roll = {
            let mut st = inner.state.borrow_mut();
            if st.pending.buf.is_empty() {
                st.writer_active = false;
                return;
            }
            let cfg = &st.config;
            let Some(active) = st.segments.last() else {
                st.writer_active = false;
                return;
            };
            let span = st.next_offset - active.base_offset;
            active.size > 0
                && (active.size + st.pending.buf.len() as u64 > cfg.segment_bytes
                    || now_ms() - active.created_ms > cfg.segment_ms
                    || span > i64::from(u32::MAX / 2))
        };
        if roll {
            if let Err(e) = roll_segment(&inner).await {
                error!(dir = %inner.dir.display(), "segment roll failed: {e}");
                fail_pending(&inner, &e);
                continue;
            }
        }
        let (buf, batches, waiters, file, pos) = {
            let mut st = inner.state.borrow_mut();
            let p = std::mem::replace(&mut st.pending, Pending::new());
            let Some(active) = st.segments.last() else {
                st.writer_active = false;
                return;
            };
            (p.buf, p.batches, p.waiters, active.log.clone(), active.size)
        };
        // A new epoch's first offset is made durable before any batch of it is written, so
        // the cache never lags the log (recovery trims what runs ahead). Once per epoch.
        let persisted = inner.state.borrow_mut().epochs.persist();
        if let Err(e) = persisted {
            error!(dir = %inner.dir.display(), "leader-epoch cache write failed: {e}");
            for (w, _) in waiters {
                let _ = w.send(Err(LogError::Io(io::Error::new(e.kind(), e.to_string()))));
            }
            fail_pending(&inner, &e);
            continue;
        }
        let len = buf.len() as u64;
        match file.write_all_at(buf, pos).await {
            Ok(()) => {
                {
                    let mut st = inner.state.borrow_mut();
                    let interval = st.config.index_interval_bytes;
                    let mut hw = st.high_watermark;
                    if let Some(active) = st.segments.last_mut() {
                        for (at, h) in &batches {
                            active.track(pos + *at as u64, h, interval);
                            hw = h.last_offset() + 1;
                        }
                        active.size = pos + len;
                    }
                    st.unflushed_records += hw - st.high_watermark;
                    st.high_watermark = hw;
                    let now = now_ms();
                    if now - st.last_expiry_ms > 60_000 {
                        st.last_expiry_ms = now;
                        let ttl = st.config.producer_expiration_ms;
                        let n = st.producers.expire(now, ttl);
                        if n > 0 {
                            info!(dir = %inner.dir.display(), expired = n, "expired idempotent producers");
                        }
                    }
                }
                let (durable, acked): (Vec<_>, Vec<_>) = waiters.into_iter().partition(|w| w.1);
                for (w, _) in acked {
                    let _ = w.send(Ok(()));
                }
                inner.written.notify_all();
                persist_indexes(&inner);
                let due = {
                    let st = inner.state.borrow();
                    st.config.flush == FlushPolicy::Interval
                        && st.unflushed_records >= st.config.flush_messages
                };
                if !durable.is_empty() || due {
                    // Group commit: one fdatasync, in the syncer, for every durable append
                    // written before it starts; the writer goes on with the next round.
                    let durable = durable.into_iter().map(|(w, _)| w).collect();
                    queue_sync(&inner, &file, durable);
                }
            }
            Err(e) => {
                error!(dir = %inner.dir.display(), "append of {len} bytes at {pos} failed: {e}");
                if let Err(e2) = file.truncate(pos).await {
                    error!(dir = %inner.dir.display(), "could not cut failed append: {e2}");
                }
                for (w, _) in waiters {
                    let _ = w.send(Err(LogError::Io(io::Error::new(e.kind(), e.to_string()))));
                }
                fail_pending(&inner, &e);
            }
        }
    }
}

/// Hands `file` (just written) and the durable appends it holds to the syncer task.
fn queue_sync(inner: &Rc<Inner>, file: &LogFile, waiters: Vec<super::Waiter>) {
    let spawn = {
        let mut st = inner.state.borrow_mut();
        match st.syncs.iter_mut().find(|(f, _)| f.same(file)) {
            Some((_, ws)) => ws.extend(waiters),
            None => st.syncs.push((file.clone(), waiters)),
        }
        !std::mem::replace(&mut st.syncer_active, true)
    };
    if spawn {
        let inner = inner.clone();
        crate::runtime::spawn_local(async move { run_syncer(inner).await });
    }
}

/// fdatasyncs what was queued, answering its durable appends, until nothing is queued.
/// Everything taken in one round was written before the round's syncs start.
async fn run_syncer(inner: Rc<Inner>) {
    // Each iteration takes what is queued (bounded by the appends behind the writer).
    loop {
        let round = {
            let mut st = inner.state.borrow_mut();
            if st.syncs.is_empty() {
                st.syncer_active = false;
                return;
            }
            std::mem::take(&mut st.syncs)
        };
        for (file, waiters) in round {
            let r = flush(&inner, &file).await;
            for w in waiters {
                let _ = w.send(
                    r.as_ref()
                        .map(|_| ())
                        .map_err(|e| LogError::Io(io::Error::new(e.kind(), e.to_string()))),
                );
            }
        }
    }
}

/// Fails everything queued (their offsets assumed the failed write) and rewinds offsets.
fn fail_pending(inner: &Inner, e: &io::Error) {
    let waiters = {
        let mut st = inner.state.borrow_mut();
        st.next_offset = st.high_watermark;
        let hw = st.high_watermark;
        st.producers.forget_from(hw);
        st.epochs.truncate_from_end(hw);
        std::mem::replace(&mut st.pending, Pending::new()).waiters
    };
    for (w, _) in waiters {
        let _ = w.send(Err(LogError::Io(io::Error::new(e.kind(), e.to_string()))));
    }
    inner.written.notify_all();
}

/// fdatasyncs `file` (the active segment) and resets the unflushed counters.
pub(super) async fn flush(inner: &Inner, file: &LogFile) -> io::Result<()> {
    let started = now_ms();
    let r = file.sync().await;
    match &r {
        Ok(()) => {
            let mut st = inner.state.borrow_mut();
            st.unflushed_records = 0;
            st.last_flush_ms = started;
        }
        Err(e) => error!(dir = %inner.dir.display(), "fdatasync failed: {e}"),
    }
    r
}

/// Writes the index entries the last write added, in a task of its own: the next data
/// write does not wait for them. Each task's entries have their own file range (reserved
/// under the borrow), so tasks may finish in any order; index files are a cache of the log
/// that recovery checks and rebuilds.
fn persist_indexes(inner: &Rc<Inner>) {
    let work = {
        let mut st = inner.state.borrow_mut();
        st.segments.last_mut().map(|s| s.take_index_work())
    };
    if let Some(work) = work.filter(|w| !w.is_empty()) {
        let dir = inner.dir.clone();
        crate::runtime::spawn_local(async move {
            if let Err(e) = work.run().await {
                error!(dir = %dir.display(), "index write failed (rebuilt on recovery): {e}");
            }
        });
    }
}

async fn roll_segment(inner: &Inner) -> io::Result<()> {
    let (seal, base) = {
        let mut st = inner.state.borrow_mut();
        let hw = st.high_watermark;
        let seal = st.segments.last_mut().map(|s| s.take_seal_work());
        (seal, hw)
    };
    if let Some(seal) = seal {
        seal.run().await?;
    }
    let seg = Segment::create(&inner.dir, base, now_ms()).await?;
    info!(dir = %inner.dir.display(), base_offset = base, "rolled segment");
    // The producer state as of the roll. Batches queued behind the writer are already
    // recorded in it; their entries are dropped again if they are not in the log on
    // recovery (`forget_from` the recovered end), so the snapshot stays safe.
    let snapshot = inner.state.borrow().producers.encode();
    inner.state.borrow_mut().segments.push(seg);
    write_snapshot(&inner.dir, base, snapshot)
        .await
        .map_err(|e| match e {
            LogError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
    Ok(())
}

const LOG_START_FILE: &str = "log-start-offset";

/// The log start offset recorded by DeleteRecords, if any.
pub(super) fn read_log_start(dir: &Path) -> Option<i64> {
    read_offset_file(dir, LOG_START_FILE)
}

/// The offset stored in `dir/name` by [`write_offset_file`], if any.
pub(super) fn read_offset_file(dir: &Path, name: &str) -> Option<i64> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Records the log start offset durably.
pub(super) fn write_log_start(dir: &Path, offset: i64) -> io::Result<()> {
    write_offset_file(dir, LOG_START_FILE, offset)
}

/// Writes one offset to `dir/name` durably (temp file, fsync, rename, fsync of the
/// directory).
pub(super) fn write_offset_file(dir: &Path, name: &str, offset: i64) -> io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(offset.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// fsyncs a directory, making renames and removals in it durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

pub(super) fn producer_state_file(offset: i64) -> String {
    segment::file_name(offset, "snapshot")
}

/// Writes `<offset>.snapshot` durably and removes all but the two newest snapshots.
pub(super) async fn write_snapshot(
    dir: &Path,
    offset: i64,
    bytes: Vec<u8>,
) -> Result<(), LogError> {
    let path = dir.join(producer_state_file(offset));
    let f = LogFile::open(&path).await?;
    f.truncate(0).await?;
    f.write_all_at(bytes, 0).await?;
    f.sync().await?;
    let mut snaps: Vec<i64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".snapshot")
                .and_then(|s| s.parse::<i64>().ok())
        })
        .collect();
    snaps.sort_unstable();
    let keep = snaps.len().saturating_sub(2);
    for old in &snaps[..keep] {
        let _ = std::fs::remove_file(dir.join(producer_state_file(*old)));
    }
    Ok(())
}
