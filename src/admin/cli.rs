//! The arguments of `shardlog topic ...` and `shardlog group ...` (names and flags after
//! `rpk` and Kafka's scripts where they agree) and which function each runs.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use super::{group, reassign, reset, topic};

#[derive(Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replicas of each partition, on distinct nodes (-1: the broker's
        /// default.replication.factor).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Topic config, KEY=VALUE (repeatable).
        #[arg(long = "config")]
        configs: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// List topics.
    List {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Show partitions, leaders, earliest/latest offsets and the configs of a topic.
    Describe {
        name: String,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Set or remove topic configs (IncrementalAlterConfigs); a removed config falls back
    /// to the broker's default.
    AlterConfig {
        name: String,
        /// KEY=VALUE to set (repeatable).
        #[arg(long = "set")]
        set: Vec<String>,
        /// KEY to remove (repeatable).
        #[arg(long = "delete")]
        delete: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Grow a topic to a new total number of partitions (keys then map to other
    /// partitions: a keyed topic's order per key holds only from then on).
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: i32,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Delete a topic.
    Delete {
        name: String,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Move a partition's replicas to other nodes (copy, catch up, switch); the first
    /// node is the preferred leader.
    Reassign {
        name: String,
        #[arg(long)]
        partition: i32,
        /// Node ids of the new replicas, comma-separated (e.g. 2,3,4).
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        replicas: Vec<u64>,
        /// Cancel the move under way instead.
        #[arg(long)]
        cancel: bool,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// List partition moves under way.
    Reassignments {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

#[derive(Subcommand)]
pub enum GroupCmd {
    /// List consumer groups and their states.
    List {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Members, assigned partitions, committed and log end offsets, lag; with --window, a
    /// status per partition: STALLED (commits not moving while lag > 0) or LAGGING (lag
    /// growing) over the window.
    Describe {
        name: String,
        /// Seconds between two samples for the STALLED/LAGGING status (0: no status).
        #[arg(long, default_value_t = 0)]
        window: u64,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Delete groups that have no members (their committed offsets go with them).
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Move an inactive group's committed offsets, as kafka-consumer-groups.sh does:
    /// shows the plan (--dry-run, the default) or commits it (--execute).
    ResetOffsets(reset::ResetArgs),
}

pub fn key_values(kvs: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    kvs.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| match flag {
                    "" => format!("{kv:?} is not KEY=VALUE"),
                    f => format!("--{f} {kv:?} is not KEY=VALUE"),
                })
        })
        .collect()
}

pub fn topic(cmd: TopicCmd) -> Result<()> {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            replication_factor,
            configs,
            bootstrap,
        } => {
            let configs = key_values(&configs, "config")?;
            topic::create(&bootstrap, &name, partitions, replication_factor, &configs)
        }
        TopicCmd::List { bootstrap } => topic::list(&bootstrap),
        TopicCmd::Describe { name, bootstrap } => {
            topic::describe(&bootstrap, &name)?;
            super::configs::print_topic(&bootstrap, &name)
        }
        TopicCmd::AlterConfig {
            name,
            set,
            delete,
            bootstrap,
        } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
            }
            let set = key_values(&set, "set")?;
            super::configs::alter_topic(&bootstrap, &name, &set, &delete)
        }
        TopicCmd::AddPartitions {
            name,
            partitions,
            bootstrap,
        } => super::configs::add_partitions(&bootstrap, &name, partitions),
        TopicCmd::Delete { name, bootstrap } => topic::delete(&bootstrap, &name),
        TopicCmd::Reassign {
            name,
            partition,
            replicas,
            cancel,
            bootstrap,
        } => reassign::reassign(
            &bootstrap,
            &name,
            partition,
            (!cancel).then_some(replicas.as_slice()),
        ),
        TopicCmd::Reassignments { bootstrap } => reassign::list(&bootstrap),
    }
}

pub fn group(cmd: GroupCmd) -> Result<()> {
    match cmd {
        GroupCmd::List { bootstrap } => group::list(&bootstrap),
        GroupCmd::Describe {
            name,
            window,
            bootstrap,
        } => group::describe(&bootstrap, &name, Duration::from_secs(window)),
        GroupCmd::Delete { names, bootstrap } => group::delete(&bootstrap, &names),
        GroupCmd::ResetOffsets(args) => reset::run(args),
    }
}
