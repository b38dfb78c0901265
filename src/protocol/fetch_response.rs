//! Hand-written Fetch response encoding (v4-v12) that leaves record bytes where they are:
//! the response is a list of pieces, and large record sets are their own pieces (slices of
//! the buffers read from the log, or whatever [`RecordSet`] the caller sends without
//! reading, such as a file range), written to the socket without being copied into the
//! response buffer.
//!
//! Invariant: the concatenated pieces are byte-for-byte what the `kafka-protocol` crate
//! encodes for the same response (see the tests).

use bytes::{BufMut, Bytes, BytesMut};

/// Record sets at least this large are sent as their own piece instead of being copied.
const INLINE_MAX: usize = 16 << 10;

/// A partition's records as the encoder sees them: a length, and the bytes if they are in
/// memory (small ones are copied into the response; the rest become their own piece).
pub trait RecordSet {
    fn len(&self) -> usize;
    fn in_memory(&self) -> Option<&[u8]>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RecordSet for Bytes {
    fn len(&self) -> usize {
        Bytes::len(self)
    }
    fn in_memory(&self) -> Option<&[u8]> {
        Some(self)
    }
}

/// One part of an encoded response, written in order.
pub enum Piece<R> {
    Bytes(Bytes),
    Records(R),
}

/// One partition of a Fetch response.
#[derive(Debug, Clone)]
pub struct FetchPartitionOut<R = Bytes> {
    pub partition: i32,
    pub error: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: R,
    /// For a follower whose log diverged (v12+): (epoch, end offset) to truncate to.
    pub diverging: Option<(i32, i64)>,
    /// read_committed: aborted transactions in the records, (producer id, first offset).
    pub aborted: Vec<(i64, i64)>,
}

fn uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Encodes a whole Fetch response frame (length prefix included) as pieces.
pub fn encode<R: RecordSet>(
    version: i16,
    correlation_id: i32,
    topics: Vec<(String, Vec<FetchPartitionOut<R>>)>,
) -> Vec<Piece<R>> {
    let flex = version >= 12;
    let array_len = |buf: &mut BytesMut, n: usize| {
        if flex {
            uvarint(buf, n as u32 + 1);
        } else {
            buf.put_i32(n as i32);
        }
    };
    let mut pieces: Vec<Piece<R>> = Vec::new();
    let mut total = 0usize;
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // frame length, patched below
    buf.put_i32(correlation_id);
    if flex {
        buf.put_u8(0); // response header tagged fields
    }
    buf.put_i32(0); // throttle_time_ms
    if version >= 7 {
        buf.put_i16(0); // error_code
        buf.put_i32(0); // session_id
    }
    array_len(&mut buf, topics.len());
    for (name, parts) in topics {
        if flex {
            uvarint(&mut buf, name.len() as u32 + 1);
        } else {
            buf.put_i16(name.len() as i16);
        }
        buf.put_slice(name.as_bytes());
        array_len(&mut buf, parts.len());
        for p in parts {
            buf.put_i32(p.partition);
            buf.put_i16(p.error);
            buf.put_i64(p.high_watermark);
            buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                buf.put_i64(p.log_start_offset);
            }
            array_len(&mut buf, p.aborted.len());
            for (pid, first) in &p.aborted {
                buf.put_i64(*pid);
                buf.put_i64(*first);
                if flex {
                    buf.put_u8(0);
                }
            }
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            if flex {
                uvarint(&mut buf, p.records.len() as u32 + 1);
            } else {
                buf.put_i32(p.records.len() as i32);
            }
            match p.records.in_memory() {
                Some(b) if b.len() < INLINE_MAX => buf.put_slice(b),
                _ => {
                    let head = buf.split().freeze();
                    total += head.len() + p.records.len();
                    pieces.push(Piece::Bytes(head));
                    pieces.push(Piece::Records(p.records));
                }
            }
            if flex {
                match p.diverging {
                    // One tagged field: DivergingEpoch (tag 0) = epoch, end offset, no tags.
                    Some((epoch, end)) => {
                        buf.put_u8(1);
                        buf.put_u8(0);
                        buf.put_u8(13);
                        buf.put_i32(epoch);
                        buf.put_i64(end);
                        buf.put_u8(0);
                    }
                    None => buf.put_u8(0),
                }
            }
        }
        if flex {
            buf.put_u8(0);
        }
    }
    if flex {
        buf.put_u8(0);
    }
    let tail = buf.freeze();
    total += tail.len();
    pieces.push(Piece::Bytes(tail));
    // The first piece starts with the length prefix; it is small, so patch a copy of it.
    if let Some(Piece::Bytes(head)) = pieces.first_mut() {
        let mut first = BytesMut::from(&head[..]);
        first[0..4].copy_from_slice(&((total - 4) as i32).to_be_bytes());
        *head = first.freeze();
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        FetchResponse, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn matches_the_reference_encoder_for_every_version() {
        let small = Bytes::from(vec![1u8; 100]);
        let big = Bytes::from((0..70_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let topics = vec![
            (
                "alpha".to_string(),
                vec![
                    FetchPartitionOut {
                        partition: 0,
                        error: 0,
                        high_watermark: 10,
                        last_stable_offset: 10,
                        log_start_offset: 2,
                        records: small.clone(),
                        diverging: None,
                        aborted: vec![(7, 3), (9, 5)],
                    },
                    FetchPartitionOut {
                        partition: 3,
                        error: 1,
                        high_watermark: 7,
                        last_stable_offset: 7,
                        log_start_offset: 0,
                        records: Bytes::new(),
                        diverging: Some((3, 77)),
                        aborted: Vec::new(),
                    },
                ],
            ),
            (
                "beta".to_string(),
                vec![FetchPartitionOut {
                    partition: 1,
                    error: 0,
                    high_watermark: 99,
                    last_stable_offset: 99,
                    log_start_offset: 5,
                    records: big.clone(),
                    diverging: None,
                    aborted: Vec::new(),
                }],
            ),
        ];
        for v in 4..=12 {
            let mine: Vec<u8> = encode(v, 42, topics.clone())
                .into_iter()
                .flat_map(|p| match p {
                    Piece::Bytes(b) | Piece::Records(b) => b.to_vec(),
                })
                .collect();
            let mut resp = FetchResponse::default();
            for (name, parts) in &topics {
                let mut t = FetchableTopicResponse::default();
                t.topic = TopicName(StrBytes::from_string(name.clone()));
                for p in parts {
                    let mut pd = PartitionData::default();
                    pd.partition_index = p.partition;
                    pd.error_code = p.error;
                    pd.high_watermark = p.high_watermark;
                    pd.last_stable_offset = p.last_stable_offset;
                    pd.log_start_offset = p.log_start_offset;
                    pd.aborted_transactions = Some(
                        p.aborted
                            .iter()
                            .map(|(pid, first)| {
                                let mut a = kafka_protocol::messages::fetch_response::AbortedTransaction::default();
                                a.producer_id = kafka_protocol::messages::ProducerId(*pid);
                                a.first_offset = *first;
                                a
                            })
                            .collect(),
                    );
                    pd.preferred_read_replica = BrokerId(-1);
                    pd.records = Some(p.records.clone());
                    if let (Some((epoch, end)), true) = (p.diverging, v >= 12) {
                        pd.diverging_epoch.epoch = epoch;
                        pd.diverging_epoch.end_offset = end;
                    }
                    t.partitions.push(pd);
                }
                resp.responses.push(t);
            }
            let reference = super::super::encode_response(super::super::FETCH, v, 42, &resp)
                .expect("reference encoding");
            assert_eq!(mine, reference.to_vec(), "version {v}");
        }
    }
}
