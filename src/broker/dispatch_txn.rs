//! The transaction requests, authorized as Kafka does (WRITE on the transactional id; WRITE
//! on the topics added, READ on the group whose offsets join; DESCRIBE on ids listed or
//! described; READ on the topics whose producers are described; CLUSTER_ACTION for the
//! markers another node's coordinator sends) and served by the shard's
//! transaction coordinator ([`super::txn`]) or group coordinator (TxnOffsetCommit). See
//! [`super::dispatch`] for the rules every request follows.

use std::rc::Rc;

use kafka_protocol::messages::*;

use super::authn::Session;
use super::dispatch::{name, CLUSTER, CLUSTER_DENIED, GROUP_DENIED, TOPIC_DENIED, TXN_DENIED};
use super::shard::Shard;
use super::splice::Piece;
use super::txn;
use crate::protocol::{encode_response, ProtocolError, Request, RequestHeader};
use crate::security::acl::{Operation as Op, ResourceType as Rt};

pub async fn dispatch(
    shard: &Rc<Shard>,
    h: RequestHeader,
    req: Request,
    session: &Session,
) -> Result<Option<Vec<Piece>>, ProtocolError> {
    let (k, v, c) = (h.api_key, h.api_version, h.correlation_id);
    let may = |op: Op, rt: Rt, n: &str| session.may(shard, op, rt, n);
    let bytes = match req {
        Request::InitProducerId(r) => {
            let id = r.transactional_id.clone().unwrap_or_default();
            let resp = if !may(Op::Write, Rt::TransactionalId, &id) {
                InitProducerIdResponse::default()
                    .with_error_code(TXN_DENIED)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            } else {
                txn::init_producer_id(shard, r, &id, v).await
            };
            encode_response(k, v, c, &resp)?
        }
        Request::AddPartitionsToTxn(r) => {
            let resp = if !may(Op::Write, Rt::TransactionalId, &r.producer.transactional_id) {
                let denied: Vec<String> = r.topics.iter().map(|(t, _)| t.clone()).collect();
                let mut resp = txn::add_partitions(shard, r, &denied, v).await;
                for t in resp.results_by_topic_v3_and_below.iter_mut() {
                    for p in t.results_by_partition.iter_mut() {
                        p.partition_error_code = TXN_DENIED;
                    }
                }
                resp
            } else {
                let denied: Vec<String> = r
                    .topics
                    .iter()
                    .filter(|(t, _)| !may(Op::Write, Rt::Topic, t))
                    .map(|(t, _)| t.clone())
                    .collect();
                txn::add_partitions(shard, r, &denied, v).await
            };
            encode_response(k, v, c, &resp)?
        }
        Request::AddOffsetsToTxn(r) => {
            let resp = if !may(Op::Write, Rt::TransactionalId, &r.producer.transactional_id) {
                AddOffsetsToTxnResponse::default().with_error_code(TXN_DENIED)
            } else if !may(Op::Read, Rt::Group, &r.group_id) {
                AddOffsetsToTxnResponse::default().with_error_code(GROUP_DENIED)
            } else {
                txn::add_offsets(shard, r, v).await
            };
            encode_response(k, v, c, &resp)?
        }
        Request::EndTxn(r) => {
            let resp = if !may(Op::Write, Rt::TransactionalId, &r.producer.transactional_id) {
                EndTxnResponse::default().with_error_code(TXN_DENIED)
            } else {
                txn::end_txn(shard, r, v).await
            };
            encode_response(k, v, c, &resp)?
        }
        Request::TxnOffsetCommit(mut r) => {
            let whole = if !may(Op::Write, Rt::TransactionalId, &r.transactional_id) {
                Some(TXN_DENIED)
            } else if !may(Op::Read, Rt::Group, &r.group_id) {
                Some(GROUP_DENIED)
            } else {
                None
            };
            let denied: Vec<(String, Vec<i32>)> = r
                .topics
                .iter()
                .filter(|(t, _)| whole.is_some() || !may(Op::Read, Rt::Topic, t))
                .map(|(t, ps)| (t.clone(), ps.iter().map(|o| o.partition).collect()))
                .collect();
            r.topics
                .retain(|(t, _)| !denied.iter().any(|(d, _)| d == t));
            let mut resp = if r.topics.is_empty() {
                Default::default()
            } else {
                shard.groups.txn_commit(r).await
            };
            use kafka_protocol::messages::txn_offset_commit_response::*;
            for (t, ps) in denied {
                let mut tr = TxnOffsetCommitResponseTopic::default().with_name(name(&t));
                for p in ps {
                    tr.partitions.push(
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p)
                            .with_error_code(whole.unwrap_or(TOPIC_DENIED)),
                    );
                }
                resp.topics.push(tr);
            }
            encode_response(k, v, c, &resp)?
        }
        Request::DescribeTransactions(r) => {
            let resp = txn::describe(shard, r, |id| may(Op::Describe, Rt::TransactionalId, id));
            encode_response(k, v, c, &resp)?
        }
        Request::ListTransactions(r) => {
            let resp = txn::list(shard, r, |id| may(Op::Describe, Rt::TransactionalId, id));
            encode_response(k, v, c, &resp)?
        }
        Request::WriteTxnMarkers(r) => {
            // Sent by other nodes' coordinators: CLUSTER_ACTION, like a follower's fetch.
            let resp = if session.may(shard, Op::ClusterAction, Rt::Cluster, CLUSTER) {
                super::txn_markers::handle(shard, r).await
            } else {
                super::txn_markers::refuse(r, CLUSTER_DENIED)
            };
            encode_response(k, v, c, &resp)?
        }
        Request::DescribeProducers(r) => {
            let resp = txn::describe_producers(shard, r, |t| may(Op::Read, Rt::Topic, t));
            encode_response(k, v, c, &resp)?
        }
        _ => return Ok(None),
    };
    Ok(Some(vec![Piece::Bytes(bytes)]))
}
