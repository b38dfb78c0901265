//! Typed requests and their version-aware decoders. Every struct here is plain data
//! (`Send`), so a request can be handed to another shard as it is.

use bytes::Bytes;

use super::wire::{Reader, Result};

#[derive(Debug, Clone)]
pub enum Request {
    ApiVersions,
    Metadata(MetadataRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    CreatePartitions(CreatePartitionsRequest),
    DescribeConfigs(DescribeConfigsRequest),
    FindCoordinator(FindCoordinatorRequest),
    InitProducerId(InitProducerIdRequest),
    AlterConfigs(AlterConfigsRequest),
    DeleteRecords(DeleteRecordsRequest),
    JoinGroup(super::JoinGroupRequest),
    SyncGroup(super::SyncGroupRequest),
    Heartbeat(super::HeartbeatRequest),
    LeaveGroup(super::LeaveGroupRequest),
    OffsetCommit(super::OffsetCommitRequest),
    OffsetFetch(super::OffsetFetchRequest),
    ListGroups(super::ListGroupsRequest),
    DescribeGroups(super::GroupsRequest),
    DeleteGroups(super::GroupsRequest),
    OffsetDelete(super::OffsetDeleteRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    AlterReassignments(super::AlterReassignmentsRequest),
    ListReassignments(super::ListReassignmentsRequest),
    SaslHandshake(super::SaslHandshakeRequest),
    SaslAuthenticate(super::SaslAuthenticateRequest),
    DescribeScram(super::DescribeScramRequest),
    AlterScram(super::AlterScramRequest),
    DescribeAcls(super::DescribeAclsRequest),
    CreateAcls(super::CreateAclsRequest),
    DeleteAcls(super::DeleteAclsRequest),
    AddPartitionsToTxn(super::AddPartitionsToTxnRequest),
    AddOffsetsToTxn(super::AddOffsetsToTxnRequest),
    EndTxn(super::EndTxnRequest),
    TxnOffsetCommit(super::TxnOffsetCommitRequest),
    DescribeProducers(super::DescribeProducersRequest),
    WriteTxnMarkers(super::WriteTxnMarkersRequest),
    DescribeLogDirs(DescribeLogDirsRequest),
    DescribeTransactions(super::DescribeTransactionsRequest),
    ListTransactions(super::ListTransactionsRequest),
}

#[derive(Debug, Clone)]
pub struct MetadataRequest {
    /// `None`: all topics.
    pub topics: Option<Vec<String>>,
    pub allow_auto_topic_creation: bool,
}

impl MetadataRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let topics = r.nullable_array(flex, |r| {
            if v >= 10 {
                r.uuid()?;
            }
            let name = if v >= 10 {
                r.nullable_string(flex)?
            } else {
                Some(r.string(flex)?)
            };
            r.tagged_fields(flex)?;
            Ok(name)
        })?;
        let allow = if v >= 4 { r.bool()? } else { true };
        if (8..=10).contains(&v) {
            r.bool()?;
        }
        if v >= 8 {
            r.bool()?;
        }
        r.tagged_fields(flex)?;
        // v0: an empty list means all topics.
        let topics = match topics {
            Some(t) if t.is_empty() && v == 0 => None,
            Some(t) => Some(t.into_iter().flatten().collect()),
            None => None,
        };
        Ok(MetadataRequest {
            topics,
            allow_auto_topic_creation: allow,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ProduceRequest {
    pub transactional_id: Option<String>,
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<ProduceTopic>,
}

#[derive(Debug, Clone)]
pub struct ProduceTopic {
    pub name: String,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Debug, Clone)]
pub struct ProducePartition {
    pub index: i32,
    pub records: Option<Bytes>,
}

impl ProduceRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let transactional_id = r.nullable_string(flex)?;
        let acks = r.i16()?;
        let timeout_ms = r.i32()?;
        let topics = r.array(flex, |r| {
            let name = r.string(flex)?;
            let partitions = r.array(flex, |r| {
                let index = r.i32()?;
                let records = r.nullable_bytes(flex)?;
                r.tagged_fields(flex)?;
                Ok(ProducePartition { index, records })
            })?;
            r.tagged_fields(flex)?;
            Ok(ProduceTopic { name, partitions })
        })?;
        r.tagged_fields(flex)?;
        Ok(ProduceRequest {
            transactional_id,
            acks,
            timeout_ms,
            topics,
        })
    }
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// A follower's broker id (its replica fetch); -1 for consumers.
    pub replica_id: i32,
    pub max_wait_ms: i32,
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub isolation_level: i8,
    pub topics: Vec<FetchTopic>,
}

#[derive(Debug, Clone)]
pub struct FetchTopic {
    pub name: String,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone, Copy)]
pub struct FetchPartition {
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// The leader epoch the fetcher believes current (v9+, KIP-320); -1 unknown.
    pub current_leader_epoch: i32,
    /// The epoch of the fetcher's last batch (v12+, a follower's divergence check); -1 none.
    pub last_fetched_epoch: i32,
}

impl FetchRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let replica_id = r.i32()?;
        let max_wait_ms = r.i32()?;
        let min_bytes = r.i32()?;
        let max_bytes = r.i32()?;
        let isolation_level = r.i8()?;
        if v >= 7 {
            let _session_id = r.i32()?;
            let _session_epoch = r.i32()?;
        }
        let topics = r.array(flex, |r| {
            let name = r.string(flex)?;
            let partitions = r.array(flex, |r| {
                let partition = r.i32()?;
                let current_leader_epoch = if v >= 9 { r.i32()? } else { -1 };
                let fetch_offset = r.i64()?;
                let last_fetched_epoch = if v >= 12 { r.i32()? } else { -1 };
                if v >= 5 {
                    let _log_start = r.i64()?;
                }
                let partition_max_bytes = r.i32()?;
                r.tagged_fields(flex)?;
                Ok(FetchPartition {
                    partition,
                    fetch_offset,
                    partition_max_bytes,
                    current_leader_epoch,
                    last_fetched_epoch,
                })
            })?;
            r.tagged_fields(flex)?;
            Ok(FetchTopic { name, partitions })
        })?;
        if v >= 7 {
            r.array(flex, |r| {
                r.string(flex)?;
                r.array(flex, |r| r.i32())?;
                r.tagged_fields(flex)
            })?;
        }
        if v >= 11 {
            r.string(flex)?;
        }
        r.tagged_fields(flex)?;
        Ok(FetchRequest {
            replica_id,
            max_wait_ms,
            min_bytes,
            max_bytes,
            isolation_level,
            topics,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ListOffsetsRequest {
    pub isolation_level: i8,
    pub topics: Vec<ListOffsetsTopic>,
}

#[derive(Debug, Clone)]
pub struct ListOffsetsTopic {
    pub name: String,
    /// (partition, timestamp): -1 latest, -2 earliest, -3 max timestamp, else a time.
    pub partitions: Vec<(i32, i64)>,
}

impl ListOffsetsRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let _replica_id = r.i32()?;
        let isolation_level = if v >= 2 { r.i8()? } else { 0 };
        let topics = r.array(flex, |r| {
            let name = r.string(flex)?;
            let partitions = r.array(flex, |r| {
                let p = r.i32()?;
                if v >= 4 {
                    let _epoch = r.i32()?;
                }
                let ts = r.i64()?;
                r.tagged_fields(flex)?;
                Ok((p, ts))
            })?;
            r.tagged_fields(flex)?;
            Ok(ListOffsetsTopic { name, partitions })
        })?;
        r.tagged_fields(flex)?;
        Ok(ListOffsetsRequest {
            isolation_level,
            topics,
        })
    }
}

#[derive(Debug, Clone)]
pub struct CreateTopicsRequest {
    pub topics: Vec<NewTopic>,
    pub timeout_ms: i32,
    pub validate_only: bool,
}

#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: broker default.
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub has_assignments: bool,
    pub configs: Vec<(String, Option<String>)>,
}

impl CreateTopicsRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let topics = r.array(flex, |r| {
            let name = r.string(flex)?;
            let num_partitions = r.i32()?;
            let replication_factor = r.i16()?;
            let assignments = r.array(flex, |r| {
                r.i32()?;
                r.array(flex, |r| r.i32())?;
                r.tagged_fields(flex)
            })?;
            let configs = r.array(flex, |r| {
                let k = r.string(flex)?;
                let v = r.nullable_string(flex)?;
                r.tagged_fields(flex)?;
                Ok((k, v))
            })?;
            r.tagged_fields(flex)?;
            Ok(NewTopic {
                name,
                num_partitions,
                replication_factor,
                has_assignments: !assignments.is_empty(),
                configs,
            })
        })?;
        let timeout_ms = r.i32()?;
        let validate_only = v >= 1 && r.bool()?;
        r.tagged_fields(flex)?;
        Ok(CreateTopicsRequest {
            topics,
            timeout_ms,
            validate_only,
        })
    }
}

#[derive(Debug, Clone)]
pub struct DeleteTopicsRequest {
    /// Topic names; v6+ entries may name a topic by id instead (name `None`).
    pub topics: Vec<(Option<String>, [u8; 16])>,
    pub timeout_ms: i32,
}

impl DeleteTopicsRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let topics = if v >= 6 {
            r.array(flex, |r| {
                let name = r.nullable_string(flex)?;
                let id = r.uuid()?;
                r.tagged_fields(flex)?;
                Ok((name, id))
            })?
        } else {
            r.array(flex, |r| Ok((Some(r.string(flex)?), [0u8; 16])))?
        };
        let timeout_ms = r.i32()?;
        r.tagged_fields(flex)?;
        Ok(DeleteTopicsRequest { topics, timeout_ms })
    }
}

#[derive(Debug, Clone)]
pub struct CreatePartitionsRequest {
    /// (topic, new total partition count)
    pub topics: Vec<(String, i32)>,
    pub timeout_ms: i32,
    pub validate_only: bool,
}

impl CreatePartitionsRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let topics = r.array(flex, |r| {
            let name = r.string(flex)?;
            let count = r.i32()?;
            r.nullable_array(flex, |r| {
                r.array(flex, |r| r.i32())?;
                r.tagged_fields(flex)
            })?;
            r.tagged_fields(flex)?;
            Ok((name, count))
        })?;
        let timeout_ms = r.i32()?;
        let validate_only = r.bool()?;
        r.tagged_fields(flex)?;
        Ok(CreatePartitionsRequest {
            topics,
            timeout_ms,
            validate_only,
        })
    }
}

#[derive(Debug, Clone)]
pub struct DescribeConfigsRequest {
    pub resources: Vec<ConfigResource>,
    pub include_synonyms: bool,
    pub include_documentation: bool,
}

#[derive(Debug, Clone)]
pub struct ConfigResource {
    /// 2: topic, 4: broker.
    pub resource_type: i8,
    pub name: String,
    /// `None`: all keys.
    pub keys: Option<Vec<String>>,
}

impl DescribeConfigsRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let resources = r.array(flex, |r| {
            let resource_type = r.i8()?;
            let name = r.string(flex)?;
            let keys = r.nullable_array(flex, |r| r.string(flex))?;
            r.tagged_fields(flex)?;
            Ok(ConfigResource {
                resource_type,
                name,
                keys,
            })
        })?;
        let include_synonyms = if v >= 1 { r.bool()? } else { false };
        let include_documentation = if v >= 3 { r.bool()? } else { false };
        r.tagged_fields(flex)?;
        Ok(DescribeConfigsRequest {
            resources,
            include_synonyms,
            include_documentation,
        })
    }
}

#[derive(Debug, Clone)]
pub struct FindCoordinatorRequest {
    /// 0: group, 1: transaction.
    pub key_type: i8,
    /// One key before v4; a batch of keys from v4.
    pub keys: Vec<String>,
}

impl FindCoordinatorRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let (key_type, keys) = if v >= 4 {
            let kt = r.i8()?;
            (kt, r.array(flex, |r| r.string(flex))?)
        } else {
            let key = r.string(flex)?;
            let kt = if v >= 1 { r.i8()? } else { 0 };
            (kt, vec![key])
        };
        r.tagged_fields(flex)?;
        Ok(FindCoordinatorRequest { key_type, keys })
    }
}

#[derive(Debug, Clone)]
pub struct InitProducerIdRequest {
    pub transactional_id: Option<String>,
    pub transaction_timeout_ms: i32,
    /// From v3: the producer's current id and epoch (-1 if none), for an epoch bump.
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl InitProducerIdRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let transactional_id = r.nullable_string(flex)?;
        let transaction_timeout_ms = r.i32()?;
        let (producer_id, producer_epoch) = if v >= 3 {
            (r.i64()?, r.i16()?)
        } else {
            (-1, -1)
        };
        r.tagged_fields(flex)?;
        Ok(InitProducerIdRequest {
            transactional_id,
            transaction_timeout_ms,
            producer_id,
            producer_epoch,
        })
    }
}

/// AlterConfigs (replace a resource's overrides) and IncrementalAlterConfigs (per-key
/// operations) share this shape; `incremental` says which.
#[derive(Debug, Clone)]
pub struct AlterConfigsRequest {
    pub incremental: bool,
    pub resources: Vec<AlterResource>,
    pub validate_only: bool,
}

#[derive(Debug, Clone)]
pub struct AlterResource {
    pub resource_type: i8,
    pub name: String,
    /// (key, operation: 0 set, 1 delete, 2 append, 3 subtract; value)
    pub configs: Vec<(String, i8, Option<String>)>,
}

impl AlterConfigsRequest {
    pub fn decode(r: &mut Reader, incremental: bool, flex: bool) -> Result<Self> {
        let resources = r.array(flex, |r| {
            let resource_type = r.i8()?;
            let name = r.string(flex)?;
            let configs = r.array(flex, |r| {
                let k = r.string(flex)?;
                let op = if incremental { r.i8()? } else { 0 };
                let v = r.nullable_string(flex)?;
                r.tagged_fields(flex)?;
                Ok((k, op, v))
            })?;
            r.tagged_fields(flex)?;
            Ok(AlterResource {
                resource_type,
                name,
                configs,
            })
        })?;
        let validate_only = r.bool()?;
        r.tagged_fields(flex)?;
        Ok(AlterConfigsRequest {
            incremental,
            resources,
            validate_only,
        })
    }
}

#[derive(Debug, Clone)]
pub struct DeleteRecordsRequest {
    /// (topic, partition, delete records below this offset; -1: the high watermark)
    pub partitions: Vec<(String, i32, i64)>,
}

impl DeleteRecordsRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let mut partitions = Vec::new();
        r.array(flex, |r| {
            let name = r.string(flex)?;
            r.array(flex, |r| {
                let p = r.i32()?;
                let off = r.i64()?;
                r.tagged_fields(flex)?;
                partitions.push((name.clone(), p, off));
                Ok(())
            })?;
            r.tagged_fields(flex)
        })?;
        let _timeout = r.i32()?;
        r.tagged_fields(flex)?;
        Ok(DeleteRecordsRequest { partitions })
    }
}

/// OffsetsForLeaderEpoch (KIP-101/KIP-320): where each asked epoch ends.
#[derive(Debug, Clone)]
pub struct OffsetForLeaderEpochRequest {
    /// (topic, partition, current leader epoch (-1 unknown), epoch asked about)
    pub partitions: Vec<(String, i32, i32, i32)>,
}

impl OffsetForLeaderEpochRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        if v >= 3 {
            let _replica_id = r.i32()?;
        }
        let mut partitions = Vec::new();
        r.array(flex, |r| {
            let name = r.string(flex)?;
            r.array(flex, |r| {
                let p = r.i32()?;
                let current = if v >= 2 { r.i32()? } else { -1 };
                let epoch = r.i32()?;
                r.tagged_fields(flex)?;
                partitions.push((name.clone(), p, current, epoch));
                Ok(())
            })?;
            r.tagged_fields(flex)
        })?;
        r.tagged_fields(flex)?;
        Ok(OffsetForLeaderEpochRequest { partitions })
    }
}

#[derive(Debug, Clone)]
pub struct DescribeLogDirsRequest {
    /// (topic, partitions); `None`: every partition.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

impl DescribeLogDirsRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let topics = r.nullable_array(flex, |r| super::topic_partition(r, flex))?;
        r.tagged_fields(flex)?;
        Ok(DescribeLogDirsRequest { topics })
    }
}
