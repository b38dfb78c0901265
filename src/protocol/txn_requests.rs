//! Transaction requests (KIP-98) and their version-aware decoders: the versions librdkafka,
//! the Java client 3.9 and kafkajs send (the client-side ones of AddPartitionsToTxn, v0-3).

use super::group_requests::CommitPartition;
use super::topic_partitions;
use super::wire::{Reader, Result};

/// The transactional producer every transaction request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnProducer {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl TxnProducer {
    fn decode(r: &mut Reader, flex: bool) -> Result<Self> {
        Ok(TxnProducer {
            transactional_id: r.string(flex)?,
            producer_id: r.i64()?,
            producer_epoch: r.i16()?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AddPartitionsToTxnRequest {
    pub producer: TxnProducer,
    pub topics: Vec<(String, Vec<i32>)>,
}

impl AddPartitionsToTxnRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let producer = TxnProducer::decode(r, flex)?;
        let topics = topic_partitions(r, flex)?;
        r.tagged_fields(flex)?;
        Ok(AddPartitionsToTxnRequest { producer, topics })
    }
}

#[derive(Debug, Clone)]
pub struct AddOffsetsToTxnRequest {
    pub producer: TxnProducer,
    pub group_id: String,
}

impl AddOffsetsToTxnRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let producer = TxnProducer::decode(r, flex)?;
        let group_id = r.string(flex)?;
        r.tagged_fields(flex)?;
        Ok(AddOffsetsToTxnRequest { producer, group_id })
    }
}

#[derive(Debug, Clone)]
pub struct EndTxnRequest {
    pub producer: TxnProducer,
    pub committed: bool,
}

impl EndTxnRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let producer = TxnProducer::decode(r, flex)?;
        let committed = r.i8()? != 0;
        r.tagged_fields(flex)?;
        Ok(EndTxnRequest {
            producer,
            committed,
        })
    }
}

#[derive(Debug, Clone)]
pub struct TxnOffsetCommitRequest {
    pub transactional_id: String,
    pub group_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// v3+ (KIP-447): the consumer's group membership, -1 / "" when not given.
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

impl TxnOffsetCommitRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let transactional_id = r.string(flex)?;
        let group_id = r.string(flex)?;
        let producer_id = r.i64()?;
        let producer_epoch = r.i16()?;
        let (generation_id, member_id, group_instance_id) = if v >= 3 {
            (r.i32()?, r.string(flex)?, r.nullable_string(flex)?)
        } else {
            (-1, String::new(), None)
        };
        let topics = CommitPartition::decode_topics(r, flex, v >= 2, false)?;
        r.tagged_fields(flex)?;
        Ok(TxnOffsetCommitRequest {
            transactional_id,
            group_id,
            producer_id,
            producer_epoch,
            generation_id,
            member_id,
            group_instance_id,
            topics,
        })
    }
}

#[derive(Debug, Clone)]
pub struct DescribeTransactionsRequest {
    pub transactional_ids: Vec<String>,
}

impl DescribeTransactionsRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let transactional_ids = r.array(flex, |r| r.string(flex))?;
        r.tagged_fields(flex)?;
        Ok(DescribeTransactionsRequest { transactional_ids })
    }
}

#[derive(Debug, Clone)]
pub struct ListTransactionsRequest {
    pub state_filters: Vec<String>,
    pub producer_id_filters: Vec<i64>,
    /// v1+: only transactions running longer than this (ms); -1 any.
    pub duration_filter_ms: i64,
}

impl ListTransactionsRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let state_filters = r.array(flex, |r| r.string(flex))?;
        let producer_id_filters = r.array(flex, |r| r.i64())?;
        let duration_filter_ms = if v >= 1 { r.i64()? } else { -1 };
        r.tagged_fields(flex)?;
        Ok(ListTransactionsRequest {
            state_filters,
            producer_id_filters,
            duration_filter_ms,
        })
    }
}

#[derive(Debug, Clone)]
pub struct DescribeProducersRequest {
    pub topics: Vec<(String, Vec<i32>)>,
}

impl DescribeProducersRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let topics = topic_partitions(r, flex)?;
        r.tagged_fields(flex)?;
        Ok(DescribeProducersRequest { topics })
    }
}

/// One transaction's marker for some partitions (WriteTxnMarkers, sent broker to broker).
#[derive(Debug, Clone)]
pub struct TxnMarkerEntry {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub committed: bool,
    pub topics: Vec<(String, Vec<i32>)>,
    pub coordinator_epoch: i32,
}

#[derive(Debug, Clone)]
pub struct WriteTxnMarkersRequest {
    pub markers: Vec<TxnMarkerEntry>,
}

impl WriteTxnMarkersRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let markers = r.array(flex, |r| {
            let producer_id = r.i64()?;
            let producer_epoch = r.i16()?;
            let committed = r.i8()? != 0;
            let topics = topic_partitions(r, flex)?;
            let coordinator_epoch = r.i32()?;
            r.tagged_fields(flex)?;
            Ok(TxnMarkerEntry {
                producer_id,
                producer_epoch,
                committed,
                topics,
                coordinator_epoch,
            })
        })?;
        r.tagged_fields(flex)?;
        Ok(WriteTxnMarkersRequest { markers })
    }
}
