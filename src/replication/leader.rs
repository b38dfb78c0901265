//! The leader's side: follower fetches checked against the leader epoch and the epoch
//! history (KIP-101/KIP-320), follower progress, the high watermark, and acks=all.

use std::time::{Duration, Instant};

use super::Progress;
use crate::broker::catalog::{self, Catalog, PartitionPlace};
use crate::broker::errors;
use crate::broker::shard::Shard;
use crate::log::{now_ms, Log};
use crate::protocol::FetchPartition;

/// `min.insync.replicas` of a topic (at most its replication factor).
pub fn min_insync(cat: &Catalog, topic: &str, replicas: usize) -> usize {
    cat.topics
        .get(topic)
        .and_then(|m| m.configs.get("min.insync.replicas"))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, replicas.max(1))
}

/// Whether the partition has followers at all (one replica: nothing to wait for).
pub fn replicated(place: &PartitionPlace) -> bool {
    place.replicas.len() > 1
}

/// Checks a follower's fetch (`replica_id` ≥ 0) of a partition this shard leads: `Ok(None)`
/// to read up to the log end, `Ok(Some((epoch, end)))` when the follower's log diverged
/// and must be truncated there first, or the error to answer. Records the follower's
/// progress and advances the high watermark.
pub fn check_fetch(
    shard: &Shard,
    cat: &Catalog,
    topic: &str,
    p: &FetchPartition,
    replica_id: i32,
    log: &Log,
) -> Result<Option<(i32, i64)>, i16> {
    let (Some(cm), Some(place)) = (&cat.cluster, cat.place(topic, p.partition)) else {
        return Err(errors::NOT_LEADER_OR_FOLLOWER);
    };
    let (node, fshard) = catalog::node_and_shard(replica_id);
    if node == cm.local || place.shard_on(node) != Some(fshard) {
        // Not a follower of this partition (yet): it retries once its metadata catches up.
        return Err(errors::UNKNOWN_LEADER_EPOCH);
    }
    if p.current_leader_epoch >= 0 {
        if p.current_leader_epoch < place.leader_epoch {
            return Err(errors::FENCED_LEADER_EPOCH);
        }
        if p.current_leader_epoch > place.leader_epoch {
            return Err(errors::UNKNOWN_LEADER_EPOCH);
        }
    }
    if p.last_fetched_epoch >= 0 {
        match log.end_offset_for_epoch(p.last_fetched_epoch) {
            Some((e, end)) if e == p.last_fetched_epoch && p.fetch_offset <= end => {}
            Some((e, end)) => return Ok(Some((e, end.min(p.fetch_offset)))),
            None => return Ok(Some((-1, log.log_start_offset()))),
        }
    }
    let now = now_ms();
    let leader_end = log.written_end();
    let key = (topic.to_string(), p.partition);
    {
        let mut all = shard.replication.progress.borrow_mut();
        let followers = all.entry(key).or_default();
        let before = followers.get(&node).copied();
        // Caught up now if it has everything; else as of its previous fetch if it now has
        // everything the leader had then (Kafka's rule, so a steady stream of appends does
        // not make a keeping-up follower look behind).
        let caught_up_ms = match before {
            _ if p.fetch_offset >= leader_end => now,
            Some(b) if p.fetch_offset >= b.leader_end_at_fetch => {
                b.last_fetch_ms.max(b.caught_up_ms)
            }
            Some(b) => b.caught_up_ms,
            None => 0,
        };
        followers.insert(
            node,
            Progress {
                log_end: p.fetch_offset,
                last_fetch_ms: now,
                caught_up_ms,
                leader_end_at_fetch: leader_end,
            },
        );
    }
    update_high_watermark(shard, cat, topic, p.partition, log);
    Ok(None)
}

/// Recomputes a led partition's high watermark: the smallest log end among the in-sync
/// replicas (a follower not heard from since this shard led counts at the current high
/// watermark), held while the ISR is below `min.insync.replicas`; never lowered.
pub fn update_high_watermark(shard: &Shard, cat: &Catalog, topic: &str, partition: i32, log: &Log) {
    let (Some(cm), Some(place)) = (&cat.cluster, cat.place(topic, partition)) else {
        return;
    };
    if !replicated(place) {
        log.set_committed(None);
        return;
    }
    let current = log.high_watermark();
    let min_isr = min_insync(cat, topic, place.replicas.len());
    if place.isr.len() < min_isr {
        log.set_committed(Some(current));
        return;
    }
    let mut hw = log.written_end();
    {
        let all = shard.replication.progress.borrow();
        let followers = all.get(&(topic.to_string(), partition));
        for n in place.isr.iter().filter(|n| **n != cm.local) {
            let end = followers
                .and_then(|f| f.get(n))
                .map_or(current, |p| p.log_end);
            hw = hw.min(end);
        }
    }
    let hw = hw.max(current);
    if hw > current {
        log.set_committed(Some(hw));
        shard.data_arrived.notify_all();
    } else {
        log.set_committed(Some(current));
    }
}

/// Before an acks=all append to a replicated partition: NOT_ENOUGH_REPLICAS while the ISR
/// is smaller than `min.insync.replicas`.
pub fn check_insync(cat: &Catalog, topic: &str, partition: i32) -> Result<(), i16> {
    match cat.place(topic, partition) {
        Some(place) if replicated(place) => {
            if place.isr.len() < min_insync(cat, topic, place.replicas.len()) {
                Err(errors::NOT_ENOUGH_REPLICAS)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// After an acks=all append up to `last_offset`: waits until every in-sync replica has it
/// (the high watermark passes it). The error to answer if this shard stops leading
/// (NOT_LEADER_OR_FOLLOWER), the ISR shrinks below the minimum
/// (NOT_ENOUGH_REPLICAS_AFTER_APPEND), or `timeout` passes (REQUEST_TIMED_OUT).
pub async fn await_replicated(
    shard: &Shard,
    topic: &str,
    partition: i32,
    log: &Log,
    last_offset: i64,
    timeout: Duration,
) -> i16 {
    let deadline = Instant::now() + timeout;
    let epoch = shard
        .catalog()
        .place(topic, partition)
        .map(|p| p.leader_epoch);
    // Each pass waits for a write, a high watermark move or the deadline.
    loop {
        let changed = log.written();
        let cat = shard.catalog();
        update_high_watermark(shard, &cat, topic, partition, log);
        if log.high_watermark() > last_offset {
            return errors::NONE;
        }
        let Some(place) = cat.place(topic, partition).filter(|p| replicated(p)) else {
            return errors::NONE;
        };
        let leading = cat.locate(topic, partition, shard.nshards) == Some(shard.id);
        if !leading || Some(place.leader_epoch) != epoch {
            return errors::NOT_LEADER_OR_FOLLOWER;
        }
        if place.isr.len() < min_insync(&cat, topic, place.replicas.len()) {
            return errors::NOT_ENOUGH_REPLICAS_AFTER_APPEND;
        }
        let now = Instant::now();
        if now >= deadline || shard.stopping.get() {
            return errors::REQUEST_TIMED_OUT;
        }
        // Woken by writes and high watermark moves; the catalog is checked again each
        // pass, at least every 100 ms.
        let wait = (deadline - now).min(Duration::from_millis(100));
        crate::runtime::timeout(wait, changed).await;
    }
}

/// On the leader, every few hundred milliseconds: the ISR each led partition should have —
/// followers not caught up for `replica.lag.time.max.ms` out, followers that reached the
/// high watermark back in — proposed to the quorum where it differs (one proposal per
/// partition at a time; the next check retries if it did not commit).
pub fn isr_check(shard: &std::rc::Rc<Shard>) {
    let Some(proposer) = shard.proposer.clone() else {
        return;
    };
    let cat = shard.catalog();
    let Some(cm) = &cat.cluster else {
        return;
    };
    let now = now_ms();
    let lag_max = shard.cfg.replica_lag_time_max_ms as i64;
    let mut changes = Vec::new();
    {
        let progress = shard.replication.progress.borrow();
        let led_since = shard.replication.led_since.borrow();
        let in_flight = shard.replication.isr_in_flight.borrow();
        for (key, (epoch, since)) in led_since.iter() {
            let Some(place) = cat.place(&key.0, key.1).filter(|p| replicated(p)) else {
                continue;
            };
            if place.leader_epoch != *epoch || in_flight.contains(key) {
                continue;
            }
            let Some(log) = shard.log(&key.0, key.1) else {
                continue;
            };
            let hw = log.high_watermark();
            // A returning follower must also hold the start of this leader's epoch (Kafka's
            // rule): until this leader appends, its whole log.
            let epoch_start = log
                .epoch_start(place.leader_epoch)
                .unwrap_or_else(|| log.written_end());
            let followers = progress.get(key);
            let live = |n: u64| cm.nodes.get(&n).is_some_and(|a| a.live);
            let mut isr: Vec<u64> = Vec::with_capacity(place.replicas.len());
            for (node, _) in &place.replicas {
                let p = followers.and_then(|f| f.get(node));
                let keep = if *node == cm.local {
                    true
                } else if place.isr.contains(node) {
                    // Out once it has not caught up for the lag limit (counting from when
                    // this shard started leading, for a follower not heard from yet).
                    let caught = p.map_or(*since, |p| p.caught_up_ms.max(*since));
                    now - caught <= lag_max
                } else {
                    // Back in once it has everything below the high watermark and this
                    // epoch's start.
                    live(*node)
                        && p.is_some_and(|p| {
                            p.log_end >= hw.max(epoch_start) && now - p.last_fetch_ms <= lag_max
                        })
                };
                if keep {
                    isr.push(*node);
                }
            }
            if isr != place.isr {
                changes.push((
                    key.clone(),
                    place.leader_epoch,
                    place.partition_epoch,
                    place.isr.clone(),
                    isr,
                ));
            }
        }
    }
    for (key, leader_epoch, partition_epoch, old, isr) in changes {
        shard
            .replication
            .isr_in_flight
            .borrow_mut()
            .insert(key.clone());
        let shard = shard.clone();
        let proposer = proposer.clone();
        crate::runtime::spawn_local(async move {
            tracing::info!(topic = %key.0, partition = key.1, isr = ?isr, "proposing an ISR change");
            let cmd = crate::cluster::state::Command::AlterIsr {
                topic: key.0.clone(),
                partition: key.1.max(0) as u32,
                leader_epoch,
                partition_epoch,
                isr: isr.clone(),
            };
            match proposer.propose(cmd, Duration::from_secs(5)).await {
                Ok(crate::cluster::state::Outcome::Done) => shard.replication.count(|s| {
                    s.isr_shrinks += u64::from(old.iter().any(|n| !isr.contains(n)));
                    s.isr_expands += u64::from(isr.iter().any(|n| !old.contains(n)));
                }),
                Ok(other) => {
                    tracing::debug!(topic = %key.0, partition = key.1, "ISR change not applied: {other:?}")
                }
                Err(e) => {
                    tracing::debug!(topic = %key.0, partition = key.1, "ISR change not committed: {e}")
                }
            }
            shard.replication.isr_in_flight.borrow_mut().remove(&key);
        });
    }
}

/// OffsetsForLeaderEpoch: for each partition this shard leads, the largest epoch ≤ the one
/// asked and where it ends in this log (KIP-279; the log end for the newest), after the
/// KIP-320 check of the asker's current leader epoch. Partitions led elsewhere get
/// NOT_LEADER_OR_FOLLOWER (each shard is its own broker: clients ask the leader's).
pub fn offsets_for_leader_epoch(
    shard: &Shard,
    req: crate::protocol::OffsetForLeaderEpochRequest,
) -> kafka_protocol::messages::OffsetForLeaderEpochResponse {
    use kafka_protocol::messages::offset_for_leader_epoch_response::{
        EpochEndOffset, OffsetForLeaderTopicResult,
    };
    use kafka_protocol::messages::{OffsetForLeaderEpochResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let cat = shard.catalog();
    let mut resp = OffsetForLeaderEpochResponse::default();
    for (topic, partition, current, epoch) in req.partitions {
        let mut out = EpochEndOffset::default();
        out.partition = partition;
        out.leader_epoch = -1;
        out.end_offset = -1;
        let known = cat
            .topics
            .get(&topic)
            .is_some_and(|m| partition >= 0 && partition < m.partitions);
        let leader_epoch = cat.place(&topic, partition).map_or(0, |p| p.leader_epoch);
        match shard.log(&topic, partition) {
            _ if !known => out.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION,
            Some(log) if cat.locate(&topic, partition, shard.nshards) == Some(shard.id) => {
                if current >= 0 && current < leader_epoch {
                    out.error_code = errors::FENCED_LEADER_EPOCH;
                } else if current > leader_epoch {
                    out.error_code = errors::UNKNOWN_LEADER_EPOCH;
                } else if let Some((e, end)) = log.end_offset_for_epoch(epoch) {
                    out.leader_epoch = e;
                    out.end_offset = end;
                }
            }
            _ => out.error_code = errors::NOT_LEADER_OR_FOLLOWER,
        }
        match resp.topics.last_mut() {
            Some(t) if t.topic.0.as_str() == topic => t.partitions.push(out),
            _ => {
                let mut t = OffsetForLeaderTopicResult::default();
                t.topic = TopicName(StrBytes::from_string(topic));
                t.partitions = vec![out];
                resp.topics.push(t);
            }
        }
    }
    resp
}
