//! Message and record-batch generation: sizes (fixed or uniform), keys (none, uniform, zipf),
//! payloads that carry their intended send time for end-to-end latency, and magic-2 record
//! batches built into one reused buffer.
//!
//! Invariant: a value is at least [`STAMP_LEN`] bytes; its first 8 bytes are the intended
//! send time in microseconds (big-endian), read back by the consumer.

use shardlog::log::batch::{self, BatchHeader, HEADER_LEN};
use shardlog::log::codec::{self, Codec};
use shardlog::log::records::put_varint;

/// Bytes at the start of every value: intended send time (µs) and a sequence number.
pub const STAMP_LEN: usize = 16;

/// Message size distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizes {
    Fixed(usize),
    /// Uniform in `[min, max]`.
    Uniform(usize, usize),
}

impl std::str::FromStr for Sizes {
    type Err = String;
    /// `1024` or `100-2000`.
    fn from_str(s: &str) -> Result<Sizes, String> {
        let n = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad size {v:?}"))
                .and_then(|n| {
                    if n < STAMP_LEN {
                        Err(format!("message size must be at least {STAMP_LEN} bytes"))
                    } else {
                        Ok(n)
                    }
                })
        };
        match s.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (n(a)?, n(b)?);
                if a > b {
                    return Err(format!("size range {s:?} is empty"));
                }
                Ok(Sizes::Uniform(a, b))
            }
            None => Ok(Sizes::Fixed(n(s)?)),
        }
    }
}

impl std::fmt::Display for Sizes {
    /// As given on the command line: `1024` or `100-2000`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sizes::Fixed(n) => write!(f, "{n}"),
            Sizes::Uniform(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

impl Sizes {
    pub fn mean(&self) -> usize {
        match *self {
            Sizes::Fixed(n) => n,
            Sizes::Uniform(a, b) => (a + b) / 2,
        }
    }
    /// The next message size.
    pub fn draw(&self, rng: &mut Rng) -> usize {
        match *self {
            Sizes::Fixed(n) => n,
            Sizes::Uniform(a, b) => a + rng.below((b - a + 1) as u64) as usize,
        }
    }
    pub fn max(&self) -> usize {
        match *self {
            Sizes::Fixed(n) => n,
            Sizes::Uniform(_, b) => b,
        }
    }
}

/// Key distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Keys {
    /// No key: the sticky partitioner fills one partition's batch at a time.
    None,
    /// Keys drawn uniformly from `n` keys.
    Uniform(u64),
    /// Keys drawn from `n` keys with Zipf exponent `s` (key 0 hottest).
    Zipf(u64, f64),
}

impl std::str::FromStr for Keys {
    type Err = String;
    /// `none`, `uniform:N` or `zipf:N[:S]` (S defaults to 1.0).
    fn from_str(s: &str) -> Result<Keys, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let n = |i: usize| -> Result<u64, String> {
            parts
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("expected a key count in {s:?}"))
        };
        match parts[0] {
            "none" => Ok(Keys::None),
            "uniform" => Ok(Keys::Uniform(n(1)?)),
            "zipf" => {
                let e = match parts.get(2) {
                    Some(v) => v
                        .parse::<f64>()
                        .map_err(|_| format!("bad exponent {v:?}"))?,
                    None => 1.0,
                };
                Ok(Keys::Zipf(n(1)?, e))
            }
            _ => Err(format!("expected none, uniform:N or zipf:N[:S], got {s:?}")),
        }
    }
}

impl std::fmt::Display for Keys {
    /// As given on the command line: `none`, `uniform:N`, `zipf:N:S`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keys::None => write!(f, "none"),
            Keys::Uniform(n) => write!(f, "uniform:{n}"),
            Keys::Zipf(n, s) => write!(f, "zipf:{n}:{s}"),
        }
    }
}

/// xorshift64*: fast, seedable, good enough for load shapes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Draws keys: a Zipf table is a cumulative distribution searched by bisection.
pub struct KeyGen {
    keys: Keys,
    cdf: Vec<f64>,
}

/// Largest key space with a precomputed Zipf table.
const MAX_ZIPF_KEYS: u64 = 1 << 20;

impl KeyGen {
    pub fn new(keys: Keys) -> KeyGen {
        let cdf = match keys {
            Keys::Zipf(n, s) => {
                let n = n.min(MAX_ZIPF_KEYS);
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=n)
                    .map(|k| {
                        acc += 1.0 / (k as f64).powf(s);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                cdf
            }
            _ => Vec::new(),
        };
        KeyGen { keys, cdf }
    }

    /// The next key number, `None` for keyless messages.
    pub fn next(&self, rng: &mut Rng) -> Option<u64> {
        match self.keys {
            Keys::None => None,
            Keys::Uniform(n) => Some(rng.below(n)),
            Keys::Zipf(..) => {
                let u = rng.unit();
                Some(self.cdf.partition_point(|c| *c < u) as u64)
            }
        }
    }
}

/// Partition of a keyed message: FNV-1a of the key bytes, stable across runs.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % partitions.max(1) as u64) as i32
}

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

/// A record batch being filled for one partition.
pub struct BatchBuilder {
    records: Vec<u8>,
    count: i32,
    base_ts_ms: i64,
    max_ts_ms: i64,
    /// Intended send time (µs) of each message, for the ack latency.
    pub intended: Vec<u64>,
    /// Value bytes in the batch.
    pub value_bytes: u64,
}

impl BatchBuilder {
    pub fn new(capacity: usize) -> BatchBuilder {
        BatchBuilder {
            records: header_space(capacity),
            count: 0,
            base_ts_ms: -1,
            max_ts_ms: -1,
            intended: Vec::new(),
            value_bytes: 0,
        }
    }

    /// Bytes of records so far.
    pub fn bytes(&self) -> usize {
        self.records.len() - HEADER_LEN
    }

    /// Intended time of the first message (µs).
    pub fn first_intended(&self) -> Option<u64> {
        self.intended.first().copied()
    }

    /// Appends one record whose value is `len` bytes: the stamp, then `filler`.
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        len: usize,
        intended_us: u64,
        seq: u64,
        filler: &[u8],
    ) {
        let len = len.max(STAMP_LEN);
        let ts_ms = (intended_us / 1000) as i64;
        if self.count == 0 {
            self.base_ts_ms = ts_ms;
        }
        self.max_ts_ms = self.max_ts_ms.max(ts_ms);
        let ts_delta = ts_ms - self.base_ts_ms;
        let delta = i64::from(self.count);
        let key_len = key.map(|k| k.len() as i64).unwrap_or(-1);
        let body = 1
            + varint_len(ts_delta)
            + varint_len(delta)
            + varint_len(key_len)
            + key.map(<[u8]>::len).unwrap_or(0)
            + varint_len(len as i64)
            + len
            + 1;
        let r = &mut self.records;
        put_varint(r, body as i64);
        r.push(0);
        put_varint(r, ts_delta);
        put_varint(r, delta);
        put_varint(r, key_len);
        if let Some(k) = key {
            r.extend_from_slice(k);
        }
        put_varint(r, len as i64);
        r.extend_from_slice(&intended_us.to_be_bytes());
        r.extend_from_slice(&seq.to_be_bytes());
        let mut left = len - STAMP_LEN;
        // Bounded by `len`: each pass copies at least one byte of a non-empty filler.
        while left > 0 && !filler.is_empty() {
            let n = left.min(filler.len());
            r.extend_from_slice(&filler[..n]);
            left -= n;
        }
        r.resize(r.len() + left, 0);
        r.push(0); // no headers
        self.count += 1;
        self.intended.push(intended_us);
        self.value_bytes += len as u64;
    }

    /// The finished batch (compressed with `codec`), and the builder's intended times and
    /// value bytes. The builder is empty afterwards.
    pub fn finish(&mut self, codec: Codec) -> Result<(Vec<u8>, Vec<u64>, u64), codec::CodecError> {
        // Uncompressed, the records are already behind the header space: no copy.
        let capacity = self.records.capacity();
        let mut b = match codec {
            Codec::None => std::mem::replace(&mut self.records, header_space(capacity)),
            _ => {
                let section = codec::compress(codec, &self.records[HEADER_LEN..])?;
                self.records.truncate(HEADER_LEN);
                let mut b = header_space(HEADER_LEN + section.len());
                b.extend_from_slice(&section);
                b
            }
        };
        let h = BatchHeader {
            base_offset: 0,
            size: 0,
            leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: codec.attributes(),
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_ts_ms,
            max_timestamp: self.max_ts_ms,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: self.count,
        };
        batch::write_header(&h, &mut b);
        batch::seal(&mut b);
        self.count = 0;
        let value_bytes = std::mem::take(&mut self.value_bytes);
        Ok((b, std::mem::take(&mut self.intended), value_bytes))
    }
}

/// An empty buffer with room for a batch header in front.
fn header_space(capacity: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(capacity.max(HEADER_LEN));
    v.resize(HEADER_LEN, 0);
    v
}

/// Random printable filler (compresses roughly like text), generated once per worker.
pub fn filler(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardlog::log::records::RecordWalk;

    #[test]
    fn batches_are_valid_and_carry_their_stamps() {
        let mut rng = Rng::new(7);
        let fill = filler(&mut rng, 64);
        for codec in Codec::ALL {
            let mut b = BatchBuilder::new(1024);
            b.push(Some(b"k1"), 100, 1_000_123, 0, &fill);
            b.push(None, 16, 1_002_000, 1, &fill);
            b.push(Some(b""), 300, 1_003_000, 2, &fill);
            let (bytes, intended, value_bytes) = b.finish(codec).expect("finish");
            assert_eq!(b.bytes(), 0);
            assert_eq!(intended, vec![1_000_123, 1_002_000, 1_003_000]);
            assert_eq!(value_bytes, 416);
            let h = batch::validate_incoming(&bytes).expect("valid batch");
            assert_eq!(h.record_count, 3);
            shardlog::log::validate::check_records(&bytes, &h).expect("records valid");
            let (stored, section) = codec::batch_records(&bytes, &h, 1 << 20).expect("section");
            assert_eq!(stored, codec);
            let recs: Vec<_> = RecordWalk::new(&section, &h).collect();
            assert_eq!(recs.len(), 3);
            assert_eq!(recs[0].key, Some(&b"k1"[..]));
            assert_eq!(recs[1].key, None);
            let v = recs[2].value.expect("value");
            assert_eq!(v.len(), 300);
            assert_eq!(u64::from_be_bytes(v[..8].try_into().expect("8")), 1_003_000);
            assert_eq!(u64::from_be_bytes(v[8..16].try_into().expect("8")), 2);
        }
    }

    #[test]
    fn distributions_parse_and_zipf_is_skewed() {
        assert_eq!("1024".parse::<Sizes>(), Ok(Sizes::Fixed(1024)));
        assert_eq!("100-200".parse::<Sizes>(), Ok(Sizes::Uniform(100, 200)));
        assert!("8".parse::<Sizes>().is_err());
        assert!("300-200".parse::<Sizes>().is_err());
        assert_eq!("zipf:100".parse::<Keys>(), Ok(Keys::Zipf(100, 1.0)));
        assert!("zipf:0".parse::<Keys>().is_err());
        let g = KeyGen::new(Keys::Zipf(100, 1.0));
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[g.next(&mut rng).expect("key") as usize] += 1;
        }
        // Zipf(1) over 100 keys: key 0 takes ~19%, key 99 ~0.2%.
        assert!(counts[0] > 15_000 && counts[0] < 23_000, "{}", counts[0]);
        assert!(counts[99] < 600);
        let u = KeyGen::new(Keys::Uniform(10));
        assert!((0..1000).all(|_| u.next(&mut rng).is_some_and(|k| k < 10)));
    }
}
