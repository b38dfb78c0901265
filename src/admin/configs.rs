//! `shardlog topic describe` (its configs part), `topic alter-config`,
//! `topic add-partitions`, `config get` (a running broker's settings) and `config set` (its
//! dynamic settings): DescribeConfigs,
//! IncrementalAlterConfigs and CreatePartitions on any broker (which passes the changes to
//! the controller).

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::client::Client;
use super::topic::name;

const TOPIC: i8 = 2;
const SET: i8 = 0;
const DELETE: i8 = 1;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Kafka's names for where a config value comes from.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "broker (dynamic)",
        3 => "cluster (dynamic)",
        4 => "broker",
        5 => "default",
        _ => "unknown",
    }
}

/// DescribeConfigs (v4) of one resource (`keys`: only these), or the error naming `what`.
fn describe(
    c: &mut Client,
    resource_type: i8,
    name: &str,
    keys: Option<&[String]>,
    what: &str,
) -> Result<DescribeConfigsResult> {
    let mut res = DescribeConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = s(name);
    res.configuration_keys = keys.map(|ks| ks.iter().map(|k| s(k)).collect());
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let r = c
        .call(&req, 4)?
        .results
        .into_iter()
        .next()
        .context("empty DescribeConfigs answer")?;
    if r.error_code != 0 {
        bail!(
            "{what}: error {} {}",
            r.error_code,
            r.error_message.as_deref().unwrap_or("")
        );
    }
    Ok(r)
}

/// Every config of `topic`: (name, value, where it comes from), overrides first.
pub fn topic_configs(bootstrap: &str, topic: &str) -> Result<Vec<(String, String, &'static str)>> {
    let mut c = Client::connect(bootstrap)?;
    let r = describe(&mut c, TOPIC, topic, None, &format!("configs of {topic}"))?;
    let mut rows: Vec<(bool, String, String, &'static str)> = r
        .configs
        .iter()
        .map(|c| {
            (
                c.config_source != 1,
                c.name.to_string(),
                c.value.as_deref().unwrap_or("").to_string(),
                source_name(c.config_source),
            )
        })
        .collect();
    rows.sort();
    Ok(rows.into_iter().map(|(_, k, v, src)| (k, v, src)).collect())
}

/// Prints every config of `topic` with its value and source, overrides first.
pub fn print_topic(bootstrap: &str, topic: &str) -> Result<()> {
    println!();
    println!("CONFIG\tVALUE\tSOURCE");
    for (k, v, src) in topic_configs(bootstrap, topic)? {
        println!("{k}\t{v}\t{src}");
    }
    Ok(())
}

/// Sets `set` and removes `delete` on one resource in one IncrementalAlterConfigs
/// request; `Err` holds Kafka's error code and message.
fn alter(
    c: &mut Client,
    resource_type: i8,
    resource: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<std::result::Result<(), (i16, String)>> {
    let mut res = AlterConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = s(resource);
    for (k, v) in set {
        let mut a = AlterableConfig::default();
        a.name = s(k);
        a.config_operation = SET;
        a.value = Some(s(v));
        res.configs.push(a);
    }
    for k in delete {
        let mut a = AlterableConfig::default();
        a.name = s(k);
        a.config_operation = DELETE;
        a.value = None;
        res.configs.push(a);
    }
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let resp = c.call(&req, 1)?;
    let r = resp
        .responses
        .first()
        .context("empty IncrementalAlterConfigs answer")?;
    Ok(match r.error_code {
        0 => Ok(()),
        code => Err((code, r.error_message.as_deref().unwrap_or("").to_string())),
    })
}

/// Sets `set` and removes `delete` on `topic` in one request.
pub fn alter_topic(
    bootstrap: &str,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    match alter(&mut c, TOPIC, topic, set, delete)? {
        Ok(()) => {}
        Err((3, _)) => bail!("topic {topic} does not exist"),
        Err((code, msg)) => bail!("{topic}: configs not changed: error {code} {msg}"),
    }
    for (k, v) in set {
        println!("{topic}: {k}={v}");
    }
    for k in delete {
        println!("{topic}: {k} removed (the default applies)");
    }
    Ok(())
}

/// Changes dynamic broker settings on a running cluster: on every node (`broker: None`,
/// Kafka's `<default>` entity) or on the node of broker id `broker`.
pub fn alter_broker(
    bootstrap: &str,
    broker: Option<i32>,
    set: &[(String, String)],
    delete: &[String],
) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let (resource, who) = match broker {
        None => (String::new(), "every broker".to_string()),
        Some(id) => (id.to_string(), format!("broker {id}")),
    };
    if let Err((code, msg)) = alter(&mut c, BROKER, &resource, set, delete)? {
        bail!("settings not changed ({who}): error {code} {msg}");
    }
    for (k, v) in set {
        println!("{who}: {k}={v}");
    }
    for k in delete {
        println!("{who}: {k} removed (the static setting applies)");
    }
    Ok(())
}

/// Grows `topic` to `total` partitions.
pub fn add_partitions(bootstrap: &str, topic: &str, total: i32) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let mut t = CreatePartitionsTopic::default();
    t.name = name(topic);
    t.count = total;
    t.assignments = None;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 30_000;
    let resp = c.call(&req, 3)?;
    let r = resp
        .results
        .first()
        .context("empty CreatePartitions answer")?;
    match r.error_code {
        0 => {
            println!("{topic}: now {total} partitions");
            Ok(())
        }
        3 => bail!("topic {topic} does not exist"),
        code => bail!(
            "{topic}: partitions not added: error {code} {}",
            r.error_message.as_deref().unwrap_or("")
        ),
    }
}

const BROKER: i8 = 4;

/// Prints the settings a running broker runs with (all, or `keys`): DescribeConfigs on
/// broker `broker` (default: the first in Metadata).
pub fn print_broker(bootstrap: &str, broker: Option<i32>, keys: &[String]) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    // Each broker reports its own settings: ask that one.
    let md = super::topic::metadata(&mut c, Some(Vec::new()))?;
    let id = match broker {
        Some(id) => id,
        None => md
            .brokers
            .iter()
            .map(|b| b.node_id.0)
            .min()
            .context("no broker in Metadata")?,
    };
    let Some(b) = md.brokers.iter().find(|b| b.node_id.0 == id) else {
        bail!("no broker {id} in this cluster");
    };
    let mut c = Client::connect(&format!("{}:{}", b.host.as_str(), b.port))?;
    let only = (!keys.is_empty()).then_some(keys);
    let r = describe(
        &mut c,
        BROKER,
        &id.to_string(),
        only,
        &format!("configs of broker {id}"),
    )?;
    if let Some(k) = keys
        .iter()
        .find(|k| !r.configs.iter().any(|c| c.name.as_str() == k.as_str()))
    {
        bail!("broker {id} has no setting {k:?}");
    }
    println!("SETTING\tVALUE\tSOURCE\tDYNAMIC");
    for c in &r.configs {
        let value = if c.is_sensitive {
            "(sensitive)"
        } else {
            c.value.as_deref().unwrap_or("")
        };
        let dynamic = if c.read_only { "no" } else { "yes" };
        println!(
            "{}\t{value}\t{}\t{dynamic}",
            c.name,
            source_name(c.config_source)
        );
    }
    Ok(())
}
