//! Configs of topics and brokers: DescribeConfigs (answered from any shard's catalog copy)
//! and AlterConfigs / IncrementalAlterConfigs (run by the controller shard, which changes the
//! catalog on a single node or proposes the change to the metadata quorum in a cluster).
//!
//! Invariants:
//! - a value is validated before it is stored: a topic override by the topic rules, a
//!   dynamic broker setting by the settings table's own parser (`settings::dynamic`);
//! - a change is answered only once every shard of this node runs with it (single node) or
//!   the quorum has committed it (cluster);
//! - a broker resource names a Kafka broker id (one shard); a per-broker value applies to
//!   the node of that shard, since a node's shards run one configuration.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use tracing::info;

use super::admin::{mark_unopened, on_controller, publish, TopicResult};
use super::catalog::{broker_key, node_and_shard, topic_config_defaults, validate_topic_config};
use super::errors;
use super::router::Call;
use super::shard::Shard;
use crate::protocol::str_bytes as s;
use crate::protocol::{AlterConfigsRequest, AlterResource, DescribeConfigsRequest};
use crate::settings::dynamic::{self, DynamicConfigs, Layer, Scope};
use crate::settings::{keys, LogFormat, Settings};

pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;

/// Kafka's ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn config_entry(name: &str, value: String, source: i8) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = s(name);
    c.value = Some(s(value));
    c.config_source = source;
    c
}

/// The source of broker setting `key` on node `node`, given its effective `value`.
fn broker_source(dynamic: &DynamicConfigs, key: &str, node: u64, value: &str, default: &str) -> i8 {
    match dynamic.lookup(key, node) {
        Some((_, Layer::Node)) => SOURCE_DYNAMIC_BROKER,
        Some((_, Layer::Cluster)) => SOURCE_DYNAMIC_DEFAULT_BROKER,
        None if value == default => SOURCE_DEFAULT,
        None => SOURCE_STATIC_BROKER,
    }
}

fn settings(broker: crate::config::BrokerConfig) -> Settings {
    Settings {
        broker,
        log_format: LogFormat::Text,
        log_level: String::new(),
    }
}

/// The node a broker resource name stands for on this node's view: `Err` says why not.
fn broker_scope(shard: &Shard, name: &str) -> Result<Scope, String> {
    if name.is_empty() {
        return Ok(Scope::Cluster);
    }
    let id: i32 = name
        .parse()
        .map_err(|_| format!("broker {name:?} is not a broker id"))?;
    let (node, sh) = node_and_shard(id);
    let cat = shard.catalog();
    let known = match &cat.cluster {
        Some(cm) => cm.nodes.get(&node).is_some_and(|n| sh < n.shards.max(1)),
        None => node == shard.cfg.node_id && usize::from(sh) < shard.nshards,
    };
    if id < 0 || !known {
        return Err(format!("no broker {id} in this cluster"));
    }
    Ok(Scope::Node(node))
}

pub fn describe_configs(shard: &Rc<Shard>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let cat = shard.catalog();
    let effective = shard.settings();
    let node = shard.cfg.node_id;
    let now = settings((*effective).clone());
    let defaults = settings(crate::config::BrokerConfig::default());
    let show = |key: &str, of: &Settings| {
        keys()
            .find(|(k, ..)| *k == key)
            .map(|(_, _, _, show)| show(of))
    };
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = s(res.name.clone());
        let wanted = |k: &str| res.keys.as_ref().is_none_or(|ks| ks.iter().any(|x| x == k));
        match res.resource_type {
            TOPIC => match cat.topics.get(&res.name) {
                None => {
                    r.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION;
                    r.error_message = Some(s("unknown topic"));
                }
                Some(meta) => {
                    for (k, inherited) in topic_config_defaults(&effective) {
                        if !wanted(k) {
                            continue;
                        }
                        r.configs.push(match meta.configs.get(k) {
                            Some(v) => config_entry(k, v.clone(), SOURCE_TOPIC),
                            None => {
                                let source = broker_key(k)
                                    .and_then(|bk| {
                                        let d = show(bk, &defaults)?;
                                        Some(broker_source(&cat.dynamic, bk, node, &inherited, &d))
                                    })
                                    .unwrap_or(SOURCE_DEFAULT);
                                config_entry(k, inherited, source)
                            }
                        });
                    }
                }
            },
            BROKER => match broker_scope(shard, &res.name) {
                // Kafka's `<default>` entity: only the cluster-wide dynamic values.
                Ok(Scope::Cluster) => {
                    for (k, v) in cat.dynamic.at(Scope::Cluster) {
                        if wanted(&k) {
                            let mut e = config_entry(&k, v, SOURCE_DYNAMIC_DEFAULT_BROKER);
                            e.read_only = false;
                            r.configs.push(e);
                        }
                    }
                }
                Ok(Scope::Node(n)) if n != node => {
                    r.error_code = errors::INVALID_REQUEST;
                    r.error_message = Some(s(format!(
                        "broker {} is on node {n}: ask that broker for its settings",
                        res.name
                    )));
                }
                Ok(Scope::Node(_)) => {
                    if wanted("broker.id") {
                        let mut e =
                            config_entry("broker.id", res.name.clone(), SOURCE_STATIC_BROKER);
                        e.read_only = true;
                        r.configs.push(e);
                    }
                    for (k, _, _, show) in keys() {
                        // The process's logging is not the broker's to report.
                        if k.starts_with("log.format") || *k == "log.level" || !wanted(k) {
                            continue;
                        }
                        let value = show(&now);
                        let source = broker_source(&cat.dynamic, k, node, &value, &show(&defaults));
                        let mut e = config_entry(k, value, source);
                        e.read_only = !dynamic::is_dynamic(k);
                        if k.contains("password") {
                            e.value = None;
                            e.is_sensitive = true;
                        }
                        r.configs.push(e);
                    }
                }
                Err(why) => {
                    r.error_code = errors::INVALID_REQUEST;
                    r.error_message = Some(s(why));
                }
            },
            other => {
                r.error_code = errors::INVALID_REQUEST;
                r.error_message = Some(s(format!("resource type {other} is not supported")));
            }
        }
        resp.results.push(r);
    }
    resp
}

/// The new values of one resource: its current `values` changed by the request's
/// operations (SET and DELETE; the whole set replaced by a non-incremental request), each
/// checked by `check`. `Err` is the message of the first refusal.
fn edited(
    res: &AlterResource,
    incremental: bool,
    mut values: BTreeMap<String, String>,
    mut check: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<BTreeMap<String, String>, String> {
    if !incremental {
        values.clear();
    }
    for (k, op, v) in &res.configs {
        match (op, v) {
            (0, Some(v)) => {
                check(k, v)?;
                values.insert(k.clone(), v.clone());
            }
            (1, _) | (0, None) => {
                values.remove(k);
            }
            _ => {
                return Err(format!(
                    "operation {op} on {k} is not supported (only SET and DELETE)"
                ))
            }
        }
    }
    Ok(values)
}

/// Runs on the controller: applies AlterConfigs / IncrementalAlterConfigs to topic
/// overrides and dynamic broker settings. One result per resource, in request order.
pub async fn controller_alter_configs(
    shard: &Rc<Shard>,
    req: AlterConfigsRequest,
) -> Vec<TopicResult> {
    let _guard = shard.admin_lock.lock().await;
    let clustered = shard.proposer.is_some();
    let mut cat = (*shard.catalog()).clone();
    let mut results = Vec::new();
    let mut changed = false;
    for res in &req.resources {
        let name = res.name.clone();
        let ok = |id| TopicResult {
            name: name.clone(),
            error: errors::NONE,
            message: None,
            id,
            partitions: -1,
        };
        match res.resource_type {
            TOPIC => {
                let Some(meta) = cat.topics.get_mut(&name) else {
                    results.push(TopicResult::err(
                        &name,
                        errors::UNKNOWN_TOPIC_OR_PARTITION,
                        "unknown topic",
                    ));
                    continue;
                };
                let configs = match edited(res, req.incremental, meta.configs.clone(), |k, v| {
                    validate_topic_config(k, v)
                }) {
                    Ok(c) => c,
                    Err(msg) => {
                        results.push(TopicResult::err(&name, errors::INVALID_CONFIG, msg));
                        continue;
                    }
                };
                if clustered && !req.validate_only {
                    results.push(super::cluster_link::set_configs(shard, &name, configs).await);
                    continue;
                }
                if !req.validate_only && configs != meta.configs {
                    info!(topic = %name, ?configs, "altering topic configs");
                    meta.configs = configs;
                    changed = true;
                }
                let mut r = ok(meta.id);
                r.partitions = meta.partitions;
                results.push(r);
            }
            BROKER => {
                let scope = match broker_scope(shard, &name) {
                    Ok(scope) => scope,
                    Err(why) => {
                        results.push(TopicResult::err(&name, errors::INVALID_REQUEST, why));
                        continue;
                    }
                };
                // A read-only key is Kafka's InvalidRequest; a bad value its InvalidConfig.
                let mut code = errors::INVALID_CONFIG;
                let values = edited(res, req.incremental, cat.dynamic.at(scope), |k, v| {
                    dynamic::check(k, v).map_err(|e| {
                        if !matches!(e, dynamic::DynamicError::Invalid { .. }) {
                            code = errors::INVALID_REQUEST;
                        }
                        e.to_string()
                    })
                });
                let values = match values {
                    Ok(v) => v,
                    Err(msg) => {
                        results.push(TopicResult::err(&name, code, msg));
                        continue;
                    }
                };
                if req.validate_only || values == cat.dynamic.at(scope) {
                    results.push(ok([0; 16]));
                    continue;
                }
                info!(broker = %name, ?values, "altering dynamic broker settings");
                if clustered {
                    let node = match scope {
                        Scope::Cluster => None,
                        Scope::Node(n) => Some(n),
                    };
                    results.push(
                        super::cluster_link::set_broker_configs(shard, &name, node, values).await,
                    );
                    continue;
                }
                cat.dynamic.set(scope, values);
                changed = true;
                results.push(ok([0; 16]));
            }
            other => results.push(TopicResult::err(
                &name,
                errors::INVALID_REQUEST,
                format!("resource type {other} cannot be altered"),
            )),
        }
    }
    if changed {
        mark_unopened(&mut results, publish(shard, cat).await);
    }
    results
}

/// Fills an AlterConfigs-shaped response (both APIs share the field names).
macro_rules! alter_response {
    ($resp:ty, $item:ty, $results:expr) => {{
        let mut resp = <$resp>::default();
        for (t, name, code, msg) in $results {
            let mut x = <$item>::default();
            x.resource_type = t;
            x.resource_name = s(name);
            x.error_code = code;
            x.error_message = msg.map(s);
            resp.responses.push(x);
        }
        resp
    }};
}

pub async fn alter_configs_classic(
    shard: &Rc<Shard>,
    req: AlterConfigsRequest,
) -> kafka_protocol::messages::AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::{
        AlterConfigsResourceResponse, AlterConfigsResponse,
    };
    alter_response!(
        AlterConfigsResponse,
        AlterConfigsResourceResponse,
        alter_configs(shard, req).await
    )
}

pub async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    req: AlterConfigsRequest,
) -> kafka_protocol::messages::IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::{
        AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
    };
    alter_response!(
        IncrementalAlterConfigsResponse,
        AlterConfigsResourceResponse,
        alter_configs(shard, req).await
    )
}

/// AlterConfigs / IncrementalAlterConfigs results: (resource type, name, error, message),
/// matched to the controller's answers by position (a topic and a broker may share a name).
async fn alter_configs(
    shard: &Rc<Shard>,
    req: AlterConfigsRequest,
) -> Vec<(i8, String, i16, Option<String>)> {
    let resources: Vec<(i8, String)> = req
        .resources
        .iter()
        .map(|r| (r.resource_type, r.name.clone()))
        .collect();
    let results = on_controller(shard, Call::AlterConfigs(req)).await;
    resources
        .into_iter()
        .enumerate()
        .map(|(i, (t, name))| match results.get(i) {
            Some(r) => (t, name, r.error, r.message.clone()),
            None => (
                t,
                name,
                errors::UNKNOWN_SERVER_ERROR,
                Some("controller unavailable".to_string()),
            ),
        })
        .collect()
}
