//! Opening a log: finding its segments, finishing an interrupted compaction swap, clearing
//! deleted-segment leftovers, recovering the active segment's tail, and rebuilding the
//! idempotent-producer state from the newest snapshot plus the batches after it.
//!
//! Invariant: after `open` the in-memory state describes exactly the whole, valid batches on
//! disk; every repair made is reported as a line for the caller to log.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use super::epochs::EpochCache;
use super::producer_state::ProducerState;
use super::segment::{self, Segment};
use super::writer::{producer_state_file, read_log_start};
use super::{cleaner, now_ms, Inner, Log, LogConfig, LogError, Pending, State};
use crate::notify::Notify;

impl Log {
    /// Opens (or creates) the log in `dir`, recovering the active segment's tail. Returns the
    /// log and one line per repair made.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<(Log, Vec<String>), LogError> {
        Self::open_with(dir, config, false).await
    }

    /// Like [`Log::open`]; `clean` (the broker shut down cleanly) lets the active segment be
    /// scanned from its last indexed batch instead of from its start.
    pub async fn open_with(
        dir: &Path,
        config: LogConfig,
        clean: bool,
    ) -> Result<(Log, Vec<String>), LogError> {
        std::fs::create_dir_all(dir)?;
        let mut report = cleaner::recover_swaps(dir)?;
        let leftovers = segment::remove_deleted(dir)?;
        if leftovers > 0 {
            report.push(format!("removed {leftovers} file(s) of deleted segments"));
        }
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(b) = stem.parse::<i64>() {
                    bases.push(b);
                }
            }
        }
        bases.sort_unstable();
        let now = now_ms();
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, base) in bases.iter().enumerate() {
            let next = bases.get(i + 1).copied();
            let (seg, rep) = Segment::open(
                dir,
                *base,
                next,
                config.index_interval_bytes,
                config.max_batch_bytes,
                now,
                clean,
            )
            .await?;
            report.extend(rep);
            segments.push(seg);
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0, now).await?);
        }
        let log_start_offset = read_log_start(dir)
            .unwrap_or(0)
            .max(segments[0].base_offset)
            .min(segments.last().map(|s| s.next_offset).unwrap_or(0));
        let end = segments.last().map(|s| s.next_offset).unwrap_or(0);
        let state = State {
            segments,
            log_start_offset,
            next_offset: end,
            high_watermark: end,
            pending: Pending::new(),
            writer_active: false,
            syncs: Vec::new(),
            syncer_active: false,
            config,
            producers: ProducerState::default(),
            last_expiry_ms: now,
            unflushed_records: 0,
            last_flush_ms: now,
            cleaner_checkpoint: cleaner::read_checkpoint(dir),
            leader_epoch: 0,
            epochs: EpochCache::empty(dir),
            committed: None,
        };
        let log = Log {
            inner: Rc::new(Inner {
                dir: dir.to_path_buf(),
                state: RefCell::new(state),
                written: Notify::new(),
                closed: Default::default(),
                cleaner_busy: Default::default(),
                truncating: Default::default(),
                truncations: Default::default(),
                damaged: Default::default(),
            }),
        };
        log.recover_producers(&mut report).await?;
        log.recover_epochs(&mut report).await?;
        Ok((log, report))
    }

    /// Loads the leader-epoch cache and trims it to the log. The cache is written before
    /// the first batch of a new epoch, so it can only run ahead of the log (trimmed here).
    /// No file: the log was written before epochs were kept, all by epoch 0. A damaged file
    /// is rebuilt from the batches' headers.
    async fn recover_epochs(&self, report: &mut Vec<String>) -> Result<(), LogError> {
        let dir = self.inner.dir.clone();
        let (end, start) = (self.written_end(), self.log_start_offset());
        let mut cache = match EpochCache::load(&dir) {
            Ok(c) => c,
            Err(e) => {
                report.push(format!("{e}; rebuilding it from the log"));
                let mut c = EpochCache::empty(&dir);
                let max_batch = self.inner.state.borrow().config.max_batch_bytes;
                for (file, pos, size) in self.scan_starts(start).await? {
                    segment::scan_batches(&file, pos, size, max_batch, |_, h| {
                        c.assign(h.leader_epoch.max(0), h.base_offset.max(start));
                    })
                    .await?;
                }
                c
            }
        };
        if cache.entries().is_empty() && end > start {
            cache.assign(0, start);
        }
        cache.truncate_from_end(end);
        cache.truncate_from_start(start);
        let mut st = self.inner.state.borrow_mut();
        st.leader_epoch = cache.latest_epoch().unwrap_or(0);
        st.epochs = cache;
        Ok(())
    }

    /// Rebuilds the idempotent-producer state: the newest snapshot at or below the end of
    /// the log, then every batch after it.
    pub(super) async fn recover_producers(&self, report: &mut Vec<String>) -> Result<(), LogError> {
        let dir = self.inner.dir.clone();
        let (end, start) = (self.written_end(), self.log_start_offset());
        let mut snaps = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().to_string();
            if let Some(off) = name
                .strip_suffix(".snapshot")
                .and_then(|s| s.parse::<i64>().ok())
            {
                snaps.push(off);
            }
        }
        snaps.sort_unstable();
        let mut from = start;
        let mut state = ProducerState::default();
        for off in snaps.iter().rev().filter(|o| **o <= end && **o >= start) {
            let path = dir.join(producer_state_file(*off));
            match std::fs::read(&path)
                .ok()
                .and_then(|b| ProducerState::decode(&b))
            {
                Some(s) => {
                    state = s;
                    from = *off;
                    break;
                }
                None => report.push(format!(
                    "producer snapshot {} is damaged; using an older one",
                    path.display()
                )),
            }
        }
        let segs = self.scan_starts(from).await?;
        let max_batch = self.inner.state.borrow().config.max_batch_bytes;
        let now = now_ms();
        for (file, pos, size) in segs {
            segment::scan_whole_batches(&file, pos, size, max_batch, |_, h, b| {
                if h.base_offset >= from {
                    state.record(h, super::txn_index::marker_of(b, h), now);
                }
            })
            .await?;
        }
        state.forget_from(end);
        state.txns.trim_before(start);
        self.inner.state.borrow_mut().producers = state;
        Ok(())
    }
}
