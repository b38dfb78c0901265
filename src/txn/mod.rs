//! Transaction coordinator (KIP-98): transactional ids, their producer ids and epochs, the
//! partitions each open transaction wrote to, and the decision to commit or abort it.
//!
//! Invariants:
//! - A transactional id lives on exactly one shard: the owner (in a cluster: the leader) of
//!   the partition of the internal `__transaction_state` log it hashes to
//!   ([`txn_partition`]); only that shard touches its state, and requests for it that reach
//!   another shard get NOT_COORDINATOR. In a cluster the partitions are replicated like
//!   any other and a state change is answered only once the in-sync replicas have it
//!   ([`partitions`]).
//! - Every state change is written durably to that log before it is answered or acted on,
//!   and the in-memory map follows the log (rebuilt from it on start): a decision
//!   (PrepareCommit/PrepareAbort) that is written is carried out — markers to every
//!   partition, then Complete — even across a crash, by whoever loads the log next.
//! - One operation per transactional id at a time; a second gets CONCURRENT_TRANSACTIONS.
//! - This is the control plane of transactions: it knows transactional ids and partition
//!   names, never shards, connections or how a marker reaches a partition ([`TxnHost`]).

pub mod coordinator;
pub mod partitions;
pub mod records;
pub mod state;

/// Partitions of `__transaction_state` (Kafka's `transaction.state.log.num.partitions`).
/// Fixed: changing it would move transactional ids away from their state.
pub const TXN_PARTITIONS: i32 = 50;
/// Name of the internal transaction state log (on a single node its directories live under
/// `<data-dir>/txns/`; in a cluster it is a replicated topic).
pub const TXN_TOPIC: &str = "__transaction_state";

/// Transaction settings (Kafka broker config names in comments).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the longest timeout a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub abort_scan_ms: i64,
    /// `transaction.state.log.replication.factor` (a cluster; capped by the live nodes
    /// when the topic is created)
    pub replication_factor: usize,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 15 * 60 * 1000,
            abort_scan_ms: 10_000,
            replication_factor: 3,
        }
    }
}

/// The `__transaction_state` partition (and so the coordinator) of a transactional id.
pub fn txn_partition(id: &str) -> i32 {
    (crate::hash::fnv1a(id) % TXN_PARTITIONS as u64) as i32
}
