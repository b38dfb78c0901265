//! The cross-core router: the messages one shard sends another, and the loop that serves
//! them on the receiving shard.
//!
//! Invariant: messages are plain data (`Send`); a partition's work always runs on its owner,
//! and catalog changes run on shard 0 (the controller) before being applied everywhere.

use std::rc::Rc;
use std::sync::Arc;

use futures::channel::oneshot;
use glommio::channels::shared_channel::ConnectedReceiver;
use tracing::debug;

use super::admin::{self, TopicResult};
use super::catalog::Catalog;
use super::fetch::{self, FetchPartResult};
use super::list_offsets::{self, OffsetResult};
use super::produce::{self, PartAppend, PartProduceResult};
use super::shard::Shard;
use crate::protocol::{CreatePartitionsRequest, CreateTopicsRequest, FetchRequest};

/// Work one shard asks of another.
pub enum Call {
    /// Append to partitions the receiver owns.
    Produce(Vec<PartAppend>),
    /// Long-poll fetch of partitions the receiver owns.
    Fetch(FetchRequest),
    /// (topic, partition, timestamp) queries on partitions the receiver owns.
    ListOffsets(Vec<(String, i32, i64)>),
    /// Controller only.
    CreateTopics(CreateTopicsRequest),
    /// Controller only: topic names.
    DeleteTopics(Vec<String>),
    /// Controller only.
    CreatePartitions(CreatePartitionsRequest),
    /// Install a new catalog.
    Apply(Arc<Catalog>),
    /// Controller only: (current producer id, epoch), -1 for a new producer.
    InitProducerId(i64, i16),
    /// The receiver's metrics snapshot.
    Metrics,
    /// Controller only.
    AlterConfigs(crate::protocol::AlterConfigsRequest),
    /// (topic, partition, offset) on partitions the receiver owns.
    DeleteRecords(Vec<(String, i32, i64)>),
    /// Controller only (single node): one user's SCRAM credential changes.
    AlterSecurity(Vec<crate::security::store::SecurityChange>),
    /// Transaction markers for partitions the receiver owns.
    WriteMarkers(super::txn_markers::MarkerCall),
}

pub enum Reply {
    Produce(Vec<PartProduceResult>),
    Fetch(Vec<FetchPartResult>),
    ListOffsets(Vec<OffsetResult>),
    Topics(Vec<TopicResult>),
    /// (error code, producer id, epoch)
    ProducerId(i16, i64, i16),
    Metrics(Box<crate::metrics::Snapshot>),
    /// The catalog was applied; partitions that could not be opened, as (topic, reason).
    Applied(Vec<(String, String)>),
    Security(Result<(), crate::security::store::Refused>),
    /// One error code per item asked.
    Codes(Vec<i16>),
}

pub struct Envelope {
    pub call: Call,
    pub reply: oneshot::Sender<Reply>,
}

/// Serves calls arriving from one peer until its channel closes. Each call runs as its own
/// task so a long-poll fetch does not hold up the calls behind it.
pub async fn serve_peer(shard: Rc<Shard>, rx: ConnectedReceiver<Envelope>) {
    while let Some(env) = rx.recv().await {
        let shard = shard.clone();
        crate::runtime::spawn_local(async move {
            let reply = handle(&shard, env.call).await;
            if env.reply.send(reply).is_err() {
                debug!("caller went away before the reply");
            }
        });
    }
}

async fn handle(shard: &Rc<Shard>, call: Call) -> Reply {
    match call {
        Call::Produce(parts) => Reply::Produce(produce::append_local(shard, parts).await),
        Call::Fetch(req) => Reply::Fetch(fetch::fetch_for_peer(shard, &req).await),
        Call::ListOffsets(q) => Reply::ListOffsets(list_offsets::local(shard, q).await),
        Call::CreateTopics(req) => Reply::Topics(admin::controller_create(shard, req).await),
        Call::DeleteTopics(names) => Reply::Topics(admin::controller_delete(shard, names).await),
        Call::CreatePartitions(req) => {
            Reply::Topics(admin::controller_create_partitions(shard, req).await)
        }
        Call::InitProducerId(id, epoch) => {
            let (c, id, e) = super::producer_id::controller_init(shard, id, epoch).await;
            Reply::ProducerId(c, id, e)
        }
        Call::DeleteRecords(q) => Reply::ListOffsets(list_offsets::delete_records_local(shard, q)),
        Call::Metrics => Reply::Metrics(Box::new(shard.snapshot())),
        Call::WriteMarkers(m) => Reply::Codes(super::txn_markers::markers_local(shard, m).await),
        Call::AlterConfigs(req) => {
            Reply::Topics(super::configs::controller_alter_configs(shard, req).await)
        }
        Call::Apply(cat) => Reply::Applied(shard.apply_catalog(cat).await),
        Call::AlterSecurity(c) => Reply::Security(super::users::controller_apply(shard, c).await),
    }
}
