//! Building and reading the records inside an *uncompressed* record batch, for the broker's
//! own internal logs (committed offsets) and for the log cleaner. Client batches are decoded
//! only by the cleaner, never on produce or fetch.
//!
//! Invariant: `RecordWalk` checks every length against the batch before using it and stops
//! at the first inconsistency; it never panics on any input.

use super::batch::{self, HEADER_LEN};

/// One record: key and value, either may be null.
pub type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
/// A record read back: offset, key, value.
pub type OffsetRecord<'a> = (i64, Option<&'a [u8]>, Option<&'a [u8]>);

/// Appends `v` as a zigzag varint (Kafka's record encoding).
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends `b` as a varint length and the bytes (-1 for `None`).
pub fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
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
    let producer = (producer_id, producer_epoch, base_sequence);
    // Uncompressed: sealing cannot fail.
    seal_records(&body, n, timestamp, super::codec::Codec::None, producer).unwrap_or_default()
}

/// A magic-2 batch around the records section `section` (`n` records with offset deltas
/// 0..n, all stamped `timestamp`), compressed with `codec`, carrying an idempotent
/// producer's (id, epoch, first sequence) — (-1, -1, -1) for none.
pub fn seal_records(
    section: &[u8],
    n: i32,
    timestamp: i64,
    codec: super::codec::Codec,
    (producer_id, producer_epoch, base_sequence): (i64, i16, i32),
) -> Result<Vec<u8>, super::codec::CodecError> {
    let compressed = super::codec::compress(codec, section)?;
    let mut b = vec![0u8; HEADER_LEN];
    b.extend(compressed);
    let h = batch::BatchHeader {
        base_offset: 0,
        size: 0,
        leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: codec.attributes(),
        last_offset_delta: n - 1,
        base_timestamp: timestamp,
        max_timestamp: timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        record_count: n,
    };
    batch::write_header(&h, &mut b);
    batch::seal(&mut b);
    Ok(b)
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

/// A header in a record: its key and value (`None`: null).
pub type Header<'a> = (&'a [u8], Option<&'a [u8]>);

/// The headers of a record's headers section ([`RawRecord::headers`]); `None` if it does
/// not decode exactly (count, then each key and value, nothing after).
pub fn decode_headers(section: &[u8]) -> Option<Vec<Header<'_>>> {
    let mut c = Cur { b: section, pos: 0 };
    let n = c.varint()?;
    // Each header takes at least two bytes: the count cannot claim more than that.
    if n < 0 || n as usize > section.len() / 2 {
        return None;
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let k = c.bytes()??;
        let v = c.bytes()?;
        out.push((k, v));
    }
    (c.pos == section.len()).then_some(out)
}

/// A record's headers (its [`RawRecord::headers`] section) as owned names and values; none
/// if the section does not decode. Names that are not UTF-8 are shown lossily.
pub fn owned_headers(section: &[u8]) -> Vec<(String, Option<Vec<u8>>)> {
    decode_headers(section)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                v.map(<[u8]>::to_vec),
            )
        })
        .collect()
}

/// One record of a batch's (decompressed) records section, located but not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// The whole record, its length prefix included: copy it to keep the record as it is.
    pub bytes: &'a [u8],
    pub offset_delta: i64,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The headers section as written (count, then each key and value), undecoded.
    pub headers: &'a [u8],
}

/// Walks the records of a records section (the bytes after a batch header, decompressed),
/// at most `count` of them. Stops at the first inconsistency, an offset delta out of order or
/// past `lastOffsetDelta` included (a compacted batch keeps its records' deltas, so they
/// increase but may have gaps): `complete()` tells whether every record was read.
pub struct RecordWalk<'a> {
    c: Cur<'a>,
    left: i64,
    broken: bool,
    prev_delta: i64,
    max_delta: i64,
}

impl<'a> RecordWalk<'a> {
    /// The records of `section`, the decompressed records of a batch with header `h`.
    pub fn new(section: &'a [u8], h: &batch::BatchHeader) -> Self {
        RecordWalk {
            c: Cur { b: section, pos: 0 },
            left: i64::from(h.record_count.max(0)),
            broken: false,
            prev_delta: -1,
            max_delta: i64::from(h.last_offset_delta),
        }
    }

    /// All `count` records were read and they filled the section exactly.
    pub fn complete(&self) -> bool {
        !self.broken && self.left == 0 && self.c.pos == self.c.b.len()
    }

    fn record(&mut self) -> Option<RawRecord<'a>> {
        let start = self.c.pos;
        let len = self.c.varint()?;
        let body = self.c.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| body.checked_add(l))?;
        if end > self.c.b.len() {
            return None;
        }
        self.c.b.get(self.c.pos)?;
        self.c.pos += 1; // attributes
        let timestamp_delta = self.c.varint()?;
        let offset_delta = self.c.varint()?;
        if offset_delta <= self.prev_delta || offset_delta > self.max_delta {
            return None;
        }
        self.prev_delta = offset_delta;
        let key = self.c.bytes()?;
        let value = self.c.bytes()?;
        if self.c.pos > end {
            return None;
        }
        let headers = &self.c.b[self.c.pos..end];
        self.c.pos = end;
        Some(RawRecord {
            bytes: &self.c.b[start..end],
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        })
    }
}

impl<'a> Iterator for RecordWalk<'a> {
    type Item = RawRecord<'a>;
    fn next(&mut self) -> Option<RawRecord<'a>> {
        if self.left == 0 || self.broken {
            return None;
        }
        let r = self.record();
        match r {
            Some(_) => self.left -= 1,
            None => self.broken = true,
        }
        r
    }
}

/// The records of one whole, uncompressed batch as (offset, key, value). Compressed or
/// malformed batches yield nothing past the first inconsistency.
pub fn read_records(b: &[u8]) -> Vec<OffsetRecord<'_>> {
    let Ok(h) = batch::parse_header(b) else {
        return Vec::new();
    };
    if h.attributes & 0x07 != 0 || b.len() < h.size {
        return Vec::new();
    }
    RecordWalk::new(&b[HEADER_LEN..h.size], &h)
        .map(|r| (h.base_offset + r.offset_delta, r.key, r.value))
        .collect()
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
