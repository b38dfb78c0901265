//! DescribeLogDirs (API 35): the partitions this broker (shard) holds, leader or follower,
//! and their sizes on disk, in its one log directory — what `kafka-log-dirs.sh` and the
//! web console show.
//!
//! Invariant: it reads only this shard's own logs (each shard is its own broker), so it
//! crosses no core and costs one pass over the shard's open logs.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::TopicName;

use super::shard::Shard;
use crate::protocol::{str_bytes as s, DescribeLogDirsRequest};

pub fn describe(
    shard: &Rc<Shard>,
    req: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    let wanted = |t: &str, p: i32| {
        req.topics
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|(n, ps)| n == t && ps.contains(&p)))
    };
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for ((t, p), log) in shard.open_logs() {
        if !wanted(&t, p) {
            continue;
        }
        by_topic.entry(t).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p)
                .with_partition_size(log.size_bytes() as i64)
                .with_offset_lag(0),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(t, mut parts)| {
            parts.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(s(t)))
                .with_partitions(parts)
        })
        .collect();
    let mut dir = DescribeLogDirsResult::default()
        .with_log_dir(s(shard.cfg.data_dir.display().to_string()))
        .with_topics(topics);
    if version >= 4 {
        let free = shard.disk.free();
        let total = super::disk_space::total_bytes(&shard.cfg.data_dir).unwrap_or(0);
        dir = dir
            .with_total_bytes(i64::try_from(total).unwrap_or(i64::MAX))
            .with_usable_bytes(i64::try_from(free).unwrap_or(i64::MAX));
    }
    DescribeLogDirsResponse::default().with_results(vec![dir])
}
