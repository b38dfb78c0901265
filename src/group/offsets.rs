//! Committed offsets as records of the internal offsets log: encoding, and the replay that
//! rebuilds the in-memory map on startup.
//!
//! Record key: `[1u8][group: u16 len + bytes][topic: u16 len + bytes][partition: i32]`.
//! Record value: `[1u8][offset i64][leader epoch i32][commit ms i64][metadata: i32 len
//! (-1 = null) + bytes]`; a null value is a tombstone (the offset was deleted).

use std::collections::HashMap;
use std::path::Path;

use tracing::warn;

use super::state::Committed;
use crate::log::checksum;
use crate::log::records::read_records;
use crate::log::{Log, LogError};

/// (group, topic, partition)
pub type OffsetKey = (String, String, i32);

pub fn encode_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + group.len() + topic.len());
    k.push(1);
    k.extend((group.len() as u16).to_be_bytes());
    k.extend(group.as_bytes());
    k.extend((topic.len() as u16).to_be_bytes());
    k.extend(topic.as_bytes());
    k.extend(partition.to_be_bytes());
    k
}

pub fn encode_value(c: &Committed) -> Vec<u8> {
    let mut v = Vec::with_capacity(25 + c.metadata.as_ref().map_or(0, |m| m.len()));
    v.push(1);
    v.extend(c.offset.to_be_bytes());
    v.extend(c.leader_epoch.to_be_bytes());
    v.extend(c.commit_ms.to_be_bytes());
    match &c.metadata {
        None => v.extend((-1i32).to_be_bytes()),
        Some(m) => {
            v.extend((m.len() as i32).to_be_bytes());
            v.extend(m.as_bytes());
        }
    }
    v
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Some(h)
}

fn string(b: &mut &[u8]) -> Option<String> {
    let n = take(b, 2)?;
    let n = u16::from_be_bytes([n[0], n[1]]) as usize;
    String::from_utf8(take(b, n)?.to_vec()).ok()
}

pub fn decode_key(mut b: &[u8]) -> Option<OffsetKey> {
    if take(&mut b, 1)? != [1] {
        return None;
    }
    let group = string(&mut b)?;
    let topic = string(&mut b)?;
    let p = take(&mut b, 4)?;
    Some((group, topic, i32::from_be_bytes([p[0], p[1], p[2], p[3]])))
}

pub fn decode_value(mut b: &[u8]) -> Option<Committed> {
    if take(&mut b, 1)? != [1] {
        return None;
    }
    let i64_at = |b: &mut &[u8]| {
        take(b, 8).map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            i64::from_be_bytes(a)
        })
    };
    let offset = i64_at(&mut b)?;
    let e = take(&mut b, 4)?;
    let leader_epoch = i32::from_be_bytes([e[0], e[1], e[2], e[3]]);
    let commit_ms = i64_at(&mut b)?;
    let l = take(&mut b, 4)?;
    let len = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
    let metadata = if len < 0 {
        None
    } else {
        Some(String::from_utf8(take(&mut b, len as usize)?.to_vec()).ok()?)
    };
    Some(Committed {
        offset,
        leader_epoch,
        metadata,
        commit_ms,
    })
}

/// Folds the records of `log` in `[from, until)` into `map`: the latest value of each key
/// wins, tombstones delete. Reads in bounded chunks; bounded by `until`.
pub async fn replay_into(
    log: &Log,
    map: &mut HashMap<OffsetKey, Committed>,
    from: i64,
    until: i64,
) -> Result<(), LogError> {
    let mut next = from.max(log.log_start_offset());
    while next < until {
        // Up to the written end: a new leader's log beyond its high watermark is the
        // partition's history from now on.
        let r = log
            .read_as(next, 8 << 20, true, crate::log::Isolation::Replica)
            .await?;
        let mut advanced = false;
        for (at, h) in crate::log::batch::BatchScan::new(&r.records, false) {
            if h.base_offset >= until {
                return Ok(());
            }
            for (off, k, v) in read_records(&r.records[at..at + h.size]) {
                if off < next {
                    continue;
                }
                let Some(key) = k.and_then(decode_key) else {
                    continue;
                };
                match v.and_then(decode_value) {
                    Some(c) => {
                        map.insert(key, c);
                    }
                    None => {
                        map.remove(&key);
                    }
                }
            }
            next = h.last_offset() + 1;
            advanced = true;
        }
        if !advanced {
            break;
        }
    }
    Ok(())
}

const SNAPSHOT_MAGIC: &[u8; 5] = b"SLOF1";

fn snapshot_name(offset: i64) -> String {
    format!("{offset:020}.offsets")
}

/// Snapshot file ([`checksum`] framing): magic, count, then (key, value) pairs with u32
/// lengths, then CRC-32C.
pub fn encode_snapshot(map: &HashMap<OffsetKey, Committed>) -> Vec<u8> {
    let mut out = SNAPSHOT_MAGIC.to_vec();
    out.extend((map.len() as u32).to_be_bytes());
    let mut keys: Vec<&OffsetKey> = map.keys().collect();
    keys.sort();
    for k in keys {
        let kb = encode_key(&k.0, &k.1, k.2);
        let vb = encode_value(&map[k]);
        out.extend((kb.len() as u32).to_be_bytes());
        out.extend(kb);
        out.extend((vb.len() as u32).to_be_bytes());
        out.extend(vb);
    }
    checksum::seal(&mut out);
    out
}

pub fn decode_snapshot(buf: &[u8]) -> Option<HashMap<OffsetKey, Committed>> {
    let body = checksum::open(buf, SNAPSHOT_MAGIC)?;
    let mut b = body;
    let n = take(&mut b, 4)?;
    let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
    let mut map = HashMap::with_capacity(n.min(body.len() / 16));
    for _ in 0..n {
        let kl = take(&mut b, 4)?;
        let k = take(
            &mut b,
            u32::from_be_bytes([kl[0], kl[1], kl[2], kl[3]]) as usize,
        )?;
        let vl = take(&mut b, 4)?;
        let v = take(
            &mut b,
            u32::from_be_bytes([vl[0], vl[1], vl[2], vl[3]]) as usize,
        )?;
        map.insert(decode_key(k)?, decode_value(v)?);
    }
    b.is_empty().then_some(map)
}

/// The newest intact snapshot in `dir`: (offset it covers up to, map).
fn latest_snapshot(dir: &Path) -> Option<(i64, HashMap<OffsetKey, Committed>)> {
    let mut offs: Vec<i64> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".offsets")
                .and_then(|s| s.parse().ok())
        })
        .collect();
    offs.sort_unstable();
    for off in offs.into_iter().rev() {
        match std::fs::read(dir.join(snapshot_name(off)))
            .ok()
            .and_then(|b| decode_snapshot(&b))
        {
            Some(map) => return Some((off, map)),
            None => warn!(dir = %dir.display(), offset = off, "damaged offsets snapshot ignored"),
        }
    }
    None
}

/// Rebuilds the committed offsets of an offsets partition: newest snapshot, then the
/// records after it.
pub async fn recover(log: &Log) -> Result<HashMap<OffsetKey, Committed>, LogError> {
    let (from, mut map) = latest_snapshot(log.dir()).unwrap_or_default();
    replay_into(log, &mut map, from, log.written_end()).await?;
    Ok(map)
}

/// Compacts an offsets partition: folds every closed segment into a snapshot taken at the
/// active segment's base, then deletes those segments and older snapshots. Runs only when a
/// segment has closed since the last snapshot. Returns the snapshot offset when it ran.
pub async fn compact(log: &Log) -> Result<Option<i64>, LogError> {
    let base = log.active_base();
    let (from, mut map) = latest_snapshot(log.dir()).unwrap_or_default();
    if base <= from || base <= log.log_start_offset() {
        return Ok(None);
    }
    replay_into(log, &mut map, from, base).await?;
    let dir = log.dir().to_path_buf();
    let path = dir.join(snapshot_name(base));
    let tmp = dir.join(format!("{}.tmp", snapshot_name(base)));
    let bytes = encode_snapshot(&map);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write()?;
    log.delete_segments_before(base)?;
    if from > 0 && from != base {
        let _ = std::fs::remove_file(dir.join(snapshot_name(from)));
    }
    Ok(Some(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_snapshot_then_replay_matches_full_history() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let cfg = crate::log::LogConfig {
                    segment_bytes: 2048,
                    ..Default::default()
                };
                let (log, _) = Log::open(&path, cfg.clone()).await.expect("open");
                let mut expected = HashMap::new();
                for i in 0..200i64 {
                    let key = ("g".to_string(), "t".to_string(), (i % 7) as i32);
                    let c = Committed {
                        offset: i,
                        leader_epoch: 0,
                        metadata: None,
                        commit_ms: i,
                    };
                    let k = encode_key(&key.0, &key.1, key.2);
                    let v = (i % 50 != 49).then(|| encode_value(&c));
                    let batch = crate::log::records::build_batch(&[(Some(&k), v.as_deref())], 0);
                    log.append(&batch).await.expect("append");
                    if v.is_some() {
                        expected.insert(key, c);
                    } else {
                        expected.remove(&key);
                    }
                }
                let segments = log.segment_count();
                assert!(segments > 3);
                let at = compact(&log).await.expect("compact").expect("ran");
                assert_eq!(log.segment_count(), 1);
                assert_eq!(log.log_start_offset(), at);
                assert_eq!(recover(&log).await.expect("recover"), expected);
                assert_eq!(compact(&log).await.expect("compact again"), None);
                drop(log);
                let (log, _) = Log::open(&path, cfg).await.expect("reopen");
                assert_eq!(recover(&log).await.expect("recover"), expected);
            })
            .expect("executor")
            .join()
            .expect("join");
    }

    #[test]
    fn key_value_round_trip() {
        let k = encode_key("g", "t", 3);
        assert_eq!(decode_key(&k), Some(("g".into(), "t".into(), 3)));
        let c = Committed {
            offset: 42,
            leader_epoch: 1,
            metadata: Some("meta".into()),
            commit_ms: 99,
        };
        assert_eq!(decode_value(&encode_value(&c)), Some(c));
        assert_eq!(decode_key(&k[..k.len() - 1]), None);
        assert_eq!(decode_value(&[1, 2, 3]), None);
    }
}
