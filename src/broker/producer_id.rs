//! InitProducerId: hands out idempotent-producer ids, unique across restarts.
//!
//! Invariant: only shard 0 allocates. It reserves ids in blocks of [`BLOCK`]: on a single
//! node by persisting the end of the reserved block in `<data-dir>/producer_ids` (write,
//! fsync, rename) before handing out any id from it; in a cluster by committing the block
//! through the metadata quorum, so no two nodes ever hand out the same id. A crash skips
//! ids but never repeats one.

use std::cell::Cell;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;

use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::ProducerId;
use tracing::error;

use super::admin::CONTROLLER;
use super::errors;
use super::router::{Call, Reply};
use super::shard::Shard;
use crate::protocol::InitProducerIdRequest;

pub const BLOCK: i64 = 1000;
const FILE: &str = "producer_ids";

/// The controller's id allocator: next id to hand out and end of the reserved block.
#[derive(Default)]
pub struct Allocator {
    next: Cell<i64>,
    end: Cell<i64>,
}

fn read_reserved(dir: &Path) -> std::io::Result<i64> {
    match std::fs::read_to_string(dir.join(FILE)) {
        Ok(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|e| std::io::Error::other(format!("{FILE}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

fn write_reserved(dir: &Path, end: i64) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(end.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

impl Allocator {
    /// The next id of the reserved block, if any is left.
    fn take(&self) -> Option<i64> {
        let id = self.next.get();
        (id < self.end.get()).then(|| {
            self.next.set(id + 1);
            id
        })
    }

    /// A fresh producer id from a block the metadata quorum reserved for this node.
    pub async fn allocate_in_cluster(
        &self,
        proposer: &crate::cluster::Proposer,
        dir: &Path,
    ) -> Result<i64, String> {
        if let Some(id) = self.take() {
            return Ok(id);
        }
        let at_least = read_reserved(dir).map_err(|e| e.to_string())?;
        let cmd = crate::cluster::state::Command::AllocateProducerIds {
            count: BLOCK,
            at_least,
        };
        match proposer
            .propose(cmd, std::time::Duration::from_secs(15))
            .await?
        {
            crate::cluster::state::Outcome::ProducerIds { start } => {
                // A concurrent request may have refilled meanwhile: keep the newer block.
                if self.next.get() >= self.end.get() {
                    self.next.set(start);
                    self.end.set(start + BLOCK);
                }
                self.take()
                    .ok_or_else(|| "empty producer id block".to_string())
            }
            other => Err(format!("producer id block not reserved: {other:?}")),
        }
    }

    /// A fresh producer id. Blocking file I/O happens once per [`BLOCK`] ids.
    pub fn allocate(&self, dir: &Path) -> std::io::Result<i64> {
        if self.next.get() >= self.end.get() {
            let start = read_reserved(dir)?.max(self.end.get());
            write_reserved(dir, start + BLOCK)?;
            self.next.set(start);
            self.end.set(start + BLOCK);
        }
        let id = self.next.get();
        self.next.set(id + 1);
        Ok(id)
    }
}

/// [`controller_init`] run on the controller shard, from any shard: (error code, producer
/// id, epoch).
pub async fn init_on_controller(
    shard: &Rc<Shard>,
    producer_id: i64,
    epoch: i16,
) -> (i16, i64, i16) {
    if shard.id == CONTROLLER {
        return controller_init(shard, producer_id, epoch).await;
    }
    match shard
        .call(CONTROLLER, Call::InitProducerId(producer_id, epoch))
        .await
    {
        Some(Reply::ProducerId(c, id, e)) => (c, id, e),
        _ => (errors::UNKNOWN_SERVER_ERROR, -1, -1),
    }
}

/// (error code, producer id, epoch), computed on the controller.
pub async fn controller_init(shard: &Rc<Shard>, producer_id: i64, epoch: i16) -> (i16, i64, i16) {
    // KIP-360: a producer that names its current id and epoch gets the epoch bumped; a new
    // id once the epoch would overflow.
    if producer_id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        return (errors::NONE, producer_id, epoch + 1);
    }
    if let Some(proposer) = &shard.proposer {
        return match shard
            .producer_ids
            .allocate_in_cluster(proposer, &shard.cfg.data_dir)
            .await
        {
            Ok(id) => (errors::NONE, id, 0),
            Err(e) => {
                error!("cannot reserve producer ids through the metadata quorum: {e}");
                (errors::REQUEST_TIMED_OUT, -1, -1)
            }
        };
    }
    match shard.producer_ids.allocate(&shard.cfg.data_dir) {
        Ok(id) => (errors::NONE, id, 0),
        Err(e) => {
            error!("cannot reserve producer ids: {e}");
            (errors::KAFKA_STORAGE_ERROR, -1, -1)
        }
    }
}

pub async fn handle(shard: &Rc<Shard>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    let (code, id, epoch) = init_on_controller(shard, req.producer_id, req.producer_epoch).await;
    resp.error_code = code;
    resp.producer_id = ProducerId(id);
    resp.producer_epoch = epoch;
    resp
}
