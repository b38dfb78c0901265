//! The high watermark checkpoint: each shard writes the high watermarks of its replicated
//! partitions to `<data-dir>/replication-offsets-<shard>` every few seconds, and a replica
//! opened after a restart starts from it (capped by its log end) instead of exposing its
//! whole log before its followers (or its leader) have been heard from — Kafka's
//! `replication-offset-checkpoint`.
//!
//! Invariant: the checkpoint only ever lowers what a restarted replica shows; a missing or
//! damaged file means the log start (nothing visible until the replicas agree again).

use std::collections::HashMap;
use std::path::PathBuf;

use tracing::warn;

use crate::broker::shard::{PartitionKey, Shard};

/// Most lines read from a checkpoint file (more than any shard's partitions).
const MAX_LINES: usize = 1 << 20;

fn path(shard: &Shard) -> PathBuf {
    shard
        .cfg
        .data_dir
        .join(format!("replication-offsets-{}", shard.id))
}

/// The checkpointed high watermarks of this shard's partitions (empty if none or damaged).
pub fn load(shard: &Shard) -> HashMap<PartitionKey, i64> {
    let Ok(text) = std::fs::read_to_string(path(shard)) else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    for line in text.lines().take(MAX_LINES) {
        // "<high watermark> <partition> <topic>" (the topic last: it is the free text).
        let mut parts = line.splitn(3, ' ');
        let hw = parts.next().and_then(|v| v.parse::<i64>().ok());
        let p = parts.next().and_then(|v| v.parse::<i32>().ok());
        match (hw, p, parts.next()) {
            (Some(hw), Some(p), Some(t)) if !t.is_empty() => {
                out.insert((t.to_string(), p), hw);
            }
            _ => {
                warn!(file = %path(shard).display(), "damaged high watermark checkpoint; ignoring it");
                return HashMap::new();
            }
        }
    }
    out
}

/// Writes the high watermarks of this shard's replicated partitions if they changed since
/// the last write (temp file, fsync, rename).
pub fn write(shard: &Shard) {
    let mut now: Vec<(PartitionKey, i64)> = shard
        .open_logs()
        .into_iter()
        .filter_map(|(k, log)| log.committed().map(|_| (k, log.high_watermark())))
        .collect();
    now.sort();
    let mut last = shard.replication.checkpointed.borrow_mut();
    if *last == now {
        return;
    }
    let mut text = String::new();
    for ((t, p), hw) in &now {
        text.push_str(&format!("{hw} {p} {t}\n"));
    }
    let file = path(shard);
    let tmp = file.with_extension("tmp");
    let written = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &file)
    })();
    match written {
        Ok(()) => *last = now,
        Err(e) => warn!(file = %file.display(), "cannot write the high watermark checkpoint: {e}"),
    }
}
