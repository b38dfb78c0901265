//! Kafka record batch (magic 2) framing: parse and validate the 61-byte batch header and
//! its CRC-32C, and stamp the broker-assigned base offset.
//!
//! Invariant: this module reads and writes only the batch *header*; it never decompresses or
//! decodes the records inside, so compressed batches are stored and served byte for byte.

use thiserror::Error;

/// Bytes of the fixed batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` ends: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
/// Attribute bit: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: the batch is a control batch (transaction marker).
pub const ATTR_CONTROL: i16 = 0x20;

/// Why a batch was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch truncated: {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    #[error("unsupported record batch magic {0} (only magic 2 is stored)")]
    BadMagic(i8),
    #[error("invalid batch length {0}")]
    BadLength(i32),
    #[error("CRC mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    Crc { expected: u32, actual: u32 },
    #[error("inconsistent header: record count {count}, last offset delta {delta}")]
    BadCounts { count: i32, delta: i32 },
    #[error("control batches (transaction markers) are written by coordinators, not producers")]
    Control,
    #[error("a transactional batch must carry a producer id")]
    Transactional,
}

/// The fixed header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total size of the batch on disk, header included.
    pub size: usize,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
    /// Number of offsets the batch occupies.
    pub fn offset_span(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads the header at the start of `buf` without checking the CRC. `buf` may hold only part
/// of the batch (at least [`HEADER_LEN`] bytes).
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            have: buf.len(),
            need: HEADER_LEN,
        });
    }
    let batch_length = be_i32(buf, 8);
    let magic = buf[16] as i8;
    if magic != 2 {
        return Err(BatchError::BadMagic(magic));
    }
    if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(batch_length));
    }
    Ok(BatchHeader {
        base_offset: be_i64(buf, 0),
        size: LOG_OVERHEAD + batch_length as usize,
        leader_epoch: be_i32(buf, 12),
        magic,
        crc: be_i32(buf, 17) as u32,
        attributes: be_i16(buf, 21),
        last_offset_delta: be_i32(buf, 23),
        base_timestamp: be_i64(buf, 27),
        max_timestamp: be_i64(buf, 35),
        producer_id: be_i64(buf, 43),
        producer_epoch: be_i16(buf, 51),
        base_sequence: be_i32(buf, 53),
        record_count: be_i32(buf, 57),
    })
}

/// Parses the header and checks that the whole batch is present and its CRC-32C matches.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_header(buf)?;
    if buf.len() < h.size {
        return Err(BatchError::Truncated {
            have: buf.len(),
            need: h.size,
        });
    }
    let actual = crc32c::crc32c(&buf[CRC_START..h.size]);
    if actual != h.crc {
        return Err(BatchError::Crc {
            expected: h.crc,
            actual,
        });
    }
    if h.last_offset_delta < 0 || h.record_count < 0 {
        return Err(BatchError::BadCounts {
            count: h.record_count,
            delta: h.last_offset_delta,
        });
    }
    Ok(h)
}

/// Stricter checks for a batch arriving from a producer: offsets must be dense.
pub fn validate_incoming(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = validate(buf)?;
    if h.record_count < 1 || i64::from(h.record_count) != h.offset_span() {
        return Err(BatchError::BadCounts {
            count: h.record_count,
            delta: h.last_offset_delta,
        });
    }
    if h.attributes & ATTR_CONTROL != 0 {
        return Err(BatchError::Control);
    }
    if h.attributes & ATTR_TRANSACTIONAL != 0 && h.producer_id < 0 {
        return Err(BatchError::Transactional);
    }
    Ok(h)
}

/// Writes the fields of `h` into the first [`HEADER_LEN`] bytes of `buf`, except
/// `batchLength` and the CRC, which [`seal`] writes once the records follow (`h.size` and
/// `h.crc` are not used).
pub fn write_header(h: &BatchHeader, buf: &mut [u8]) {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&h.base_offset.to_be_bytes());
    put(&0i32.to_be_bytes()); // batchLength: seal
    put(&h.leader_epoch.to_be_bytes());
    put(&[h.magic as u8]);
    put(&0u32.to_be_bytes()); // crc: seal
    put(&h.attributes.to_be_bytes());
    put(&h.last_offset_delta.to_be_bytes());
    put(&h.base_timestamp.to_be_bytes());
    put(&h.max_timestamp.to_be_bytes());
    put(&h.producer_id.to_be_bytes());
    put(&h.producer_epoch.to_be_bytes());
    put(&h.base_sequence.to_be_bytes());
    put(&h.record_count.to_be_bytes());
}

/// Finishes a batch assembled in `buf` (61-byte header, then the records section): writes
/// its `batchLength` from the buffer's length and its CRC-32C. `buf` holds exactly one batch
/// of at least [`HEADER_LEN`] bytes.
pub fn seal(buf: &mut [u8]) {
    let len = (buf.len() - LOG_OVERHEAD) as i32;
    buf[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// A whole batch: a header claiming `count` records with `attributes` (codec bits), then
/// `section` as it is (already compressed if the attributes say so), sealed. No producer
/// id, timestamps 0: for the broker's own tests, tools and benchmarks.
pub fn assemble(section: &[u8], count: i32, attributes: i16) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    b.extend_from_slice(section);
    let h = BatchHeader {
        base_offset: 0,
        size: 0,
        leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes,
        last_offset_delta: count - 1,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: count,
    };
    write_header(&h, &mut b);
    seal(&mut b);
    b
}

/// Writes the broker-assigned base offset and leader epoch into a batch. Neither field is
/// covered by the CRC, so the batch stays valid.
pub fn stamp(buf: &mut [u8], base_offset: i64, leader_epoch: i32) {
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
    buf[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Iterates over the whole, valid batches at the start of `buf`, stopping at the first byte
/// that is not one (a torn or corrupt tail). Yields `(position, header)`.
pub struct BatchScan<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Why the scan stopped early, if it did.
    pub stopped: Option<BatchError>,
    verify_crc: bool,
}

impl<'a> BatchScan<'a> {
    pub fn new(buf: &'a [u8], verify_crc: bool) -> Self {
        BatchScan {
            buf,
            pos: 0,
            stopped: None,
            verify_crc,
        }
    }
    /// Bytes consumed by whole batches so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchScan<'_> {
    type Item = (usize, BatchHeader);
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() || self.stopped.is_some() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let r = if self.verify_crc {
            validate(rest)
        } else {
            parse_header(rest).and_then(|h| {
                if rest.len() < h.size {
                    Err(BatchError::Truncated {
                        have: rest.len(),
                        need: h.size,
                    })
                } else {
                    Ok(h)
                }
            })
        };
        match r {
            Ok(h) => {
                let at = self.pos;
                self.pos += h.size;
                Some((at, h))
            }
            Err(e) => {
                self.stopped = Some(e);
                None
            }
        }
    }
}

#[cfg(test)]
pub mod test_support {
    use crate::log::records::build_producer_batch;

    /// A valid uncompressed magic-2 batch with `count` records of `value_len` bytes.
    pub fn make_batch(base_offset: i64, count: i32, timestamp: i64, value_len: usize) -> Vec<u8> {
        make_producer_batch(base_offset, count, timestamp, value_len, -1, -1, -1)
    }

    /// Like [`make_batch`], from an idempotent producer.
    pub fn make_producer_batch(
        base_offset: i64,
        count: i32,
        timestamp: i64,
        value_len: usize,
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        let values: Vec<Vec<u8>> = (0..count)
            .map(|i| vec![b'a' + (i % 26) as u8; value_len])
            .collect();
        let records: Vec<_> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
        let mut b = build_producer_batch(&records, timestamp, producer_id, epoch, base_sequence);
        super::stamp(&mut b, base_offset, 0);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::make_batch;
    use super::*;

    #[test]
    fn valid_batch_parses_and_stamp_keeps_crc() {
        let mut b = make_batch(0, 3, 1000, 10);
        let h = validate_incoming(&b).expect("valid");
        assert_eq!(h.record_count, 3);
        assert_eq!(h.size, b.len());
        stamp(&mut b, 42, 7);
        let h = validate(&b).expect("still valid");
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 44);
        assert_eq!(h.leader_epoch, 7);
    }

    #[test]
    fn flipped_byte_fails_crc() {
        let mut b = make_batch(0, 2, 1000, 10);
        let n = b.len();
        b[n - 3] ^= 0xff;
        assert!(matches!(validate(&b), Err(BatchError::Crc { .. })));
    }

    #[test]
    fn scan_stops_at_torn_tail() {
        let mut buf = make_batch(0, 2, 1, 5);
        let first = buf.len();
        buf.extend(make_batch(2, 2, 1, 5));
        buf.truncate(buf.len() - 4);
        let mut scan = BatchScan::new(&buf, true);
        assert_eq!(scan.by_ref().count(), 1);
        assert_eq!(scan.position(), first);
        assert!(matches!(scan.stopped, Some(BatchError::Truncated { .. })));
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..200 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = validate(&junk);
            let _ = BatchScan::new(&junk, true).count();
        }
    }
}
