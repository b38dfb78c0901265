//! The coordinators' appends to their replicated internal partitions (the group
//! coordinator's `__consumer_offsets`, the transaction coordinator's `__transaction_state`):
//! the same leadership check and acks=all wait a produce gets, behind the [`Replicator`]
//! seam of [`crate::internal_log`].
//!
//! Invariant: an append is answered only once every in-sync replica has it, by a shard that
//! still leads the partition at the epoch the coordinator loaded it at.

use std::rc::Weak;
use std::time::Duration;

use futures::future::LocalBoxFuture;

use super::leader;
use crate::broker::errors;
use crate::broker::shard::Shard;
use crate::internal_log::Replicator;

/// Kafka's `offsets.commit.timeout.ms` (and `transaction.state.log` write) default: how
/// long an append waits for the replicas.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A shard's side of the seam for one internal topic (weak: the coordinator lives inside
/// the shard).
pub struct ShardReplicator {
    pub shard: Weak<Shard>,
    pub topic: &'static str,
}

/// Whether `shard` leads partition `partition` of `topic` at `epoch`.
pub fn leads(shard: &Shard, topic: &str, partition: i32, epoch: i32) -> bool {
    let cat = shard.catalog();
    cat.locate(topic, partition, shard.nshards) == Some(shard.id)
        && cat
            .place(topic, partition)
            .is_some_and(|p| p.leader_epoch == epoch)
}

impl Replicator for ShardReplicator {
    fn check(&self, partition: i32, epoch: i32) -> Result<(), i16> {
        let shard = self.shard.upgrade().ok_or(errors::NOT_LEADER_OR_FOLLOWER)?;
        if !leads(&shard, self.topic, partition, epoch) {
            return Err(errors::NOT_LEADER_OR_FOLLOWER);
        }
        leader::check_insync(&shard.catalog(), self.topic, partition)
    }

    fn wait(
        &self,
        partition: i32,
        epoch: i32,
        last_offset: i64,
    ) -> LocalBoxFuture<'_, Result<(), i16>> {
        Box::pin(async move {
            let shard = self.shard.upgrade().ok_or(errors::NOT_LEADER_OR_FOLLOWER)?;
            // Followers long-polling for this partition take the batch now.
            shard.data_arrived.notify_all();
            // Appended already: only leadership matters now (a short ISR may still grow;
            // the wait below answers NOT_ENOUGH_REPLICAS_AFTER_APPEND if it does not).
            let log = shard
                .log(self.topic, partition)
                .filter(|_| leads(&shard, self.topic, partition, epoch))
                .ok_or(errors::NOT_LEADER_OR_FOLLOWER)?;
            let code = leader::await_replicated(
                &shard,
                self.topic,
                partition,
                &log,
                last_offset,
                COMMIT_TIMEOUT,
            )
            .await;
            if code == errors::NONE {
                Ok(())
            } else {
                Err(code)
            }
        })
    }
}
