//! Consumer-group requests (classic protocol) and their version-aware decoders.

use bytes::Bytes;

use super::wire::{Reader, Result};

/// The fields SyncGroup, Heartbeat and OffsetCommit open with: group id, generation, member
/// id, and the group instance id in the versions that carry it.
fn member_fields(
    r: &mut Reader,
    flex: bool,
    with_instance: bool,
) -> Result<(String, i32, String, Option<String>)> {
    let group_id = r.string(flex)?;
    let generation_id = r.i32()?;
    let member_id = r.string(flex)?;
    let instance = if with_instance {
        r.nullable_string(flex)?
    } else {
        None
    };
    Ok((group_id, generation_id, member_id, instance))
}

#[derive(Debug, Clone)]
pub struct JoinGroupRequest {
    pub group_id: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
}

impl JoinGroupRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let group_id = r.string(flex)?;
        let session_timeout_ms = r.i32()?;
        let rebalance_timeout_ms = if v >= 1 { r.i32()? } else { session_timeout_ms };
        let member_id = r.string(flex)?;
        let group_instance_id = if v >= 5 {
            r.nullable_string(flex)?
        } else {
            None
        };
        let protocol_type = r.string(flex)?;
        let protocols = r.array(flex, |r| {
            let name = r.string(flex)?;
            let meta = r.nullable_bytes(flex)?.unwrap_or_default();
            r.tagged_fields(flex)?;
            Ok((name, meta))
        })?;
        if v >= 8 {
            r.nullable_string(flex)?;
        }
        r.tagged_fields(flex)?;
        Ok(JoinGroupRequest {
            group_id,
            session_timeout_ms,
            rebalance_timeout_ms,
            member_id,
            group_instance_id,
            protocol_type,
            protocols,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SyncGroupRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

impl SyncGroupRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let (group_id, generation_id, member_id, group_instance_id) =
            member_fields(r, flex, v >= 3)?;
        let (protocol_type, protocol_name) = if v >= 5 {
            (r.nullable_string(flex)?, r.nullable_string(flex)?)
        } else {
            (None, None)
        };
        let assignments = r.array(flex, |r| {
            let m = r.string(flex)?;
            let a = r.nullable_bytes(flex)?.unwrap_or_default();
            r.tagged_fields(flex)?;
            Ok((m, a))
        })?;
        r.tagged_fields(flex)?;
        Ok(SyncGroupRequest {
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            protocol_type,
            protocol_name,
            assignments,
        })
    }
}

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl HeartbeatRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let (group_id, generation_id, member_id, group_instance_id) =
            member_fields(r, flex, v >= 3)?;
        r.tagged_fields(flex)?;
        Ok(HeartbeatRequest {
            group_id,
            generation_id,
            member_id,
            group_instance_id,
        })
    }
}

#[derive(Debug, Clone)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    /// (member id, group instance id)
    pub members: Vec<(String, Option<String>)>,
}

impl LeaveGroupRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let group_id = r.string(flex)?;
        let members = if v >= 3 {
            r.array(flex, |r| {
                let m = r.string(flex)?;
                let i = r.nullable_string(flex)?;
                if v >= 5 {
                    r.nullable_string(flex)?;
                }
                r.tagged_fields(flex)?;
                Ok((m, i))
            })?
        } else {
            vec![(r.string(flex)?, None)]
        };
        r.tagged_fields(flex)?;
        Ok(LeaveGroupRequest { group_id, members })
    }
}

#[derive(Debug, Clone)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

#[derive(Debug, Clone)]
pub struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

impl CommitPartition {
    /// The topics of an OffsetCommit or TxnOffsetCommit request: each name with its
    /// partitions (the leader epoch only `with_epoch`).
    /// `with_timestamp`: OffsetCommit v1's per-partition commit timestamp (read, not kept:
    /// retention counts from when the group empties, as Kafka does since 2.1).
    pub fn decode_topics(
        r: &mut Reader,
        flex: bool,
        with_epoch: bool,
        with_timestamp: bool,
    ) -> Result<Vec<(String, Vec<CommitPartition>)>> {
        r.array(flex, |r| {
            let name = r.string(flex)?;
            let parts = r.array(flex, |r| {
                let partition = r.i32()?;
                let offset = r.i64()?;
                if with_timestamp {
                    r.i64()?;
                }
                let leader_epoch = if with_epoch { r.i32()? } else { -1 };
                let metadata = r.nullable_string(flex)?;
                r.tagged_fields(flex)?;
                Ok(CommitPartition {
                    partition,
                    offset,
                    leader_epoch,
                    metadata,
                })
            })?;
            r.tagged_fields(flex)?;
            Ok((name, parts))
        })
    }
}

impl OffsetCommitRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        // v0 names no membership: a commit outside any generation, like a simple consumer's.
        let (group_id, generation_id, member_id, group_instance_id) = if v == 0 {
            (r.string(flex)?, -1, String::new(), None)
        } else {
            member_fields(r, flex, v >= 7)?
        };
        if (2..=4).contains(&v) {
            let _retention = r.i64()?;
        }
        let topics = CommitPartition::decode_topics(r, flex, v >= 6, v == 1)?;
        r.tagged_fields(flex)?;
        Ok(OffsetCommitRequest {
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            topics,
        })
    }
}

/// A topic name with partition indexes.
pub type TopicPartitions = (String, Vec<i32>);

#[derive(Debug, Clone)]
pub struct OffsetFetchRequest {
    /// (group, topics: `None` = all committed partitions)
    pub groups: Vec<(String, Option<Vec<TopicPartitions>>)>,
    pub require_stable: bool,
}

impl OffsetFetchRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let topics = |r: &mut Reader| {
            r.nullable_array(flex, |r| {
                let name = r.string(flex)?;
                let parts = r.array(flex, |r| r.i32())?;
                r.tagged_fields(flex)?;
                Ok((name, parts))
            })
        };
        let groups = if v >= 8 {
            r.array(flex, |r| {
                let g = r.string(flex)?;
                if v >= 9 {
                    r.nullable_string(flex)?;
                    r.i32()?;
                }
                let t = topics(r)?;
                r.tagged_fields(flex)?;
                Ok((g, t))
            })?
        } else {
            let g = r.string(flex)?;
            vec![(g, topics(r)?)]
        };
        // v7+ (KIP-447): offsets a transaction has staged and not ended are not answered.
        let require_stable = v >= 7 && r.bool()?;
        r.tagged_fields(flex)?;
        Ok(OffsetFetchRequest {
            groups,
            require_stable,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ListGroupsRequest {
    pub states_filter: Vec<String>,
}

impl ListGroupsRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let states_filter = if v >= 4 {
            r.array(flex, |r| r.string(flex))?
        } else {
            Vec::new()
        };
        if v >= 5 {
            r.array(flex, |r| r.string(flex))?;
        }
        r.tagged_fields(flex)?;
        Ok(ListGroupsRequest { states_filter })
    }
}

/// DescribeGroups and DeleteGroups both carry a list of group ids.
#[derive(Debug, Clone)]
pub struct GroupsRequest {
    pub groups: Vec<String>,
}

impl GroupsRequest {
    pub fn decode_describe(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let groups = r.array(flex, |r| r.string(flex))?;
        if v >= 3 {
            r.bool()?;
        }
        r.tagged_fields(flex)?;
        Ok(GroupsRequest { groups })
    }

    pub fn decode_delete(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let groups = r.array(flex, |r| r.string(flex))?;
        r.tagged_fields(flex)?;
        Ok(GroupsRequest { groups })
    }
}

#[derive(Debug, Clone)]
pub struct OffsetDeleteRequest {
    pub group_id: String,
    pub topics: Vec<(String, Vec<i32>)>,
}

impl OffsetDeleteRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let group_id = r.string(flex)?;
        let topics = r.array(flex, |r| {
            let name = r.string(flex)?;
            let parts = r.array(flex, |r| r.i32())?;
            Ok((name, parts))
        })?;
        Ok(OffsetDeleteRequest { group_id, topics })
    }
}
