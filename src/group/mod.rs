//! Consumer groups (classic protocol): membership and rebalances, committed offsets, lag.
//!
//! Invariants:
//! - A group lives on exactly one shard: the owner of the internal offsets partition its id
//!   hashes to ([`offsets_partition`]); only that shard touches its state, and requests for
//!   it that reach another shard get `NOT_COORDINATOR`.
//! - A commit is acknowledged only after its record is written to the group's offsets
//!   partition (an ordinary [`crate::log::Log`]); the in-memory map follows the log and is
//!   rebuilt from it on startup.
//! - `group/` knows the group protocol, not connections or the shard runtime: time is passed
//!   in, waiting is done on oneshot channels.

mod commits;
pub mod coordinator;
pub mod offsets;
pub mod partitions;
pub mod state;
pub mod txn_offsets;

use std::time::Duration;

/// Partitions of the internal offsets log (Kafka's `offsets.topic.num.partitions` default).
/// Fixed: changing it would move groups away from their committed offsets.
pub const OFFSETS_PARTITIONS: i32 = 50;
/// Name of the internal offsets log (its directories live under `<data-dir>/groups/`).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Group settings (Kafka broker config names in comments).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout: Duration,
    /// `offsets.retention.minutes`, as a duration.
    pub offsets_retention: Duration,
    /// `offset.metadata.max.bytes`
    pub max_metadata_bytes: usize,
    /// `group.max.size`
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_secs(3),
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(1800),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            max_metadata_bytes: 4096,
            max_size: 1000,
        }
    }
}

/// The internal offsets partition (and so the coordinator) of a group.
pub fn offsets_partition(group: &str) -> i32 {
    (crate::hash::fnv1a(group) % OFFSETS_PARTITIONS as u64) as i32
}
