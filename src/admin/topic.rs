//! `shardlog topic create|list|describe|delete`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::client::Client;

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn create(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: i16,
    configs: &[(String, String)],
) -> Result<()> {
    let n = create_topic(bootstrap, topic, partitions, replication, configs)?;
    println!("created topic {topic} with {n} partitions");
    Ok(())
}

/// Creates `topic`: the partitions it got.
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: i16,
    configs: &[(String, String)],
) -> Result<i32> {
    let mut c = Client::connect(bootstrap)?;
    let mut t = CreatableTopic::default();
    t.name = name(topic);
    t.num_partitions = partitions;
    t.replication_factor = replication;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut cfg = CreatableTopicConfig::default();
            cfg.name = StrBytes::from_string(k.clone());
            cfg.value = Some(StrBytes::from_string(v.clone()));
            cfg
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 30_000;
    let resp = c.call(&req, 5)?;
    let r = resp
        .topics
        .into_iter()
        .next()
        .context("empty CreateTopics answer")?;
    if r.error_code != 0 {
        bail!(
            "cannot create topic {}: error {} {}",
            r.name.0,
            r.error_code,
            r.error_message.map(|m| m.to_string()).unwrap_or_default()
        );
    }
    Ok(r.num_partitions)
}

pub fn delete(bootstrap: &str, topic: &str) -> Result<()> {
    delete_topic(bootstrap, topic)?;
    println!("deleted topic {topic}");
    Ok(())
}

/// Deletes `topic`.
pub fn delete_topic(bootstrap: &str, topic: &str) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let mut req = DeleteTopicsRequest::default();
    req.topic_names = vec![name(topic)];
    req.timeout_ms = 30_000;
    let resp = c.call(&req, 4)?;
    for r in resp.responses {
        if r.error_code != 0 {
            bail!("cannot delete topic {topic}: error {}", r.error_code);
        }
    }
    Ok(())
}

pub fn metadata(c: &mut Client, topics: Option<Vec<String>>) -> Result<MetadataResponse> {
    let mut req = MetadataRequest::default();
    req.topics = topics.map(|ts| {
        ts.into_iter()
            .map(|t| {
                let mut m = MetadataRequestTopic::default();
                m.name = Some(name(&t));
                m
            })
            .collect()
    });
    req.allow_auto_topic_creation = false;
    c.call(&req, 12)
}

pub fn list(bootstrap: &str) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let md = metadata(&mut c, None)?;
    let mut names: Vec<(String, usize)> = md
        .topics
        .iter()
        .filter_map(|t| {
            t.name
                .as_ref()
                .map(|n| (n.0.to_string(), t.partitions.len()))
        })
        .collect();
    names.sort();
    for (n, p) in names {
        println!("{n}\t{p} partitions");
    }
    Ok(())
}

/// ListOffsets for one partition: (error code, offset). `timestamp` -1 is the latest
/// offset, -2 the earliest, otherwise the first offset at or after that time.
pub fn list_offset(
    c: &mut Client,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<(i16, i64)> {
    let mut lp = ListOffsetsPartition::default();
    lp.partition_index = partition;
    lp.timestamp = timestamp;
    let mut lt = ListOffsetsTopic::default();
    lt.name = name(topic);
    lt.partitions = vec![lp];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![lt];
    let resp = c.call(&req, 4)?;
    Ok(resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| (p.error_code, p.offset))
        .unwrap_or((-1, -1)))
}

pub fn offsets(
    bootstrap_md: &MetadataResponse,
    topic: &str,
    partitions: &[(i32, i32)],
    which: i64,
) -> Result<Vec<(i32, i64)>> {
    let mut out = Vec::new();
    // One connection per leader, reused for all its partitions.
    let mut clients: std::collections::HashMap<i32, Client> = std::collections::HashMap::new();
    for (p, leader) in partitions {
        let b = bootstrap_md
            .brokers
            .iter()
            .find(|b| b.node_id == BrokerId(*leader));
        let Some(b) = b else {
            out.push((*p, -1));
            continue;
        };
        let c = match clients.entry(*leader) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Client::connect(&format!("{}:{}", b.host, b.port))?)
            }
        };
        let (err, off) = list_offset(c, topic, *p, which)?;
        let off = if err == 0 { off } else { -1 };
        out.push((*p, off));
    }
    Ok(out)
}

pub fn describe(bootstrap: &str, topic: &str) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let md = metadata(&mut c, Some(vec![topic.to_string()]))?;
    let Some(t) = md.topics.first() else {
        bail!("no metadata for {topic}");
    };
    if t.error_code != 0 {
        bail!("topic {topic}: error {} (3 = unknown topic)", t.error_code);
    }
    let parts: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    let earliest = offsets(&md, topic, &parts, -2)?;
    let latest = offsets(&md, topic, &parts, -1)?;
    println!(
        "topic {topic}  id {}  partitions {}",
        t.topic_id,
        parts.len()
    );
    println!("partition\tleader\tearliest\tlatest\treplicas\tisr");
    let ids = |v: &[kafka_protocol::messages::BrokerId]| {
        v.iter()
            .map(|b| b.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    for (i, (p, leader)) in parts.iter().enumerate() {
        let meta = &t.partitions[i];
        println!(
            "{p}\t{leader}\t{}\t{}\t{}\t{}",
            earliest.get(i).map(|x| x.1).unwrap_or(-1),
            latest.get(i).map(|x| x.1).unwrap_or(-1),
            ids(&meta.replica_nodes),
            ids(&meta.isr_nodes),
        );
    }
    Ok(())
}

/// A connection to every broker in Metadata, with its id (the requests each broker answers
/// only for itself: ListGroups, ListTransactions, DescribeLogDirs).
pub fn every_broker(bootstrap: &str) -> Result<Vec<(i32, Client)>> {
    let mut c = Client::connect(bootstrap)?;
    let md = metadata(&mut c, Some(Vec::new()))?;
    md.brokers
        .iter()
        .map(|b| {
            Ok((
                b.node_id.0,
                Client::connect(&format!("{}:{}", b.host, b.port))?,
            ))
        })
        .collect()
}

/// (topic, partition) → bytes on disk.
pub type Sizes = BTreeMap<(String, i32), i64>;

/// Bytes on disk per broker (DescribeLogDirs on each): broker id → each partition's size
/// there (leader or follower).
pub fn partition_sizes(bootstrap: &str) -> Result<BTreeMap<i32, Sizes>> {
    use kafka_protocol::messages::describe_log_dirs_request::DescribeLogDirsRequest;
    let mut out = BTreeMap::new();
    for (id, mut bc) in every_broker(bootstrap)? {
        let mut req = DescribeLogDirsRequest::default();
        req.topics = None;
        let resp = bc.call(&req, 4)?;
        if resp.error_code != 0 {
            bail!("DescribeLogDirs on broker {id}: error {}", resp.error_code);
        }
        let mut sizes = BTreeMap::new();
        for dir in resp.results {
            for t in dir.topics {
                for p in t.partitions {
                    sizes.insert((t.name.0.to_string(), p.partition_index), p.partition_size);
                }
            }
        }
        out.insert(id, sizes);
    }
    Ok(out)
}
