//! Kafka wire protocol: request framing and headers, hand-written bounded decoders for the
//! requests shardlog serves, and response encoding (through the `kafka-protocol` crate's
//! message types).
//!
//! Invariant: this module knows nothing of shards, files or topics' state; it turns bytes
//! into typed requests and typed responses into bytes, and never panics on client input.

pub mod fetch_response;
pub mod group_requests;
pub mod legacy;
pub mod reassign_requests;
pub mod requests;
pub mod security_requests;
pub mod txn_requests;
pub mod wire;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;
use thiserror::Error;

pub use group_requests::*;
pub use reassign_requests::*;
pub use requests::*;
pub use security_requests::*;
pub use txn_requests::*;
use wire::{DecodeError, Reader};

/// One API shardlog serves: key, advertised version range, first flexible version.
#[derive(Debug, Clone, Copy)]
pub struct ApiSupport {
    pub key: i16,
    pub min: i16,
    pub max: i16,
    pub flexible_from: i16,
}

pub const PRODUCE: i16 = 0;
pub const FETCH: i16 = 1;
pub const LIST_OFFSETS: i16 = 2;
pub const METADATA: i16 = 3;
pub const DESCRIBE_CONFIGS: i16 = 32;
pub const API_VERSIONS: i16 = 18;
pub const CREATE_TOPICS: i16 = 19;
pub const DELETE_TOPICS: i16 = 20;
pub const CREATE_PARTITIONS: i16 = 37;
pub const FIND_COORDINATOR: i16 = 10;
pub const INIT_PRODUCER_ID: i16 = 22;
pub const ALTER_CONFIGS: i16 = 33;
pub const DELETE_RECORDS: i16 = 21;
pub const INCREMENTAL_ALTER_CONFIGS: i16 = 44;
pub const OFFSET_COMMIT: i16 = 8;
pub const OFFSET_FETCH: i16 = 9;
pub const JOIN_GROUP: i16 = 11;
pub const HEARTBEAT: i16 = 12;
pub const LEAVE_GROUP: i16 = 13;
pub const SYNC_GROUP: i16 = 14;
pub const DESCRIBE_GROUPS: i16 = 15;
pub const LIST_GROUPS: i16 = 16;
pub const DELETE_GROUPS: i16 = 42;
pub const OFFSET_DELETE: i16 = 47;
pub const OFFSET_FOR_LEADER_EPOCH: i16 = 23;
pub const ALTER_PARTITION_REASSIGNMENTS: i16 = 45;
pub const LIST_PARTITION_REASSIGNMENTS: i16 = 46;
pub const SASL_HANDSHAKE: i16 = 17;
pub const DESCRIBE_ACLS: i16 = 29;
pub const CREATE_ACLS: i16 = 30;
pub const DELETE_ACLS: i16 = 31;
pub const SASL_AUTHENTICATE: i16 = 36;
pub const DESCRIBE_USER_SCRAM_CREDENTIALS: i16 = 50;
pub const ALTER_USER_SCRAM_CREDENTIALS: i16 = 51;
pub const ADD_PARTITIONS_TO_TXN: i16 = 24;
pub const ADD_OFFSETS_TO_TXN: i16 = 25;
pub const END_TXN: i16 = 26;
pub const WRITE_TXN_MARKERS: i16 = 27;
pub const DESCRIBE_LOG_DIRS: i16 = 35;
pub const TXN_OFFSET_COMMIT: i16 = 28;
pub const DESCRIBE_PRODUCERS: i16 = 61;
pub const DESCRIBE_TRANSACTIONS: i16 = 65;
pub const LIST_TRANSACTIONS: i16 = 66;

/// What ApiVersions advertises. Produce advertises from v0 although v0-2 requests are
/// refused: librdkafka turns compression off against a broker whose Produce minimum is
/// above 2.
pub const SUPPORTED: &[ApiSupport] = &[
    api(PRODUCE, 0, 11, 9),
    api(FETCH, 4, 12, 12),
    api(LIST_OFFSETS, 1, 6, 6),
    api(METADATA, 0, 12, 9),
    api(OFFSET_COMMIT, 0, 9, 8),
    api(OFFSET_FETCH, 1, 9, 6),
    api(FIND_COORDINATOR, 0, 4, 3),
    api(JOIN_GROUP, 0, 9, 6),
    api(HEARTBEAT, 0, 4, 4),
    api(LEAVE_GROUP, 0, 5, 4),
    api(SYNC_GROUP, 0, 5, 4),
    api(DESCRIBE_GROUPS, 0, 5, 5),
    api(LIST_GROUPS, 0, 4, 3),
    api(API_VERSIONS, 0, 4, 3),
    api(CREATE_TOPICS, 0, 7, 5),
    api(DELETE_TOPICS, 1, 6, 4),
    api(INIT_PRODUCER_ID, 0, 4, 2),
    api(DESCRIBE_CONFIGS, 0, 4, 4),
    api(ALTER_CONFIGS, 0, 2, 2),
    api(DELETE_RECORDS, 0, 2, 2),
    api(INCREMENTAL_ALTER_CONFIGS, 0, 1, 1),
    api(CREATE_PARTITIONS, 0, 3, 2),
    api(DELETE_GROUPS, 0, 2, 2),
    api(OFFSET_DELETE, 0, 0, 99),
    api(OFFSET_FOR_LEADER_EPOCH, 0, 4, 4),
    api(ALTER_PARTITION_REASSIGNMENTS, 0, 0, 0),
    api(LIST_PARTITION_REASSIGNMENTS, 0, 0, 0),
    api(SASL_HANDSHAKE, 0, 1, 99),
    api(DESCRIBE_ACLS, 0, 3, 2),
    api(CREATE_ACLS, 0, 3, 2),
    api(DELETE_ACLS, 0, 3, 2),
    api(SASL_AUTHENTICATE, 0, 2, 2),
    api(DESCRIBE_USER_SCRAM_CREDENTIALS, 0, 0, 0),
    api(ALTER_USER_SCRAM_CREDENTIALS, 0, 0, 0),
    api(ADD_PARTITIONS_TO_TXN, 0, 3, 3),
    api(ADD_OFFSETS_TO_TXN, 0, 3, 3),
    api(END_TXN, 0, 3, 3),
    api(WRITE_TXN_MARKERS, 0, 1, 1),
    api(DESCRIBE_LOG_DIRS, 1, 4, 2),
    api(TXN_OFFSET_COMMIT, 0, 3, 3),
    api(DESCRIBE_PRODUCERS, 0, 0, 0),
    api(DESCRIBE_TRANSACTIONS, 0, 0, 0),
    api(LIST_TRANSACTIONS, 0, 1, 0),
];

const fn api(key: i16, min: i16, max: i16, flexible_from: i16) -> ApiSupport {
    ApiSupport {
        key,
        min,
        max,
        flexible_from,
    }
}

/// One (topic name, [partition index]) entry of a request, tagged fields after it.
pub(crate) fn topic_partition(r: &mut Reader, flex: bool) -> wire::Result<(String, Vec<i32>)> {
    let name = r.string(flex)?;
    let parts = r.array(flex, |r| r.i32())?;
    r.tagged_fields(flex)?;
    Ok((name, parts))
}

/// An array of (topic name, [partition index]).
pub(crate) fn topic_partitions(
    r: &mut Reader,
    flex: bool,
) -> wire::Result<Vec<(String, Vec<i32>)>> {
    r.array(flex, |r| topic_partition(r, flex))
}

/// A response string from anything string-like.
pub fn str_bytes(v: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(v.into())
}

/// Lowest Produce version actually decoded (v0-2 carry legacy message sets).
pub const PRODUCE_MIN_DECODED: i16 = 3;

pub fn support(key: i16) -> Option<&'static ApiSupport> {
    SUPPORTED.iter().find(|s| s.key == key)
}

#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("malformed request: {0}")]
    Decode(#[from] DecodeError),
    #[error("unsupported API key {key} version {version}")]
    Unsupported { key: i16, version: i16 },
    #[error("response encoding failed: {0}")]
    Encode(String),
}

/// Request header fields shardlog uses.
#[derive(Debug, Clone)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

impl RequestHeader {
    pub fn flexible(&self) -> bool {
        support(self.api_key).is_some_and(|s| self.api_version >= s.flexible_from)
    }
}

/// Reads the fixed part of a request header (key, version, correlation id). Returns `None`
/// if the frame is too short to hold them.
pub fn peek_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    if frame.len() < 8 {
        return None;
    }
    Some((
        i16::from_be_bytes([frame[0], frame[1]]),
        i16::from_be_bytes([frame[2], frame[3]]),
        i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    ))
}

/// Decodes a whole request frame (without its 4-byte length prefix).
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, Request), ProtocolError> {
    let mut r = Reader::new(frame);
    let api_key = r.i16()?;
    let api_version = r.i16()?;
    let correlation_id = r.i32()?;
    let client_id = r.nullable_string(false)?;
    let header = RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
    };
    let Some(s) = support(api_key) else {
        return Err(ProtocolError::Unsupported {
            key: api_key,
            version: api_version,
        });
    };
    if api_version < s.min || api_version > s.max {
        return Err(ProtocolError::Unsupported {
            key: api_key,
            version: api_version,
        });
    }
    let flex = header.flexible();
    // ApiVersions v3+ uses request header v2 like other flexible requests.
    r.tagged_fields(flex)?;
    let v = api_version;
    let req = match api_key {
        API_VERSIONS => Request::ApiVersions,
        METADATA => Request::Metadata(MetadataRequest::decode(&mut r, v, flex)?),
        PRODUCE => {
            if v < PRODUCE_MIN_DECODED {
                return Err(ProtocolError::Unsupported {
                    key: api_key,
                    version: v,
                });
            }
            Request::Produce(ProduceRequest::decode(&mut r, v, flex)?)
        }
        FETCH => Request::Fetch(FetchRequest::decode(&mut r, v, flex)?),
        LIST_OFFSETS => Request::ListOffsets(ListOffsetsRequest::decode(&mut r, v, flex)?),
        CREATE_TOPICS => Request::CreateTopics(CreateTopicsRequest::decode(&mut r, v, flex)?),
        DELETE_TOPICS => Request::DeleteTopics(DeleteTopicsRequest::decode(&mut r, v, flex)?),
        CREATE_PARTITIONS => {
            Request::CreatePartitions(CreatePartitionsRequest::decode(&mut r, v, flex)?)
        }
        FIND_COORDINATOR => {
            Request::FindCoordinator(FindCoordinatorRequest::decode(&mut r, v, flex)?)
        }
        DELETE_RECORDS => Request::DeleteRecords(DeleteRecordsRequest::decode(&mut r, v, flex)?),
        ALTER_CONFIGS => Request::AlterConfigs(AlterConfigsRequest::decode(&mut r, false, flex)?),
        INCREMENTAL_ALTER_CONFIGS => {
            Request::AlterConfigs(AlterConfigsRequest::decode(&mut r, true, flex)?)
        }
        INIT_PRODUCER_ID => {
            Request::InitProducerId(InitProducerIdRequest::decode(&mut r, v, flex)?)
        }
        JOIN_GROUP => Request::JoinGroup(JoinGroupRequest::decode(&mut r, v, flex)?),
        SYNC_GROUP => Request::SyncGroup(SyncGroupRequest::decode(&mut r, v, flex)?),
        HEARTBEAT => Request::Heartbeat(HeartbeatRequest::decode(&mut r, v, flex)?),
        LEAVE_GROUP => Request::LeaveGroup(LeaveGroupRequest::decode(&mut r, v, flex)?),
        OFFSET_COMMIT => Request::OffsetCommit(OffsetCommitRequest::decode(&mut r, v, flex)?),
        OFFSET_FETCH => Request::OffsetFetch(OffsetFetchRequest::decode(&mut r, v, flex)?),
        LIST_GROUPS => Request::ListGroups(ListGroupsRequest::decode(&mut r, v, flex)?),
        DESCRIBE_GROUPS => {
            Request::DescribeGroups(GroupsRequest::decode_describe(&mut r, v, flex)?)
        }
        DELETE_GROUPS => Request::DeleteGroups(GroupsRequest::decode_delete(&mut r, v, flex)?),
        OFFSET_DELETE => Request::OffsetDelete(OffsetDeleteRequest::decode(&mut r, v, flex)?),
        DESCRIBE_CONFIGS => {
            Request::DescribeConfigs(DescribeConfigsRequest::decode(&mut r, v, flex)?)
        }
        ALTER_PARTITION_REASSIGNMENTS => {
            Request::AlterReassignments(AlterReassignmentsRequest::decode(&mut r, v, flex)?)
        }
        LIST_PARTITION_REASSIGNMENTS => {
            Request::ListReassignments(ListReassignmentsRequest::decode(&mut r, v, flex)?)
        }
        OFFSET_FOR_LEADER_EPOCH => {
            Request::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::decode(&mut r, v, flex)?)
        }
        SASL_HANDSHAKE => Request::SaslHandshake(SaslHandshakeRequest::decode(&mut r, v, flex)?),
        SASL_AUTHENTICATE => {
            Request::SaslAuthenticate(SaslAuthenticateRequest::decode(&mut r, v, flex)?)
        }
        DESCRIBE_USER_SCRAM_CREDENTIALS => {
            Request::DescribeScram(DescribeScramRequest::decode(&mut r, v, flex)?)
        }
        DESCRIBE_ACLS => Request::DescribeAcls(DescribeAclsRequest::decode(&mut r, v, flex)?),
        CREATE_ACLS => Request::CreateAcls(CreateAclsRequest::decode(&mut r, v, flex)?),
        DELETE_ACLS => Request::DeleteAcls(DeleteAclsRequest::decode(&mut r, v, flex)?),
        ALTER_USER_SCRAM_CREDENTIALS => {
            Request::AlterScram(AlterScramRequest::decode(&mut r, v, flex)?)
        }
        ADD_PARTITIONS_TO_TXN => {
            Request::AddPartitionsToTxn(AddPartitionsToTxnRequest::decode(&mut r, v, flex)?)
        }
        ADD_OFFSETS_TO_TXN => {
            Request::AddOffsetsToTxn(AddOffsetsToTxnRequest::decode(&mut r, v, flex)?)
        }
        END_TXN => Request::EndTxn(EndTxnRequest::decode(&mut r, v, flex)?),
        WRITE_TXN_MARKERS => {
            Request::WriteTxnMarkers(WriteTxnMarkersRequest::decode(&mut r, v, flex)?)
        }
        TXN_OFFSET_COMMIT => {
            Request::TxnOffsetCommit(TxnOffsetCommitRequest::decode(&mut r, v, flex)?)
        }
        DESCRIBE_LOG_DIRS => {
            Request::DescribeLogDirs(DescribeLogDirsRequest::decode(&mut r, v, flex)?)
        }
        DESCRIBE_PRODUCERS => {
            Request::DescribeProducers(DescribeProducersRequest::decode(&mut r, v, flex)?)
        }
        DESCRIBE_TRANSACTIONS => {
            Request::DescribeTransactions(DescribeTransactionsRequest::decode(&mut r, v, flex)?)
        }
        LIST_TRANSACTIONS => {
            Request::ListTransactions(ListTransactionsRequest::decode(&mut r, v, flex)?)
        }
        _ => {
            return Err(ProtocolError::Unsupported {
                key: api_key,
                version: v,
            })
        }
    };
    Ok((header, req))
}

/// Encodes a response frame: 4-byte length, response header, body.
pub fn encode_response<M: Encodable>(
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    body: &M,
) -> Result<Bytes, ProtocolError> {
    let header_version = ApiKey::try_from(api_key)
        .map(|k| k.response_header_version(api_version))
        .unwrap_or(0);
    let size = body
        .compute_size(api_version)
        .map_err(|e| ProtocolError::Encode(e.to_string()))?;
    let mut buf = BytesMut::with_capacity(size + 16);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0); // empty tagged fields
    }
    body.encode(&mut buf, api_version)
        .map_err(|e| ProtocolError::Encode(e.to_string()))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The ApiVersions response listing [`SUPPORTED`], or an `UNSUPPORTED_VERSION` answer (v0
/// body) for an ApiVersions version shardlog does not know, so the client retries lower.
pub fn api_versions_response(version: i16, correlation_id: i32) -> Result<Bytes, ProtocolError> {
    use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
    let known = (0..=4).contains(&version);
    let mut resp = ApiVersionsResponse::default();
    resp.error_code = if known { 0 } else { 35 };
    resp.api_keys = SUPPORTED
        .iter()
        .filter(|s| known || s.key == API_VERSIONS)
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect();
    encode_response(
        API_VERSIONS,
        if known { version } else { 0 },
        correlation_id,
        &resp,
    )
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(key: i16, version: i16, body: &[u8]) -> Bytes {
        let mut f = Vec::with_capacity(10 + body.len());
        f.extend(key.to_be_bytes());
        f.extend(version.to_be_bytes());
        f.extend(7i32.to_be_bytes());
        f.extend((-1i16).to_be_bytes());
        f.extend_from_slice(body);
        Bytes::from(f)
    }

    fn valid_produce() -> Vec<u8> {
        use kafka_protocol::messages::produce_request::{
            PartitionProduceData, ProduceRequest, TopicProduceData,
        };
        use kafka_protocol::messages::TopicName;
        use kafka_protocol::protocol::StrBytes;
        let batch = crate::log::records::build_batch(&[(Some(b"k"), Some(b"value"))], 1);
        let mut p = PartitionProduceData::default();
        p.index = 0;
        p.records = Some(Bytes::from(batch));
        let mut t = TopicProduceData::default();
        t.name = TopicName(StrBytes::from_static_str("topic"));
        t.partition_data = vec![p];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.topic_data = vec![t];
        let mut buf = bytes::BytesMut::new();
        req.encode(&mut buf, 9).expect("encode");
        buf.to_vec()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Any body for any served API and version: an error or a request, never a panic
        /// and never an allocation larger than the frame.
        #[test]
        fn random_bodies_never_panic(idx in 0..SUPPORTED.len(), v in -1i16..20, body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let s = SUPPORTED[idx];
            let _ = decode_request(frame(s.key, v, &body));
            let flexible = v >= s.flexible_from;
            if flexible {
                // Flexible requests carry a tagged-field byte after the client id.
                let mut b = vec![0u8];
                b.extend(&body);
                let _ = decode_request(frame(s.key, v, &b));
            }
        }

        /// A valid Produce request, mutated: decoding and batch validation never panic.
        #[test]
        fn mutated_produce_never_panics(flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..6), cut in 0usize..200) {
            let mut body = vec![0u8];
            body.extend(valid_produce());
            for (at, x) in flips {
                if let Some(b) = body.get_mut(at) {
                    *b ^= x;
                }
            }
            body.truncate(body.len().saturating_sub(cut % 50));
            if let Ok((_, Request::Produce(p))) = decode_request(frame(PRODUCE, 9, &body)) {
                for t in p.topics {
                    for part in t.partitions {
                        if let Some(r) = part.records {
                            let _ = crate::log::batch::validate_incoming(&r);
                            let _ = crate::log::records::read_records(&r);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_unmutated_produce_decodes() {
        let mut body = vec![0u8];
        body.extend(valid_produce());
        match decode_request(frame(PRODUCE, 9, &body)) {
            Ok((_, Request::Produce(p))) => {
                let r = p.topics[0].partitions[0].records.clone().expect("records");
                assert!(crate::log::batch::validate_incoming(&r).is_ok());
            }
            other => panic!("did not decode: {:?}", other.err()),
        }
    }
}
