//! How many partitions each shard may own (`topic.partitions.per.shard`, as Redpanda's
//! `topic_partitions_per_shard`): a CreateTopics or CreatePartitions that would place more
//! on any shard is refused up front, with the numbers, instead of being accepted and then
//! failing to serve. Partitions are placed by hash (`Catalog::owner`), so the check counts
//! the real placement, shard by shard.
//!
//! Invariant: pure function of the catalog and the request; it knows nothing of files.

use super::catalog::Catalog;
use crate::config::BrokerConfig;

/// Why giving `topic` `partitions` partitions (all of them, existing ones included) would
/// overfill a shard, if it would.
pub fn over_limit(
    cfg: &BrokerConfig,
    cat: &Catalog,
    topic: &str,
    partitions: i32,
) -> Option<String> {
    let shards = cfg.cores.max(1);
    let mut per_shard = vec![0usize; shards];
    for (name, meta) in &cat.topics {
        if name == topic {
            continue;
        }
        for p in 0..meta.partitions {
            per_shard[Catalog::owner(name, p, shards)] += 1;
        }
    }
    for p in 0..partitions {
        per_shard[Catalog::owner(topic, p, shards)] += 1;
    }
    let limit = cfg.partitions_per_shard;
    let (worst, count) = per_shard
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .map(|(i, n)| (i, *n))?;
    (count > limit).then(|| {
        format!(
            "topic '{topic}' with {partitions} partitions would place {count} partitions on shard {worst}, \
             over topic.partitions.per.shard = {limit} ({shards} shards, {} partitions in all); \
             raise the limit (each partition costs memory and open files) or run more cores",
            per_shard.iter().sum::<usize>()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::catalog::TopicMeta;

    #[test]
    fn counts_the_real_placement() {
        let cfg = BrokerConfig {
            cores: 2,
            partitions_per_shard: 10,
            ..BrokerConfig::default()
        };
        let mut cat = Catalog::default();
        assert!(over_limit(&cfg, &cat, "a", 12).is_none());
        let msg = over_limit(&cfg, &cat, "a", 30).expect("over");
        assert!(msg.contains("topic.partitions.per.shard = 10"), "{msg}");
        cat.topics.insert(
            "a".into(),
            TopicMeta {
                id: [0; 16],
                partitions: 12,
                configs: Default::default(),
                placement: Vec::new(),
            },
        );
        // Growing "a" counts its own partitions once; a second topic counts both.
        assert!(over_limit(&cfg, &cat, "a", 14).is_none());
        assert!(over_limit(&cfg, &cat, "b", 12).is_some());
    }
}
