//! Record-by-record validation of a batch a producer sent, before it is stored: the framing
//! of every record, offset deltas exactly `0..n-1` ending at `lastOffsetDelta`, the record
//! count, a known codec, and compressed sections that decompress within a bounded budget.
//! A batch that passes can be read back record by record by every client.
//!
//! Invariants:
//! - The walk is streaming: a compressed section is decompressed through a small buffer
//!   and records are parsed as the bytes arrive; keys, values and headers are skipped, never
//!   copied. Only raw (unframed) snappy, which has no streaming form, is decompressed into
//!   one buffer, and that buffer is bounded by the same budget.
//! - No more than [`MAX_DECOMPRESSED_BYTES`] are produced from one batch (a "decompression
//!   bomb" is refused once it passes the budget, not after).
//! - Nothing here panics or loops unboundedly on any input.

use std::io::{self, BufRead, BufReader, Read};

use thiserror::Error;

use super::batch::{BatchHeader, HEADER_LEN};
use super::codec::{self, Codec, CodecError};

/// The most bytes a batch's records section may decompress to. Also bounds the work one
/// hostile batch can cost a shard.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
/// Buffer between a decompressor and the record parser.
const STREAM_BUFFER: usize = 32 << 10;
/// zstd windows larger than 2^24 bytes (16 MiB) are refused: clients use 2^21..2^23.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Why a batch's records were refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// The records cannot even be read: unknown codec, data that does not decompress, or a
    /// section past the decompression budget (Kafka: CORRUPT_MESSAGE).
    #[error("{0}")]
    Corrupt(String),
    /// The records are readable but wrong: framing, offsets, count (Kafka: INVALID_RECORD).
    #[error("record {index}: {what}")]
    Invalid { index: i32, what: String },
}

impl RecordError {
    fn invalid(index: i32, what: impl Into<String>) -> Self {
        RecordError::Invalid {
            index,
            what: what.into(),
        }
    }
}

impl From<CodecError> for RecordError {
    fn from(e: CodecError) -> Self {
        RecordError::Corrupt(e.to_string())
    }
}

/// Checks every record of the whole batch `b` (header `h`, already CRC-checked, with
/// `record_count == last_offset_delta + 1 >= 1`).
pub fn check_records(b: &[u8], h: &BatchHeader) -> Result<(), RecordError> {
    let section = &b[HEADER_LEN..h.size];
    match Codec::from_attributes(h.attributes)? {
        Codec::None => walk(section, h.record_count, usize::MAX),
        Codec::Gzip => walk_stream(flate2::read::GzDecoder::new(section), h.record_count),
        Codec::Lz4 => walk_stream(lz4_flex::frame::FrameDecoder::new(section), h.record_count),
        Codec::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(section).map_err(corrupt)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(corrupt)?;
            walk_stream(d, h.record_count)
        }
        Codec::Snappy => {
            let data = codec::decompress(Codec::Snappy, section, MAX_DECOMPRESSED_BYTES)?;
            walk(&data[..], h.record_count, usize::MAX)
        }
    }
}

fn corrupt(e: impl std::fmt::Display) -> RecordError {
    RecordError::Corrupt(format!("compressed records do not decompress: {e}"))
}

fn walk_stream(r: impl Read, count: i32) -> Result<(), RecordError> {
    let limited = r.take(MAX_DECOMPRESSED_BYTES as u64 + 1);
    walk(
        BufReader::with_capacity(STREAM_BUFFER, limited),
        count,
        MAX_DECOMPRESSED_BYTES,
    )
}

/// Parses `count` records from `r`, which must then be exhausted. `limit`: the most bytes
/// `r` may yield (it is cut one byte past it).
fn walk(r: impl BufRead, count: i32, limit: usize) -> Result<(), RecordError> {
    let mut p = Parser { r, read: 0 };
    let over = |p: &Parser<_>| p.read > limit as u64;
    for index in 0..count {
        match p.record(index) {
            Ok(()) => {}
            Err(_) if over(&p) => return Err(too_large()),
            Err(Fail::Io(e)) => return Err(corrupt(e)),
            Err(Fail::Eof) => {
                return Err(RecordError::invalid(
                    index,
                    format!("batch says {count} records, the section ends before this one"),
                ))
            }
            Err(Fail::Bad(what)) => return Err(RecordError::invalid(index, what)),
        }
    }
    let over = over(&p);
    match p.r.fill_buf() {
        Ok([]) => Ok(()),
        Ok(_) | Err(_) if over => Err(too_large()),
        Ok(rest) => Err(RecordError::invalid(
            count,
            format!(
                "bytes follow the last of {count} records ({} or more)",
                rest.len()
            ),
        )),
        Err(e) => Err(corrupt(e)),
    }
}

fn too_large() -> RecordError {
    RecordError::Corrupt(format!(
        "records decompress to more than {MAX_DECOMPRESSED_BYTES} bytes"
    ))
}

enum Fail {
    Eof,
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

struct Parser<R> {
    r: R,
    /// Bytes consumed so far.
    read: u64,
}

impl<R: BufRead> Parser<R> {
    fn byte(&mut self) -> Result<u8, Fail> {
        let b = *self.r.fill_buf()?.first().ok_or(Fail::Eof)?;
        self.r.consume(1);
        self.read += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<i64, Fail> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let byte = self.byte()?;
            z |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(Fail::Bad("varint longer than 10 bytes".into()))
    }

    /// Skips `n` bytes, which must all be there.
    fn skip(&mut self, mut n: u64) -> Result<(), Fail> {
        // Each iteration consumes at least one byte or returns.
        while n > 0 {
            let have = self.r.fill_buf()?.len() as u64;
            if have == 0 {
                return Err(Fail::Eof);
            }
            let k = have.min(n);
            self.r.consume(k as usize);
            self.read += k;
            n -= k;
        }
        Ok(())
    }

    /// A length-prefixed field; -1 is null where `nullable`.
    fn field(&mut self, what: &str, nullable: bool, left: u64) -> Result<(), Fail> {
        let n = self.varint()?;
        if n == -1 && nullable {
            return Ok(());
        }
        if n < 0 || n as u64 > left {
            return Err(Fail::Bad(format!("{what} length {n} is invalid")));
        }
        self.skip(n as u64)
    }

    /// One record: `length` varint, then exactly `length` bytes of attributes, timestamp
    /// delta, offset delta (must equal `index`), key, value and headers.
    fn record(&mut self, index: i32) -> Result<(), Fail> {
        let len = self.varint()?;
        if len < 6 {
            return Err(Fail::Bad(format!("record length {len} is invalid")));
        }
        let end = self.read + len as u64;
        let left = |p: &Self| end.saturating_sub(p.read);
        self.byte()?; // attributes: unused in magic 2
        self.varint()?; // timestamp delta: any value
        let delta = self.varint()?;
        if delta != i64::from(index) {
            return Err(Fail::Bad(format!("offset delta {delta}, expected {index}")));
        }
        self.field("key", true, left(self))?;
        self.field("value", true, left(self))?;
        let headers = self.varint()?;
        if headers < 0 || headers as u64 > left(self) / 2 {
            return Err(Fail::Bad(format!("header count {headers} is invalid")));
        }
        for _ in 0..headers {
            self.field("header key", false, left(self))?;
            self.field("header value", true, left(self))?;
        }
        if self.read != end {
            return Err(Fail::Bad(format!(
                "record length {len} does not match its fields ({} bytes)",
                len as u64 + self.read - end
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{self, validate_incoming};
    use crate::log::records::{build_batch, put_varint};

    /// A batch whose records section is `section` (compressed with `codec`), claiming
    /// `count` records.
    fn batch_with(section: &[u8], count: i32, codec: Codec) -> Vec<u8> {
        let z = codec::compress(codec, section).expect("compress");
        batch::assemble(&z, count, codec.attributes())
    }

    fn check(b: &[u8]) -> Result<(), RecordError> {
        let h = validate_incoming(b).expect("header");
        check_records(b, &h)
    }

    fn record(delta: i64, key: Option<&[u8]>, value: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut r = vec![0u8];
        put_varint(&mut r, 0);
        put_varint(&mut r, delta);
        match key {
            None => put_varint(&mut r, -1),
            Some(k) => {
                put_varint(&mut r, k.len() as i64);
                r.extend_from_slice(k);
            }
        }
        put_varint(&mut r, value.len() as i64);
        r.extend_from_slice(value);
        put_varint(&mut r, headers.len() as i64);
        for (k, v) in headers {
            put_varint(&mut r, k.len() as i64);
            r.extend_from_slice(k);
            put_varint(&mut r, v.len() as i64);
            r.extend_from_slice(v);
        }
        let mut out = Vec::new();
        put_varint(&mut out, r.len() as i64);
        out.extend(r);
        out
    }

    #[test]
    fn good_batches_pass_in_every_codec() {
        let mut section = Vec::new();
        for i in 0..100 {
            section.extend(record(i, Some(b"k"), &[7u8; 1000], &[(b"h", b"v")]));
        }
        for c in Codec::ALL {
            assert_eq!(check(&batch_with(&section, 100, c)), Ok(()), "{c:?}");
        }
        assert_eq!(
            check(&build_batch(&[(None, None), (Some(b""), None)], 1)),
            Ok(())
        );
    }

    #[test]
    fn poison_is_refused() {
        let one = record(0, None, b"v", &[]);
        let two = [record(0, None, b"a", &[]), record(1, None, b"b", &[])].concat();
        let cases: Vec<(&str, Vec<u8>, i32)> = vec![
            ("count says more", one.clone(), 2),
            ("count says fewer", two.clone(), 1),
            (
                "delta jumps",
                [one.clone(), record(1_000_000, None, b"x", &[])].concat(),
                2,
            ),
            ("delta repeats", [one.clone(), one.clone()].concat(), 2),
            ("varint runs on", vec![0xff; 20], 1),
            ("length past end", vec![0x7e, 0, 0, 0], 1),
            ("negative length", vec![0x01, 0, 0, 0], 1),
            (
                "key past record",
                record(0, Some(&[1; 50]), b"", &[])[..20].to_vec(),
                1,
            ),
            ("garbage", vec![0x0c, 1, 2, 3, 4, 5, 6], 1),
            (
                "negative header count",
                {
                    let mut r = vec![0u8, 0, 0, 1, 1];
                    r.push(0x03); // headers: -2
                    let mut out = vec![r.len() as u8 * 2];
                    out.extend(r);
                    out
                },
                1,
            ),
        ];
        for (name, section, count) in cases {
            for c in [Codec::None, Codec::Gzip, Codec::Zstd] {
                let b = batch_with(&section, count, c);
                assert!(
                    matches!(check(&b), Err(RecordError::Invalid { .. })),
                    "{name} {c:?}: {:?}",
                    check(&b)
                );
            }
        }
    }

    #[test]
    fn unknown_codecs_and_bad_compression_are_corrupt() {
        let section = record(0, None, b"v", &[]);
        for attr in 5..=7 {
            let mut b = batch_with(&section, 1, Codec::None);
            b[22] = attr;
            batch::seal(&mut b);
            assert!(
                matches!(check(&b), Err(RecordError::Corrupt(_))),
                "codec {attr}"
            );
        }
        for c in Codec::ALL.into_iter().skip(1) {
            let mut b = batch_with(&section, 1, Codec::None);
            b[22] = c.attributes() as u8;
            batch::seal(&mut b);
            assert!(check(&b).is_err(), "{c:?}");
        }
    }

    #[test]
    fn bombs_stop_at_the_budget() {
        // One record whose value is 80 MiB of zeros: the section is 80 MiB, compressed a few
        // hundred KiB.
        let section = record(0, None, &vec![0u8; 80 << 20], &[]);
        for c in [Codec::Gzip, Codec::Lz4, Codec::Zstd, Codec::Snappy] {
            let b = batch_with(&section, 1, c);
            assert!(b.len() < 8 << 20, "{c:?} {}", b.len());
            assert!(
                matches!(check(&b), Err(RecordError::Corrupt(_))),
                "{c:?}: {:?}",
                check(&b)
            );
        }
    }

    #[test]
    fn truncations_and_flips_never_panic() {
        let mut section = Vec::new();
        for i in 0..5 {
            section.extend(record(i, Some(b"key"), b"value", &[(b"h", b"")]));
        }
        for c in Codec::ALL {
            let b = batch_with(&section, 5, c);
            for i in HEADER_LEN..b.len() {
                let mut x = b.clone();
                x[i] ^= 0x5a;
                batch::seal(&mut x);
                let _ = check(&x);
            }
        }
    }
}
