//! Records of the `__transaction_state` log in Kafka's format (TransactionLogKey v0 and
//! TransactionLogValue v0): key = version, transactional id; value = producer id and
//! epoch, timeout, state, partitions, last update and start times. A null value removes
//! the id.

use std::collections::{BTreeSet, HashMap};

use super::state::{TxnMeta, TxnState};
use crate::log::batch::BatchScan;
use crate::log::records::read_records;
use crate::log::{Isolation, Log, LogError};

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len().min(i16::MAX as usize) as i16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

pub fn encode_key(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + id.len());
    out.extend_from_slice(&0i16.to_be_bytes());
    put_str(&mut out, id);
    out
}

pub fn encode_value(m: &TxnMeta) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&m.producer_id.to_be_bytes());
    out.extend_from_slice(&m.epoch.to_be_bytes());
    out.extend_from_slice(&m.timeout_ms.to_be_bytes());
    out.push(m.state as u8);
    // Partitions grouped by topic.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (t, p) in &m.partitions {
        match topics.last_mut() {
            Some((name, ps)) if *name == t.as_str() => ps.push(*p),
            _ => topics.push((t.as_str(), vec![*p])),
        }
    }
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (t, ps) in topics {
        put_str(&mut out, t);
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&m.last_update_ms.to_be_bytes());
    out.extend_from_slice(&m.start_ms.to_be_bytes());
    out
}

struct Cur<'a>(&'a [u8]);

impl Cur<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        a.try_into().ok()
    }
    fn i16(&mut self) -> Option<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take::<8>().map(i64::from_be_bytes)
    }
    fn str(&mut self) -> Option<String> {
        let n = usize::try_from(self.i16()?).ok()?;
        let (a, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        String::from_utf8(a.to_vec()).ok()
    }
}

pub fn decode_key(b: &[u8]) -> Option<String> {
    let mut c = Cur(b);
    if c.i16()? != 0 {
        return None;
    }
    c.str()
}

pub fn decode_value(b: &[u8]) -> Option<TxnMeta> {
    let mut c = Cur(b);
    if !(0..=1).contains(&c.i16()?) {
        return None;
    }
    let producer_id = c.i64()?;
    let epoch = c.i16()?;
    let timeout_ms = c.i32()?;
    let state = TxnState::from_id(c.take::<1>()?[0] as i8)?;
    let n = c.i32()?;
    let mut partitions = BTreeSet::new();
    for _ in 0..n.max(0) {
        let t = c.str()?;
        let k = c.i32()?;
        for _ in 0..k.max(0) {
            partitions.insert((t.clone(), c.i32()?));
        }
    }
    Some(TxnMeta {
        producer_id,
        epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms: c.i64()?,
        start_ms: c.i64()?,
    })
}

/// Replays a whole `__transaction_state` partition: the last value of each id. Reads in
/// bounded chunks up to the written end.
pub async fn replay(log: &Log) -> Result<HashMap<String, TxnMeta>, LogError> {
    let mut out = HashMap::new();
    let mut next = log.log_start_offset();
    while next < log.written_end() {
        let r = log.read_as(next, 8 << 20, true, Isolation::Replica).await?;
        let mut advanced = false;
        for (at, h) in BatchScan::new(&r.records, false) {
            for (off, key, value) in read_records(&r.records[at..at + h.size]) {
                if off < next {
                    continue;
                }
                let Some(id) = key.and_then(decode_key) else {
                    continue;
                };
                match value.and_then(decode_value) {
                    Some(m) => {
                        out.insert(id, m);
                    }
                    None => {
                        out.remove(&id);
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let m = TxnMeta {
            producer_id: 77,
            epoch: 4,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("a".to_string(), 1),
                ("a".to_string(), 3),
                ("b".to_string(), 0),
            ]
            .into_iter()
            .collect(),
            last_update_ms: 123,
            start_ms: 100,
        };
        assert_eq!(decode_value(&encode_value(&m)), Some(m.clone()));
        assert_eq!(decode_key(&encode_key("tx-1")).as_deref(), Some("tx-1"));
        let v = encode_value(&m);
        for cut in 0..v.len() {
            assert!(decode_value(&v[..cut]).is_none() || cut == v.len());
        }
    }
}
