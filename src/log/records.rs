//! Building and reading the records inside an *uncompressed* record batch, for the broker's
//! own internal logs (committed offsets). Client batches are never decoded.
//!
//! Invariant: `read_records` checks every length against the batch before using it and stops
//! at the first inconsistency; it never panics on any input.

use super::batch::{self, HEADER_LEN};

/// One record: key and value, either may be null.
pub type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
/// A record read back: offset, key, value.
pub type OffsetRecord<'a> = (i64, Option<&'a [u8]>, Option<&'a [u8]>);

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// An uncompressed magic-2 batch holding `records`, all stamped `timestamp`.
pub fn build_batch(records: &[Record<'_>], timestamp: i64) -> Vec<u8> {
    build_producer_batch(records, timestamp, -1, -1, -1)
}

/// Like [`build_batch`], carrying an idempotent producer's id, epoch and first sequence.
pub fn build_producer_batch(
    records: &[Record<'_>],
    timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        let mut r = vec![0u8];
        put_varint(&mut r, 0);
        put_varint(&mut r, i as i64);
        put_bytes(&mut r, *k);
        put_bytes(&mut r, *v);
        put_varint(&mut r, 0);
        put_varint(&mut body, r.len() as i64);
        body.extend(r);
    }
    let n = records.len() as i32;
    let mut b = Vec::with_capacity(HEADER_LEN + body.len());
    b.extend(0i64.to_be_bytes());
    b.extend(0i32.to_be_bytes());
    b.extend(0i32.to_be_bytes());
    b.push(2);
    b.extend(0u32.to_be_bytes());
    b.extend(0i16.to_be_bytes());
    b.extend((n - 1).to_be_bytes());
    b.extend(timestamp.to_be_bytes());
    b.extend(timestamp.to_be_bytes());
    b.extend(producer_id.to_be_bytes());
    b.extend(producer_epoch.to_be_bytes());
    b.extend(base_sequence.to_be_bytes());
    b.extend(n.to_be_bytes());
    b.extend(body);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn varint(&mut self) -> Option<i64> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            z |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        None
    }
    fn bytes(&mut self) -> Option<Option<&'a [u8]>> {
        let n = self.varint()?;
        if n < 0 {
            return Some(None);
        }
        let end = self.pos.checked_add(usize::try_from(n).ok()?)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(Some(s))
    }
}

/// The records of one whole, uncompressed batch as (offset, key, value). Compressed or
/// malformed batches yield nothing past the first inconsistency.
pub fn read_records(b: &[u8]) -> Vec<OffsetRecord<'_>> {
    let mut out = Vec::new();
    let Ok(h) = batch::parse_header(b) else {
        return out;
    };
    if h.attributes & 0x07 != 0 || b.len() < h.size {
        return out;
    }
    let mut c = Cur {
        b: &b[..h.size],
        pos: HEADER_LEN,
    };
    for _ in 0..h.record_count.max(0) {
        let Some(len) = c.varint() else { break };
        let start = c.pos;
        let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)) else {
            break;
        };
        if end > c.b.len() || c.b.get(c.pos).is_none() {
            break;
        }
        c.pos += 1; // attributes
        let (Some(_ts), Some(delta)) = (c.varint(), c.varint()) else {
            break;
        };
        let (Some(k), Some(v)) = (c.bytes(), c.bytes()) else {
            break;
        };
        out.push((h.base_offset + delta, k, v));
        c.pos = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let b = build_batch(
            &[
                (Some(b"k1"), Some(b"v1")),
                (None, None),
                (Some(b""), Some(b"x")),
            ],
            5,
        );
        assert!(batch::validate_incoming(&b).is_ok());
        let r = read_records(&b);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], (0, Some(&b"k1"[..]), Some(&b"v1"[..])));
        assert_eq!(r[1], (1, None, None));
        assert_eq!(r[2].2, Some(&b"x"[..]));
        for cut in 0..b.len() {
            let _ = read_records(&b[..cut]);
        }
        let mut junk = b.clone();
        for i in HEADER_LEN..junk.len() {
            junk[i] = 0xff;
            let _ = read_records(&junk);
        }
    }
}
