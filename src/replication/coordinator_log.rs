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

/// Whether `shard` leads offsets partition `partition` at `epoch`.
fn leads(shard: &Shard, partition: i32, epoch: i32) -> bool {
    let cat = shard.catalog();
    cat.locate(OFFSETS_TOPIC, partition, shard.nshards) == Some(shard.id)
        && cat
            .place(OFFSETS_TOPIC, partition)
            .is_some_and(|p| p.leader_epoch == epoch)
}

impl Replicator for ShardReplicator {
    fn check(&self, partition: i32, epoch: i32) -> Result<(), i16> {
        let shard = self.0.upgrade().ok_or(errors::NOT_LEADER_OR_FOLLOWER)?;
        if !leads(&shard, partition, epoch) {
            return Err(errors::NOT_LEADER_OR_FOLLOWER);
        }
        leader::check_insync(&shard.catalog(), OFFSETS_TOPIC, partition)
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
            // Appended already: only leadership matters now (a short ISR may still grow;
            // the wait below answers NOT_ENOUGH_REPLICAS_AFTER_APPEND if it does not).
            let log = shard
                .log(OFFSETS_TOPIC, partition)
                .filter(|_| leads(&shard, partition, epoch))
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
