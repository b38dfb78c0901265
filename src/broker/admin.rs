//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions (run by the controller,
//! shard 0). Configs are `configs`'s.
//!
//! Invariant: the controller changes the catalog under its admin lock, persists it, and
//! applies it on every shard (awaiting each) before answering, so a topic that a response
//! says exists is writable on every shard.

use crate::protocol::str_bytes as s;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::TopicName;
use tracing::{error, info};

use super::catalog::{valid_topic_name, validate_topic_config, Catalog, TopicMeta};
use super::errors;
use super::router::{Call, Reply};
use super::shard::Shard;
use crate::protocol::{CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest};

/// Most partitions one topic may have.
pub const MAX_PARTITIONS: i32 = 10_000;
pub const CONTROLLER: usize = 0;

#[derive(Debug, Clone)]
pub struct TopicResult {
    pub name: String,
    pub error: i16,
    pub message: Option<String>,
    pub id: [u8; 16],
    pub partitions: i32,
}

impl TopicResult {
    pub(super) fn err(name: &str, error: i16, message: impl Into<String>) -> Self {
        TopicResult {
            name: name.to_string(),
            error,
            message: Some(message.into()),
            id: [0; 16],
            partitions: -1,
        }
    }
}

/// Persists `cat` and has every shard apply it. `Ok` holds the partitions some shard could
/// not open, as (topic, "partition: error").
pub(super) async fn publish(
    shard: &Rc<Shard>,
    cat: Catalog,
) -> Result<Vec<(String, String)>, String> {
    let dir = &shard.cfg.data_dir;
    let persisted = super::disk_space::with_reserve(dir, || {
        cat.persist(dir).map_err(|e| match e {
            super::catalog::CatalogError::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        })
    });
    if let Err(e) = persisted {
        error!("catalog not persisted: {e}");
        return Err(e.to_string());
    }
    let cat = Arc::new(cat);
    let mut failed = Vec::new();
    for j in 0..shard.nshards {
        if j == shard.id {
            failed.extend(shard.apply_catalog(cat.clone()).await);
        } else {
            match shard.call(j, Call::Apply(cat.clone())).await {
                Some(Reply::Applied(f)) => failed.extend(f),
                _ => error!(shard = j, "shard did not apply the new catalog"),
            }
        }
    }
    Ok(failed)
}

/// Marks the results of topics with partitions that could not be opened as failed: a
/// create never answers success for a partition it cannot serve.
pub(super) fn mark_unopened(
    results: &mut [TopicResult],
    published: Result<Vec<(String, String)>, String>,
) {
    match published {
        Err(e) => {
            for r in results.iter_mut().filter(|r| r.error == errors::NONE) {
                *r = TopicResult::err(&r.name, errors::UNKNOWN_SERVER_ERROR, e.clone());
            }
        }
        Ok(failed) => {
            for r in results.iter_mut().filter(|r| r.error == errors::NONE) {
                let mine: Vec<&str> = failed
                    .iter()
                    .filter(|(t, _)| *t == r.name)
                    .map(|(_, why)| why.as_str())
                    .collect();
                if !mine.is_empty() {
                    let msg = format!(
                        "{} partition(s) could not be opened (retried on the next change or restart): {}",
                        mine.len(),
                        mine.iter().take(5).copied().collect::<Vec<_>>().join("; ")
                    );
                    *r = TopicResult::err(&r.name, errors::KAFKA_STORAGE_ERROR, msg);
                }
            }
        }
    }
}

/// Runs on the controller.
pub async fn controller_create(shard: &Rc<Shard>, req: CreateTopicsRequest) -> Vec<TopicResult> {
    let _guard = shard.admin_lock.lock().await;
    let clustered = shard.proposer.is_some();
    let mut cat = (*shard.catalog()).clone();
    let mut results = Vec::new();
    let mut changed = false;
    for t in req.topics {
        let partitions = if t.num_partitions == -1 {
            shard.cfg.default_partitions
        } else {
            t.num_partitions
        };
        let bad_config = t
            .configs
            .iter()
            .find_map(|(k, v)| validate_topic_config(k, v.as_deref().unwrap_or("")).err());
        let r = if !valid_topic_name(&t.name) {
            TopicResult::err(
                &t.name,
                errors::INVALID_TOPIC_EXCEPTION,
                "invalid topic name",
            )
        } else if cat.topics.keys().any(|k| *k == t.name) || internal(&t.name) {
            TopicResult::err(
                &t.name,
                errors::TOPIC_ALREADY_EXISTS,
                format!("topic '{}' already exists", t.name),
            )
        } else if partitions <= 0 || partitions > MAX_PARTITIONS {
            TopicResult::err(
                &t.name,
                errors::INVALID_PARTITIONS,
                format!("partitions must be in [1, {MAX_PARTITIONS}]"),
            )
        } else if let Some(msg) = (!clustered)
            .then(|| super::placement::over_limit(&shard.cfg, &cat, &t.name, partitions))
            .flatten()
        {
            TopicResult::err(&t.name, errors::POLICY_VIOLATION, msg)
        } else if t.replication_factor == 0
            || t.replication_factor < -1
            || (!clustered && t.replication_factor > 1)
        {
            TopicResult::err(
                &t.name,
                errors::INVALID_REPLICATION_FACTOR,
                if t.replication_factor > 1 {
                    format!(
                        "replication factor {} larger than available brokers: 1",
                        t.replication_factor
                    )
                } else {
                    format!("invalid replication factor {}", t.replication_factor)
                },
            )
        } else if t.has_assignments {
            TopicResult::err(
                &t.name,
                errors::INVALID_REPLICA_ASSIGNMENT,
                "manual replica assignment is not supported",
            )
        } else if let Some(msg) = bad_config {
            TopicResult::err(&t.name, errors::INVALID_CONFIG, msg)
        } else {
            let meta = TopicMeta {
                id: *uuid::Uuid::new_v4().as_bytes(),
                partitions,
                configs: t
                    .configs
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect(),
                placement: Vec::new(),
            };
            let r = TopicResult {
                name: t.name.clone(),
                error: errors::NONE,
                message: None,
                id: meta.id,
                partitions,
            };
            if clustered && !req.validate_only {
                let replication = match t.replication_factor {
                    -1 => shard.cfg.default_replication_factor,
                    n => n,
                };
                results.push(
                    super::cluster_link::create(
                        shard,
                        &t.name,
                        partitions,
                        replication.max(1) as usize,
                        meta.configs,
                    )
                    .await,
                );
                continue;
            }
            if !req.validate_only {
                info!(topic = %t.name, partitions, "creating topic");
                cat.topics.insert(t.name, meta);
                changed = true;
            }
            r
        };
        results.push(r);
    }
    if changed {
        mark_unopened(&mut results, publish(shard, cat).await);
    }
    results
}

/// Runs on the controller.
pub async fn controller_delete(shard: &Rc<Shard>, names: Vec<String>) -> Vec<TopicResult> {
    let _guard = shard.admin_lock.lock().await;
    if shard.proposer.is_some() {
        let mut results = Vec::new();
        for name in names {
            if internal(&name) {
                results.push(TopicResult::err(
                    &name,
                    errors::INVALID_TOPIC_EXCEPTION,
                    "the internal offsets topic cannot be deleted",
                ));
                continue;
            }
            results.push(super::cluster_link::delete(shard, &name).await);
        }
        return results;
    }
    let mut cat = (*shard.catalog()).clone();
    let mut results = Vec::new();
    for name in names {
        match cat.topics.remove(&name) {
            Some(meta) => {
                info!(topic = %name, "deleting topic");
                results.push(TopicResult {
                    name,
                    error: errors::NONE,
                    message: None,
                    id: meta.id,
                    partitions: meta.partitions,
                });
            }
            None => results.push(TopicResult::err(
                &name,
                errors::UNKNOWN_TOPIC_OR_PARTITION,
                "unknown topic",
            )),
        }
    }
    if results.iter().any(|r| r.error == errors::NONE) {
        if let Err(e) = publish(shard, cat).await {
            for r in results.iter_mut().filter(|r| r.error == errors::NONE) {
                *r = TopicResult::err(&r.name, errors::UNKNOWN_SERVER_ERROR, e.clone());
            }
        }
    }
    results
}

/// The internal offsets and transaction state topics: created by the brokers, never by
/// clients, deleted or grown.
pub fn internal(name: &str) -> bool {
    name == crate::group::OFFSETS_TOPIC || name == crate::txn::TXN_TOPIC
}

/// Runs on the controller.
pub async fn controller_create_partitions(
    shard: &Rc<Shard>,
    req: CreatePartitionsRequest,
) -> Vec<TopicResult> {
    let _guard = shard.admin_lock.lock().await;
    let clustered = shard.proposer.is_some();
    let mut cat = (*shard.catalog()).clone();
    let mut results = Vec::new();
    let mut changed = false;
    for (name, count) in req.topics {
        let over = (!clustered)
            .then(|| super::placement::over_limit(&shard.cfg, &cat, &name, count))
            .flatten();
        let r = match cat.topics.get_mut(&name) {
            None => TopicResult::err(&name, errors::UNKNOWN_TOPIC_OR_PARTITION, "unknown topic"),
            Some(_) if internal(&name) => TopicResult::err(
                &name,
                errors::INVALID_TOPIC_EXCEPTION,
                "the internal offsets topic keeps its partition count (groups hash onto it)",
            ),
            Some(m) if count <= m.partitions => TopicResult::err(
                &name,
                errors::INVALID_PARTITIONS,
                format!(
                    "topic has {} partitions; the new count must be larger",
                    m.partitions
                ),
            ),
            Some(_) if count > MAX_PARTITIONS => TopicResult::err(
                &name,
                errors::INVALID_PARTITIONS,
                format!("at most {MAX_PARTITIONS} partitions"),
            ),
            Some(_) if over.is_some() => {
                TopicResult::err(&name, errors::POLICY_VIOLATION, over.unwrap_or_default())
            }
            Some(m) if clustered && !req.validate_only => {
                super::cluster_link::add_partitions(shard, &name, m.partitions, count).await
            }
            Some(m) => {
                if !req.validate_only {
                    info!(topic = %name, from = m.partitions, to = count, "adding partitions");
                    m.partitions = count;
                    changed = true;
                }
                TopicResult {
                    name: name.clone(),
                    error: errors::NONE,
                    message: None,
                    id: m.id,
                    partitions: count,
                }
            }
        };
        results.push(r);
    }
    if changed {
        mark_unopened(&mut results, publish(shard, cat).await);
    }
    results
}

/// Runs `call` on the controller (directly when this shard is the controller).
pub async fn on_controller(shard: &Rc<Shard>, call: Call) -> Vec<TopicResult> {
    if shard.id == CONTROLLER {
        match call {
            Call::CreateTopics(r) => controller_create(shard, r).await,
            Call::DeleteTopics(n) => controller_delete(shard, n).await,
            Call::CreatePartitions(r) => controller_create_partitions(shard, r).await,
            Call::AlterConfigs(r) => super::configs::controller_alter_configs(shard, r).await,
            _ => Vec::new(),
        }
    } else {
        match shard.call(CONTROLLER, call).await {
            Some(Reply::Topics(r)) => r,
            _ => Vec::new(),
        }
    }
}

/// The controller's result for `name`, or `code` if it gave none.
fn result_for(results: &[TopicResult], name: &str, code: i16, message: &str) -> TopicResult {
    results
        .iter()
        .find(|r| r.name == name)
        .cloned()
        .unwrap_or_else(|| TopicResult::err(name, code, message))
}

pub async fn create_topics(shard: &Rc<Shard>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let names: Vec<String> = req.topics.iter().map(|t| t.name.clone()).collect();
    let results = on_controller(shard, Call::CreateTopics(req)).await;
    let mut resp = CreateTopicsResponse::default();
    for name in names {
        let r = result_for(
            &results,
            &name,
            errors::UNKNOWN_SERVER_ERROR,
            "controller unavailable",
        );
        let mut t = CreatableTopicResult::default();
        t.name = TopicName(s(name));
        t.topic_id = uuid::Uuid::from_bytes(r.id);
        t.error_code = r.error;
        t.error_message = r.message.map(s);
        t.num_partitions = r.partitions;
        t.replication_factor = if r.error == errors::NONE {
            // In a cluster, as the quorum placed it (the node has applied the creation).
            let view = shard.cluster.get();
            let placed = view
                .image
                .topics
                .get(&r.name)
                .and_then(|t| t.partitions.first());
            placed.map_or(1, |p| p.replicas.len() as i16)
        } else {
            -1
        };
        resp.topics.push(t);
    }
    resp
}

pub async fn delete_topics(shard: &Rc<Shard>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let cat = shard.catalog();
    let names: Vec<String> = req
        .topics
        .iter()
        .map(|(name, id)| match name {
            Some(n) => n.clone(),
            None => cat.topic_by_id(id).unwrap_or_default().to_string(),
        })
        .collect();
    let results = on_controller(shard, Call::DeleteTopics(names.clone())).await;
    let mut resp = DeleteTopicsResponse::default();
    for name in names {
        let r = result_for(
            &results,
            &name,
            errors::UNKNOWN_TOPIC_OR_PARTITION,
            "unknown topic",
        );
        let mut t = DeletableTopicResult::default();
        t.name = Some(TopicName(s(name)));
        t.topic_id = uuid::Uuid::from_bytes(r.id);
        t.error_code = r.error;
        t.error_message = r.message.map(s);
        resp.responses.push(t);
    }
    resp
}

pub async fn create_partitions(
    shard: &Rc<Shard>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let names: Vec<String> = req.topics.iter().map(|(n, _)| n.clone()).collect();
    let results = on_controller(shard, Call::CreatePartitions(req)).await;
    let mut resp = CreatePartitionsResponse::default();
    for name in names {
        let r = result_for(
            &results,
            &name,
            errors::UNKNOWN_SERVER_ERROR,
            "controller unavailable",
        );
        let mut t = CreatePartitionsTopicResult::default();
        t.name = TopicName(s(name));
        t.error_code = r.error;
        t.error_message = r.message.map(s);
        resp.results.push(t);
    }
    resp
}

/// Creates topic `name` with `partitions` partitions, `replication` replicas (-1: the
/// default) and the broker's default configs (a topic the broker itself needs, such as a
/// dead-letter topic); an existing one is left alone.
pub async fn create_internal_topic(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    replication: i16,
) {
    let req = CreateTopicsRequest {
        topics: vec![crate::protocol::NewTopic {
            name: name.to_string(),
            num_partitions: partitions,
            replication_factor: replication,
            has_assignments: false,
            configs: Vec::new(),
        }],
        timeout_ms: 30_000,
        validate_only: false,
    };
    for r in on_controller(shard, Call::CreateTopics(req)).await {
        if r.error != errors::NONE && r.error != errors::TOPIC_ALREADY_EXISTS {
            tracing::warn!(topic = name, "topic not created: {:?}", r.message);
        } else if r.error == errors::NONE {
            info!(topic = name, partitions, "created a topic the broker needs");
        }
    }
}

/// Creates unknown topics with the broker defaults (auto.create.topics.enable).
pub async fn auto_create(shard: &Rc<Shard>, names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let req = CreateTopicsRequest {
        topics: names
            .into_iter()
            .map(|name| crate::protocol::NewTopic {
                name,
                num_partitions: -1,
                replication_factor: -1,
                has_assignments: false,
                configs: Vec::new(),
            })
            .collect(),
        timeout_ms: 30_000,
        validate_only: false,
    };
    on_controller(shard, Call::CreateTopics(req)).await;
}
