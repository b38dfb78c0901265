//! Committed offsets as records of the internal offsets log: encoding, and the replay that
//! rebuilds the in-memory map on startup.
//!
//! Record key: `[1u8][group: u16 len + bytes][topic: u16 len + bytes][partition: i32]`.
//! Record value: `[1u8][offset i64][leader epoch i32][commit ms i64][metadata: i32 len
//! (-1 = null) + bytes]`; a null value is a tombstone (the offset was deleted).

use std::collections::HashMap;

use super::state::Committed;
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

/// Replays an offsets log from its start: the latest value of each key wins, tombstones
/// delete. Reads in bounded chunks; bounded by the log's end.
pub async fn replay(log: &Log) -> Result<HashMap<OffsetKey, Committed>, LogError> {
    let mut map = HashMap::new();
    let mut next = log.log_start_offset();
    let end = log.high_watermark();
    while next < end {
        let r = log.read(next, 8 << 20, true).await?;
        if r.records.is_empty() {
            break;
        }
        let mut pos = 0usize;
        let mut advanced = false;
        for (at, h) in crate::log::batch::BatchScan::new(&r.records, false) {
            for (_, k, v) in read_records(&r.records[at..at + h.size]) {
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
            pos = at + h.size;
            advanced = true;
        }
        if !advanced || pos == 0 {
            break;
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

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
