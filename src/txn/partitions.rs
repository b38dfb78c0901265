//! The `__transaction_state` partitions a coordinator holds in a cluster: ordinary
//! replicated partitions (`cleanup.policy=compact`, cleaned by the log cleaner) placed by
//! the metadata quorum. The shard leading one coordinates its transactional ids: they are
//! rebuilt from the log when leadership arrives and dropped when it goes, and every state
//! change is answered only once the in-sync replicas have it
//! ([`crate::internal_log::append`]).
//!
//! Invariants: an id is served only while its partition is held at the leader epoch it was
//! loaded at; a decision found written but not carried out (Prepare*) when a partition is
//! loaded is finished by the next scan, which the load brings forward.

use tracing::{error, info};

use super::coordinator::TxnCoordinator;
use super::records::replay;
use super::txn_partition;
use crate::internal_log::Held;
use crate::log::Log;

impl TxnCoordinator {
    /// On every new catalog: `led` are the partitions this shard now leads, with their
    /// epochs and logs. Drops the ids of partitions no longer led (or led at another
    /// epoch) and returns those to load, which [`TxnCoordinator::load`] then rebuilds (the
    /// caller runs the loads as tasks).
    pub fn lead(&self, led: &[(i32, i32, Log)]) -> Vec<(i32, i32, Log)> {
        let (resign, load) = crate::internal_log::lead(&self.logs, &self.loading, led);
        for p in resign {
            self.resign(p);
        }
        load
    }

    /// Stops coordinating the ids of partition `p`: their producers get NOT_COORDINATOR and
    /// find the new leader, which has every state this shard acknowledged.
    fn resign(&self, p: i32) {
        self.logs.borrow_mut().remove(&p);
        self.loading.borrow_mut().remove(&p);
        let mut txns = self.txns.borrow_mut();
        let before = txns.len();
        txns.retain(|id, _| txn_partition(id) != p);
        info!(
            partition = p,
            ids = before - txns.len(),
            "no longer leads transaction state partition: its transactional ids are dropped"
        );
    }

    /// Rebuilds the ids of partition `p` from its log (led at `epoch`) and serves them,
    /// unless leadership moved on meanwhile.
    pub async fn load(&self, p: i32, epoch: i32, log: Log) {
        let started = std::time::Instant::now();
        let map = match replay(&log).await {
            Ok(map) => map,
            Err(e) => {
                error!(partition = p, "cannot replay transaction state: {e}");
                self.loading.borrow_mut().remove(&p);
                return;
            }
        };
        if self.loading.borrow().get(&p) != Some(&epoch) {
            return;
        }
        self.loading.borrow_mut().remove(&p);
        let (ids, open) = (map.len(), map.values().filter(|m| !m.state.idle()).count());
        let unfinished = map.values().any(|m| m.state.preparing());
        self.txns.borrow_mut().extend(map);
        self.logs.borrow_mut().insert(
            p,
            Held {
                log,
                epoch: Some(epoch),
            },
        );
        if unfinished {
            // Decisions the previous leader wrote: their markers go out at the next tick.
            self.last_scan_ms.set(0);
        }
        info!(
            partition = p,
            epoch,
            ids,
            open,
            ms = started.elapsed().as_millis() as u64,
            "leads transaction state partition: transactional ids loaded"
        );
    }
}
