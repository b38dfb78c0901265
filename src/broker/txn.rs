//! The broker around the transaction coordinator: producer ids from the controller shard,
//! markers to the shards owning each partition (the group coordinator for an offsets
//! partition), and the transaction requests answered by the coordinating shard.
//!
//! Invariant: a marker is written by the shard owning its partition, durably, and wakes
//! the read_committed fetches waiting there; the coordinator is told one code per partition.

use crate::protocol::str_bytes as s;

use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use futures::future::LocalBoxFuture;
use kafka_protocol::messages::*;

use super::errors;
use super::shard::Shard;
use super::txn_markers::MarkerCall;
use crate::group::{OFFSETS_PARTITIONS, OFFSETS_TOPIC};
use crate::log::txn_index::Marker;
use crate::protocol::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, DescribeProducersRequest,
    DescribeTransactionsRequest, EndTxnRequest, InitProducerIdRequest, ListTransactionsRequest,
};
use crate::txn::coordinator::TxnHost;
use crate::txn::state::TxnState;

/// The shard's side of [`TxnHost`] (weak: the coordinator lives inside the shard).
pub struct ShardTxnHost(pub Weak<Shard>);

impl TxnHost for ShardTxnHost {
    fn allocate_producer_id(&self) -> LocalBoxFuture<'_, Result<i64, i16>> {
        Box::pin(async move {
            let shard = self.0.upgrade().ok_or(errors::COORDINATOR_NOT_AVAILABLE)?;
            let (code, id, _) = super::producer_id::init_on_controller(&shard, -1, -1).await;
            match code {
                errors::NONE => Ok(id),
                // The controller shard did not answer: a transactional client retries this.
                errors::UNKNOWN_SERVER_ERROR => Err(errors::COORDINATOR_NOT_AVAILABLE),
                code => Err(code),
            }
        })
    }

    fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        let Some(shard) = self.0.upgrade() else {
            return false;
        };
        if topic == OFFSETS_TOPIC {
            return (0..OFFSETS_PARTITIONS).contains(&partition);
        }
        shard
            .catalog()
            .topics
            .get(topic)
            .is_some_and(|m| partition >= 0 && partition < m.partitions)
    }

    fn write_markers(
        &self,
        pid: i64,
        epoch: i16,
        marker: Marker,
        partitions: Vec<(String, i32)>,
    ) -> LocalBoxFuture<'_, Vec<i16>> {
        Box::pin(async move {
            let Some(shard) = self.0.upgrade() else {
                return vec![errors::COORDINATOR_NOT_AVAILABLE; partitions.len()];
            };
            let call = MarkerCall {
                pid,
                epoch,
                marker,
                coordinator_epoch: 0,
                parts: partitions,
            };
            super::txn_markers::deliver(&shard, call, true).await
        })
    }
}

/// InitProducerId with a transactional id, on its coordinator.
pub async fn init_producer_id(
    shard: &Rc<Shard>,
    req: InitProducerIdRequest,
    id: &str,
    version: i16,
) -> InitProducerIdResponse {
    let (code, pid, epoch) = shard
        .txns
        .init_producer_id(
            id,
            req.transaction_timeout_ms,
            (req.producer_id, req.producer_epoch),
            version,
        )
        .await;
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
}

/// AddPartitionsToTxn (v0-3): `denied` topics answer TOPIC_AUTHORIZATION_FAILED and the
/// rest OPERATION_NOT_ATTEMPTED, as Kafka does.
pub async fn add_partitions(
    shard: &Rc<Shard>,
    req: AddPartitionsToTxnRequest,
    denied: &[String],
    version: i16,
) -> AddPartitionsToTxnResponse {
    use kafka_protocol::messages::add_partitions_to_txn_response::*;
    let parts: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
        .collect();
    let codes: Vec<i16> = if !denied.is_empty() {
        parts
            .iter()
            .map(|(t, _)| {
                if denied.contains(t) {
                    super::dispatch::TOPIC_DENIED
                } else {
                    errors::OPERATION_NOT_ATTEMPTED
                }
            })
            .collect()
    } else {
        let p = &req.producer;
        match shard
            .txns
            .add_partitions(
                &p.transactional_id,
                p.producer_id,
                p.producer_epoch,
                &parts,
                version,
            )
            .await
        {
            Ok(()) => vec![errors::NONE; parts.len()],
            Err(c) => c,
        }
    };
    let mut resp = AddPartitionsToTxnResponse::default();
    for ((t, p), code) in parts.into_iter().zip(codes) {
        if resp
            .results_by_topic_v3_and_below
            .last()
            .is_none_or(|x| x.name.0.as_str() != t)
        {
            resp.results_by_topic_v3_and_below
                .push(AddPartitionsToTxnTopicResult::default().with_name(TopicName(s(&t))));
        }
        if let Some(last) = resp.results_by_topic_v3_and_below.last_mut() {
            last.results_by_partition.push(
                AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(p)
                    .with_partition_error_code(code),
            );
        }
    }
    resp
}

/// AddOffsetsToTxn: the group's offsets partition joins the transaction.
pub async fn add_offsets(
    shard: &Rc<Shard>,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let p = &req.producer;
    let part = (
        OFFSETS_TOPIC.to_string(),
        crate::group::offsets_partition(&req.group_id),
    );
    let code = match shard
        .txns
        .add_partitions(
            &p.transactional_id,
            p.producer_id,
            p.producer_epoch,
            &[part],
            version,
        )
        .await
    {
        Ok(()) => errors::NONE,
        Err(c) => c.first().copied().unwrap_or(errors::UNKNOWN_SERVER_ERROR),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub async fn end_txn(shard: &Rc<Shard>, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let p = &req.producer;
    let code = shard
        .txns
        .end_txn(
            &p.transactional_id,
            p.producer_id,
            p.producer_epoch,
            req.committed,
            version,
        )
        .await;
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// DescribeTransactions for the ids this shard coordinates (`allowed` tells which the
/// client may describe).
pub fn describe(
    shard: &Rc<Shard>,
    req: DescribeTransactionsRequest,
    allowed: impl Fn(&str) -> bool,
) -> DescribeTransactionsResponse {
    use kafka_protocol::messages::describe_transactions_response::*;
    let mut resp = DescribeTransactionsResponse::default();
    for id in req.transactional_ids.iter().take(10_000) {
        let mut ts = TransactionState::default().with_transactional_id(TransactionalId(s(id)));
        if !allowed(id) {
            ts.error_code = errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        } else if shard.txns.serves(id) != errors::NONE {
            ts.error_code = errors::NOT_COORDINATOR;
        } else {
            match shard.txns.describe(id) {
                None => ts.error_code = errors::TRANSACTIONAL_ID_NOT_FOUND,
                Some(m) => {
                    ts.transaction_state = s(m.state.name());
                    ts.transaction_timeout_ms = m.timeout_ms;
                    ts.transaction_start_time_ms = m.start_ms;
                    ts.producer_id = ProducerId(m.producer_id);
                    ts.producer_epoch = m.epoch;
                    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                    for (t, p) in &m.partitions {
                        by_topic.entry(t.as_str()).or_default().push(*p);
                    }
                    ts.topics = by_topic
                        .into_iter()
                        .map(|(t, ps)| {
                            TopicData::default()
                                .with_topic(TopicName(s(t)))
                                .with_partitions(ps)
                        })
                        .collect();
                }
            }
        }
        resp.transaction_states.push(ts);
    }
    resp
}

/// ListTransactions: the transactions this shard coordinates (clients ask every broker).
pub fn list(
    shard: &Rc<Shard>,
    req: ListTransactionsRequest,
    allowed: impl Fn(&str) -> bool,
) -> ListTransactionsResponse {
    use kafka_protocol::messages::list_transactions_response::*;
    let mut resp = ListTransactionsResponse::default();
    resp.unknown_state_filters = req
        .state_filters
        .iter()
        .filter(|f| !TxnState::ALL.iter().any(|st| st.name() == f.as_str()))
        .map(s)
        .collect();
    for v in shard
        .txns
        .list(
            &req.state_filters,
            &req.producer_id_filters,
            req.duration_filter_ms,
        )
        .into_iter()
        .filter(|v| allowed(&v.id))
    {
        resp.transaction_states.push(
            TransactionState::default()
                .with_transactional_id(TransactionalId(s(&v.id)))
                .with_producer_id(ProducerId(v.meta.producer_id))
                .with_transaction_state(s(v.meta.state.name())),
        );
    }
    resp
}

/// DescribeProducers for partitions this shard owns (`allowed`: topics the client may read).
pub fn describe_producers(
    shard: &Rc<Shard>,
    req: DescribeProducersRequest,
    allowed: impl Fn(&str) -> bool,
) -> DescribeProducersResponse {
    use kafka_protocol::messages::describe_producers_response::*;
    let mut resp = DescribeProducersResponse::default();
    for (t, ps) in &req.topics {
        let mut tr = TopicResponse::default().with_name(TopicName(s(t)));
        for p in ps {
            let mut pr = PartitionResponse::default().with_partition_index(*p);
            if !allowed(t) {
                pr.error_code = super::dispatch::TOPIC_DENIED;
            } else {
                match shard.log(t, *p) {
                    None if shard.owner(t, *p).is_some()
                        || shard.catalog().topics.contains_key(t) =>
                    {
                        pr.error_code = errors::NOT_LEADER_OR_FOLLOWER
                    }
                    None => pr.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION,
                    Some(log) => {
                        pr.active_producers = log
                            .producers(10_000)
                            .into_iter()
                            .map(|v| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(v.producer_id))
                                    .with_producer_epoch(i32::from(v.epoch))
                                    .with_last_sequence(v.last_sequence)
                                    .with_last_timestamp(v.last_timestamp)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(v.txn_start_offset)
                            })
                            .collect();
                    }
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
