//! The group coordinator's commits on a replicated offsets partition: the same leadership
//! check and acks=all wait a produce gets, behind the [`Replicator`] seam `group/` defines.
//!
//! Invariant: a commit is answered only once every in-sync replica has it, by a shard that
//! still leads the partition at the epoch the coordinator loaded it at.

use std::rc::Weak;
use std::time::Duration;

use futures::future::LocalBoxFuture;

use super::leader;
use crate::broker::errors;
use crate::broker::shard::Shard;
use crate::group::partitions::Replicator;
use crate::group::OFFSETS_TOPIC;

/// Kafka's `offsets.commit.timeout.ms` default: how long a commit waits for the replicas.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A shard's side of the seam (weak: the coordinator lives inside the shard).
pub struct ShardReplicator(pub Weak<Shard>);

impl Replicator for ShardReplicator {
    fn check(&self, partition: i32, epoch: i32) -> Result<(), i16> {
        let shard = self.0.upgrade().ok_or(errors::NOT_LEADER_OR_FOLLOWER)?;
        let cat = shard.catalog();
        let leads = cat.locate(OFFSETS_TOPIC, partition, shard.nshards) == Some(shard.id)
            && cat
                .place(OFFSETS_TOPIC, partition)
                .is_some_and(|p| p.leader_epoch == epoch);
        if !leads {
            return Err(errors::NOT_LEADER_OR_FOLLOWER);
        }
        leader::check_insync(&cat, OFFSETS_TOPIC, partition)
    }

    fn wait(
        &self,
        partition: i32,
        epoch: i32,
        last_offset: i64,
    ) -> LocalBoxFuture<'_, Result<(), i16>> {
        Box::pin(async move {
            let shard = self.0.upgrade().ok_or(errors::NOT_LEADER_OR_FOLLOWER)?;
            // Followers long-polling for this partition take the batch now.
            shard.data_arrived.notify_all();
            self.check(partition, epoch).or_else(|e| match e {
                // Appended already: the ISR may still take it.
                errors::NOT_ENOUGH_REPLICAS => Ok(()),
                e => Err(e),
            })?;
            let log = shard
                .log(OFFSETS_TOPIC, partition)
                .ok_or(errors::NOT_LEADER_OR_FOLLOWER)?;
            let code = leader::await_replicated(
                &shard,
                OFFSETS_TOPIC,
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
