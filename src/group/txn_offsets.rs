//! Transactional offset commits (KIP-98's TxnOffsetCommit): offsets a transactional
//! producer stages for a group, visible to the group only once its transaction commits.
//!
//! On the offsets partition a staged offset is a record keyed `[2][producer id][group]
//! [topic][partition]` (value as a commit's); the transaction's marker, when it reaches
//! the partition, is written as one batch: the commit records of the staged offsets (on
//! COMMIT) and a resolution record `[3][producer id]`, after which replay forgets them.
//!
//! Invariants: staged offsets are applied to the group only from the marker's write, in
//! log order; a partition with staged offsets is not compacted into a snapshot (the records
//! must survive to the marker); replay rebuilds the staged set (staged after the producer's
//! last resolution).

use std::collections::HashMap;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponse, TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::TopicName;

use super::commits::fail_planned;
use super::coordinator::{s, Coordinator, NOT_COORDINATOR};
use super::offsets::{decode_value, encode_key, encode_value, OffsetKey};
use super::offsets_partition;
use super::state::{self, Committed};
use crate::log::batch::BatchScan;
use crate::log::records::read_records;
use crate::log::{now_ms, Isolation, Log, LogError};
use crate::protocol::TxnOffsetCommitRequest;

const STAGED: u8 = 2;
const RESOLVED: u8 = 3;
/// Offsets one producer may stage on one partition.
const MAX_STAGED: usize = 100_000;

/// Staged offsets of one offsets partition: producer id → (key → offset).
pub type Staged = HashMap<i64, HashMap<OffsetKey, Committed>>;

fn staged_key(pid: i64, group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = vec![STAGED];
    k.extend(pid.to_be_bytes());
    k.extend_from_slice(&encode_key(group, topic, partition)[1..]);
    k
}

fn resolved_key(pid: i64) -> Vec<u8> {
    let mut k = vec![RESOLVED];
    k.extend(pid.to_be_bytes());
    k
}

/// (producer id, the offset key) of a staged record's key.
fn decode_staged(b: &[u8]) -> Option<(i64, OffsetKey)> {
    if b.first() != Some(&STAGED) || b.len() < 9 {
        return None;
    }
    let pid = i64::from_be_bytes(b[1..9].try_into().ok()?);
    let mut k = vec![1u8];
    k.extend_from_slice(&b[9..]);
    Some((pid, super::offsets::decode_key(&k)?))
}

fn decode_resolved(b: &[u8]) -> Option<i64> {
    if b.first() != Some(&RESOLVED) || b.len() != 9 {
        return None;
    }
    Some(i64::from_be_bytes(b[1..9].try_into().ok()?))
}

/// Rebuilds the staged offsets of an offsets partition from its whole log.
pub async fn replay_staged(log: &Log) -> Result<Staged, LogError> {
    let mut out: Staged = HashMap::new();
    let mut next = log.log_start_offset();
    while next < log.written_end() {
        let r = log.read_as(next, 8 << 20, true, Isolation::Replica).await?;
        let mut advanced = false;
        for (at, h) in BatchScan::new(&r.records, false) {
            for (off, k, v) in read_records(&r.records[at..at + h.size]) {
                let Some(k) = k.filter(|_| off >= next) else {
                    continue;
                };
                if let Some((pid, key)) = decode_staged(k) {
                    if let Some(c) = v.and_then(decode_value) {
                        out.entry(pid).or_default().insert(key, c);
                    }
                } else if let Some(pid) = decode_resolved(k) {
                    out.remove(&pid);
                }
            }
            next = h.last_offset() + 1;
            advanced = true;
        }
        if !advanced {
            break;
        }
    }
    Ok(out)
}

impl Coordinator {
    /// TxnOffsetCommit: stages the offsets durably for the producer's transaction.
    pub async fn txn_commit(&self, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
        let serves = self.serves(&req.group_id);
        let group_code = if serves != state::NONE {
            serves
        } else if req.generation_id < 0 {
            // A producer that does not name the consumer's membership (before KIP-447).
            state::NONE
        } else {
            let groups = self.groups.borrow();
            match groups.get(&req.group_id) {
                Some(g) => g.check_commit(
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                ),
                None => state::NONE,
            }
        };
        let p = offsets_partition(&req.group_id);
        let staged_now = self
            .staged
            .borrow()
            .get(&p)
            .and_then(|s| s.get(&req.producer_id))
            .map_or(0, |m| m.len());
        let room = MAX_STAGED.saturating_sub(staged_now);
        let (mut codes, planned) = self.plan_commit(group_code, &req.topics, room);
        let writes: Vec<(OffsetKey, Committed)> = planned
            .into_iter()
            .map(|(t, part, c)| ((req.group_id.clone(), t, part), c))
            .collect();
        if !writes.is_empty() {
            let records = writes
                .iter()
                .map(|((g, t, part), c)| {
                    (
                        staged_key(req.producer_id, g, t, *part),
                        Some(encode_value(c)),
                    )
                })
                .collect();
            match self.append_records(&req.group_id, records).await {
                Ok(_) => {
                    let mut staged = self.staged.borrow_mut();
                    let mine = staged
                        .entry(p)
                        .or_default()
                        .entry(req.producer_id)
                        .or_default();
                    mine.extend(writes);
                }
                Err(code) => fail_planned(&mut codes, code),
            }
        }
        let mut resp = TxnOffsetCommitResponse::default();
        for (topic, tc) in codes {
            let mut t = TxnOffsetCommitResponseTopic::default();
            t.name = TopicName(s(&topic));
            for (p, code) in tc {
                let mut pr = TxnOffsetCommitResponsePartition::default();
                pr.partition_index = p;
                pr.error_code = code;
                t.partitions.push(pr);
            }
            resp.topics.push(t);
        }
        resp
    }

    /// A transaction marker for offsets partition `p`: the producer's staged offsets there
    /// become the groups' committed offsets (`commit`) or are dropped.
    pub async fn txn_marker(&self, p: i32, pid: i64, commit: bool) -> i16 {
        let Some(held) = self.logs.borrow().get(&p).cloned() else {
            return NOT_COORDINATOR;
        };
        let Some(mine) = self
            .staged
            .borrow()
            .get(&p)
            .and_then(|s| s.get(&pid))
            .cloned()
        else {
            return state::NONE;
        };
        let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        if commit {
            for ((g, t, part), c) in &mine {
                records.push((encode_key(g, t, *part), Some(encode_value(c))));
            }
        }
        records.push((resolved_key(pid), Some(vec![1, u8::from(commit)])));
        match self.append_to(p, &held, records).await {
            Ok(at) => {
                if let Some(s) = self.staged.borrow_mut().get_mut(&p) {
                    s.remove(&pid);
                }
                if commit {
                    for (key, c) in mine {
                        // A group that only ever committed through transactions (no
                        // member joined) exists from its first commit on, as on replay.
                        self.groups
                            .borrow_mut()
                            .entry(key.0.clone())
                            .or_insert_with(|| super::state::Group::new(&key.0, now_ms()));
                        self.apply(key, at, Some(c));
                    }
                }
                state::NONE
            }
            Err(code) => code,
        }
    }

    /// Whether offsets partition `p` has staged offsets (not to be compacted now).
    pub(super) fn has_staged(&self, p: i32) -> bool {
        self.staged.borrow().get(&p).is_some_and(|s| !s.is_empty())
    }

    /// Whether `(group, topic, partition)` has an offset staged by an open transaction.
    pub fn is_unstable(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (group.to_string(), topic.to_string(), partition);
        self.staged
            .borrow()
            .get(&offsets_partition(group))
            .is_some_and(|s| s.values().any(|m| m.contains_key(&key)))
    }
}
