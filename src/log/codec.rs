//! Kafka's record-batch compression codecs (attribute bits 0-2), for the places the broker
//! looks inside a client batch: produce-time validation and the log cleaner reading keys.
//!
//! Invariants: decompression never produces more than the caller's limit (a batch that would
//! is refused, so a small "decompression bomb" cannot exhaust a shard's memory); nothing here
//! panics on any input. Batches are stored and fetched as sent: nothing is recompressed on
//! produce or fetch.

use std::io::{Read, Write};

use thiserror::Error;

use super::batch::{BatchHeader, HEADER_LEN};

/// Compression codec of a batch, from its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("unknown compression codec {0}")]
    Unknown(i16),
    #[error("decompressed batch exceeds {0} bytes")]
    TooLarge(usize),
    #[error("corrupt compressed data: {0}")]
    Corrupt(String),
}

/// xerial snappy-java framing, used by the Java client: magic, then version and
/// compatible-version (both 1), then blocks of `u32 length` + raw snappy.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER: usize = 16;
const XERIAL_BLOCK: usize = 32 << 10;

impl Codec {
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    /// The codec's name as Kafka's `compression.type` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// The codec Kafka's `compression.type` name `s` names.
    pub fn from_name(s: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The attribute bits (0-2) that name this codec.
    pub fn attributes(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    pub fn from_attributes(attributes: i16) -> Result<Codec, CodecError> {
        match attributes & 0x07 {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            n => Err(CodecError::Unknown(n)),
        }
    }
}

fn corrupt(e: impl std::fmt::Display) -> CodecError {
    CodecError::Corrupt(e.to_string())
}

/// Reads all of `r`, failing if it yields more than `limit` bytes.
fn read_bounded(r: impl Read, limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    if out.len() > limit {
        return Err(CodecError::TooLarge(limit));
    }
    Ok(out)
}

/// The codec of the whole batch `b` (header `h`) and its records section, decompressed to at
/// most `limit` bytes.
pub fn batch_records(
    b: &[u8],
    h: &BatchHeader,
    limit: usize,
) -> Result<(Codec, Vec<u8>), CodecError> {
    let codec = Codec::from_attributes(h.attributes)?;
    let section = decompress(codec, &b[HEADER_LEN..h.size], limit)?;
    Ok((codec, section))
}

/// Decompresses a batch's records section, producing at most `limit` bytes.
pub fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    match codec {
        Codec::None => Ok(data.to_vec()),
        Codec::Gzip => read_bounded(flate2::read::GzDecoder::new(data), limit),
        Codec::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(data), limit),
        Codec::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(data).map_err(corrupt)?;
            read_bounded(d, limit)
        }
        Codec::Snappy => snappy_decompress(data, limit),
    }
}

fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CodecError> {
    let n = snap::raw::decompress_len(block).map_err(corrupt)?;
    if out.len() + n > limit {
        return Err(CodecError::TooLarge(limit));
    }
    let at = out.len();
    out.resize(at + n, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[at..])
        .map_err(corrupt)?;
    Ok(())
}

fn snappy_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    if data.len() < XERIAL_HEADER || data[..8] != XERIAL_MAGIC {
        snappy_block(data, &mut out, limit)?;
        return Ok(out);
    }
    let mut pos = XERIAL_HEADER;
    // Each iteration consumes one length-prefixed block or returns.
    while pos < data.len() {
        let len_bytes: [u8; 4] = data
            .get(pos..pos + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("truncated xerial block length"))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let block = data
            .get(pos + 4..pos + 4 + len)
            .ok_or_else(|| corrupt("truncated xerial block"))?;
        snappy_block(block, &mut out, limit)?;
        pos += 4 + len;
    }
    Ok(out)
}

/// Compresses a records section with `codec` (snappy in xerial framing, readable by every
/// client).
pub fn compress(codec: Codec, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    match codec {
        Codec::None => Ok(data.to_vec()),
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).map_err(corrupt)?;
            e.finish().map_err(corrupt)
        }
        Codec::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(data).map_err(corrupt)?;
            e.finish().map_err(corrupt)
        }
        Codec::Zstd => zstd::stream::encode_all(data, 3).map_err(corrupt),
        Codec::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER + data.len() / 2);
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(XERIAL_BLOCK) {
                let block = enc.compress_vec(chunk).map_err(corrupt)?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_codec() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for c in Codec::ALL {
            let z = compress(c, &data).expect("compress");
            assert_eq!(
                decompress(c, &z, 1 << 20).expect("decompress"),
                data,
                "{c:?}"
            );
        }
    }

    #[test]
    fn bombs_are_refused_at_the_limit() {
        let zeros = vec![0u8; 4 << 20];
        for c in Codec::ALL.into_iter().skip(1) {
            let z = compress(c, &zeros).expect("compress");
            assert!(z.len() < 1 << 20, "{c:?} compresses zeros");
            assert!(
                matches!(decompress(c, &z, 1 << 20), Err(CodecError::TooLarge(_))),
                "{c:?}"
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 91 % 256) as u8).collect();
            for c in Codec::ALL {
                let _ = decompress(c, &junk, 1 << 16);
            }
        }
        let mut framed = compress(Codec::Snappy, b"hello hello hello").expect("compress");
        framed.truncate(framed.len() - 2);
        assert!(decompress(Codec::Snappy, &framed, 1 << 16).is_err());
    }
}
