//! What the two coordinators (groups over `__consumer_offsets`, transactions over
//! `__transaction_state`) share about the internal partitions they keep their state in: a
//! held partition, the seam through which an append reaches the in-sync replicas, how a
//! partition error reads to a coordinator's client, and which partitions to load or drop
//! when leadership moves.
//!
//! Invariants: a coordinator's append is acknowledged only once it is durable here and, in
//! a cluster, on every in-sync replica, by a shard still leading the partition at the epoch
//! it was loaded at. This module knows the log and Kafka's error codes, not shards, groups
//! or transactions.

use std::cell::RefCell;
use std::collections::HashMap;

use futures::future::LocalBoxFuture;
use tracing::error;

use crate::log::{AppendInfo, Log};

pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
pub const KAFKA_STORAGE_ERROR: i16 = 56;

/// An internal partition a coordinator holds.
#[derive(Clone)]
pub struct Held {
    pub log: Log,
    /// The leader epoch it was loaded at; `None` for a single node's own log.
    pub epoch: Option<i32>,
}

/// How appends to a replicated internal partition reach its in-sync replicas (implemented
/// by the shard, which knows leadership and followers).
pub trait Replicator {
    /// Before an append: this shard still leads `partition` at `epoch` and its ISR is large
    /// enough; otherwise the partition's Kafka error.
    fn check(&self, partition: i32, epoch: i32) -> Result<(), i16>;
    /// After an append up to `last_offset`: waits until the in-sync replicas have it.
    fn wait(
        &self,
        partition: i32,
        epoch: i32,
        last_offset: i64,
    ) -> LocalBoxFuture<'_, Result<(), i16>>;
}

/// A partition error as a coordinator's client sees it (Kafka's mapping for offset commits
/// and transaction state): clients retry COORDINATOR_NOT_AVAILABLE and look the
/// coordinator up again on NOT_COORDINATOR.
pub fn coordinator_error(code: i16) -> i16 {
    match code {
        NOT_ENOUGH_REPLICAS | NOT_ENOUGH_REPLICAS_AFTER_APPEND | REQUEST_TIMED_OUT => {
            COORDINATOR_NOT_AVAILABLE
        }
        NOT_LEADER_OR_FOLLOWER | KAFKA_STORAGE_ERROR => NOT_COORDINATOR,
        other => other,
    }
}

/// Appends `batch` to held partition `p` durably and, when it is replicated, checks
/// leadership first and waits for the in-sync replicas after: the append, or the
/// coordinator's error (`what` names the state in the log line).
pub async fn append(
    p: i32,
    held: &Held,
    replicator: Option<&dyn Replicator>,
    batch: &[u8],
    what: &str,
) -> Result<AppendInfo, i16> {
    let replicated = held.epoch.zip(replicator);
    if let Some((epoch, r)) = replicated {
        r.check(p, epoch).map_err(coordinator_error)?;
    }
    let info = held.log.append_with(batch, true).await.map_err(|e| {
        error!(partition = p, "{what} not written: {e}");
        coordinator_error(KAFKA_STORAGE_ERROR)
    })?;
    if let Some((epoch, r)) = replicated {
        r.wait(p, epoch, info.last_offset)
            .await
            .map_err(coordinator_error)?;
    }
    Ok(info)
}

/// What a leadership change means for a coordinator's partitions.
pub struct LeadPlan {
    /// Held replicated partitions no longer led at the epoch they were loaded at: drop
    /// them and what was loaded from them.
    pub resign: Vec<i32>,
    /// Loads under way for an epoch that is over: abandon them.
    pub abandon: Vec<i32>,
    /// Partitions now led and neither held nor loading at that epoch: (partition, epoch,
    /// log) to load.
    pub load: Vec<(i32, i32, Log)>,
}

/// Compares what a coordinator holds (`held`: partition and the epoch it was loaded at,
/// `None` for a single node's own) and is loading (`loading`: partition, epoch) with what
/// its shard leads now (`led`: partition, epoch, log).
pub fn plan_lead(
    held: &[(i32, Option<i32>)],
    loading: &[(i32, i32)],
    led: &[(i32, i32, Log)],
) -> LeadPlan {
    let leads = |p: i32, e: i32| led.iter().any(|(q, f, _)| *q == p && *f == e);
    let resign = held
        .iter()
        .filter(|(p, e)| e.is_some_and(|e| !leads(*p, e)))
        .map(|(p, _)| *p)
        .collect();
    let abandon = loading
        .iter()
        .filter(|(p, e)| !leads(*p, *e))
        .map(|(p, _)| *p)
        .collect();
    let load = led
        .iter()
        .filter(|(p, e, _)| {
            !held.iter().any(|(q, f)| q == p && *f == Some(*e))
                && !loading.iter().any(|(q, f)| q == p && f == e)
        })
        .cloned()
        .collect();
    LeadPlan {
        resign,
        abandon,
        load,
    }
}

/// Applies a leadership change to a coordinator's held and loading partitions: abandoned
/// loads are forgotten and new ones marked loading. Returns the partitions to resign (the
/// caller drops what it loaded from them, then them) and those to load.
pub fn lead(
    logs: &RefCell<HashMap<i32, Held>>,
    loading: &RefCell<HashMap<i32, i32>>,
    led: &[(i32, i32, Log)],
) -> (Vec<i32>, Vec<(i32, i32, Log)>) {
    let held: Vec<(i32, Option<i32>)> = logs.borrow().iter().map(|(p, h)| (*p, h.epoch)).collect();
    let now_loading: Vec<(i32, i32)> = loading.borrow().iter().map(|(p, e)| (*p, *e)).collect();
    let plan = plan_lead(&held, &now_loading, led);
    let mut loading = loading.borrow_mut();
    for p in &plan.abandon {
        loading.remove(p);
    }
    for (p, epoch, _) in &plan.load {
        loading.insert(*p, *epoch);
    }
    (plan.resign, plan.load)
}
