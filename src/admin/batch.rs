//! Record batches as a client writes and reads them: records with keys, values, headers and
//! timestamps into one magic-2 batch (compressed, with an idempotent producer's id and
//! sequence), and the records of a Fetch answer back out, control batches skipped.
//!
//! Invariant: decoding never trusts the bytes: a batch that does not parse or decompress
//! within the limit ends the decoding there (what came before is kept).

use anyhow::{bail, Result};

use crate::log::batch::{self, HEADER_LEN};
use crate::log::codec::{self, Codec};
use crate::log::records::{owned_headers, put_bytes, put_varint, seal_records, RecordWalk};

/// Most bytes one batch's records may decompress to here.
const MAX_DECOMPRESSED: usize = 64 << 20;

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct OutRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record read back.
#[derive(Debug, Clone)]
pub struct InRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// An idempotent producer's id, epoch and the batch's first sequence.
pub type ProducerFields = (i64, i16, i32);

/// One batch of `records` stamped `timestamp`, compressed with `codec`.
pub fn encode(
    records: &[OutRecord],
    timestamp: i64,
    codec: Codec,
    producer: Option<ProducerFields>,
) -> Result<Vec<u8>> {
    if records.is_empty() {
        bail!("an empty batch");
    }
    let mut section = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut body = vec![0u8];
        put_varint(&mut body, 0);
        put_varint(&mut body, i as i64);
        put_bytes(&mut body, r.key.as_deref());
        put_bytes(&mut body, r.value.as_deref());
        put_varint(&mut body, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut body, Some(k.as_bytes()));
            put_bytes(&mut body, v.as_deref());
        }
        put_varint(&mut section, body.len() as i64);
        section.extend(body);
    }
    let producer = producer.unwrap_or((-1, -1, -1));
    Ok(seal_records(
        &section,
        records.len() as i32,
        timestamp,
        codec,
        producer,
    )?)
}

/// The records of the batches in `bytes` (a Fetch answer's records) from offset `from` on,
/// control batches and the records of `aborted` transactions (a read_committed Fetch
/// answer's (producer id, first offset) list) left out; and the offset after the last
/// whole batch read (where the next fetch starts).
pub fn decode(bytes: &[u8], from: i64, aborted: &[(i64, i64)]) -> (Vec<InRecord>, i64) {
    let mut out = Vec::new();
    let mut next = from;
    // Producers whose transaction is aborted at the current position; each aborted entry
    // starts skipping once, at its first offset, and its producer's marker ends it.
    let mut skipping: Vec<i64> = Vec::new();
    let mut started = vec![false; aborted.len()];
    let mut pos = 0;
    while pos + HEADER_LEN <= bytes.len() {
        let Ok(h) = batch::parse_header(&bytes[pos..]) else {
            break;
        };
        if h.size < HEADER_LEN || pos + h.size > bytes.len() {
            // A partial batch at the end of a fetch: the next fetch starts there.
            break;
        }
        let b = &bytes[pos..pos + h.size];
        pos += h.size;
        next = next.max(h.last_offset() + 1);
        for (i, (pid, first)) in aborted.iter().enumerate() {
            if !started[i] && *pid == h.producer_id && h.base_offset >= *first {
                started[i] = true;
                if !skipping.contains(pid) {
                    skipping.push(*pid);
                }
            }
        }
        if h.attributes & batch::ATTR_CONTROL != 0 {
            // The marker ends its producer's transaction.
            skipping.retain(|p| *p != h.producer_id);
            continue;
        }
        let aborted_batch =
            h.attributes & batch::ATTR_TRANSACTIONAL != 0 && skipping.contains(&h.producer_id);
        if aborted_batch || h.last_offset() < from {
            continue;
        }
        let Ok((_, section)) = codec::batch_records(b, &h, MAX_DECOMPRESSED) else {
            next = h.base_offset.max(from);
            break;
        };
        for r in RecordWalk::new(&section, &h) {
            let offset = h.base_offset + r.offset_delta;
            if offset < from {
                continue;
            }
            let headers = owned_headers(r.headers);
            out.push(InRecord {
                offset,
                timestamp: h.base_timestamp + r.timestamp_delta,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    (out, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_headers_round_trip_through_every_codec() {
        let records = vec![
            OutRecord {
                key: Some(b"k1".to_vec()),
                value: Some(b"v1".to_vec()),
                headers: vec![("h".into(), Some(b"x".to_vec())), ("n".into(), None)],
            },
            OutRecord {
                key: None,
                value: None,
                headers: vec![],
            },
        ];
        for c in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let mut b = encode(&records, 1_000, c, Some((7, 0, 3))).expect("encode");
            // As a broker would store it: at offset 40.
            b[..8].copy_from_slice(&40i64.to_be_bytes());
            let (got, next) = decode(&b, 0, &[]);
            assert_eq!(next, 42);
            assert_eq!(got.len(), 2, "{c:?}");
            assert_eq!(got[0].offset, 40);
            assert_eq!(got[0].timestamp, 1_000);
            assert_eq!(got[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(
                got[0].headers,
                vec![
                    ("h".to_string(), Some(b"x".to_vec())),
                    ("n".to_string(), None)
                ]
            );
            assert_eq!(got[1].offset, 41);
            assert!(got[1].key.is_none() && got[1].value.is_none());
            assert_eq!(
                decode(&b, 41, &[]).0.len(),
                1,
                "from an offset inside the batch"
            );
            // The producer's transaction aborted from offset 40 (a transactional batch).
            let mut t = b.clone();
            let attrs = i16::from_be_bytes([t[21], t[22]]) | batch::ATTR_TRANSACTIONAL;
            t[21..23].copy_from_slice(&attrs.to_be_bytes());
            batch::seal(&mut t);
            assert!(decode(&t, 0, &[(7, 40)]).0.is_empty());
            // After that transaction's ABORT marker, the producer's next one is read.
            let marker = crate::log::txn_index::marker_batch(
                7,
                0,
                crate::log::txn_index::Marker::Abort,
                0,
                1,
            );
            let mut m = marker.clone();
            m[..8].copy_from_slice(&42i64.to_be_bytes());
            let mut t2 = t.clone();
            t2[..8].copy_from_slice(&43i64.to_be_bytes());
            let all = [t.clone(), m, t2].concat();
            let (got, next) = decode(&all, 0, &[(7, 40)]);
            assert_eq!(
                got.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![43, 44]
            );
            assert_eq!(next, 45);
            assert_eq!(decode(&t, 0, &[(8, 40)]).0.len(), 2);
            // A truncated tail is left for the next fetch; garbage ends the decoding.
            assert!(decode(&b[..b.len() - 1], 0, &[]).0.is_empty());
            assert!(decode(&[0xff; 100], 0, &[]).0.is_empty());
        }
    }
}
