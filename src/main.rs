//! The `shardlog` command: `serve` runs the broker; `topic ...` administers a running one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use shardlog::config::BrokerConfig;

#[derive(Parser)]
#[command(
    name = "shardlog",
    version,
    about = "A Kafka-compatible, thread-per-core log broker"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the broker.
    Serve(ServeArgs),
    /// Create, list, describe or delete topics on a running broker.
    Topic {
        #[command(subcommand)]
        cmd: TopicCmd,
    },
    /// List consumer groups, show their members and lag, reset their offsets.
    Group {
        #[command(subcommand)]
        cmd: GroupCmd,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
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
    /// Move an inactive group's committed offsets for a topic.
    ResetOffsets {
        name: String,
        #[arg(long)]
        topic: String,
        #[arg(long, conflicts_with_all = ["to_latest", "to_offset"])]
        to_earliest: bool,
        #[arg(long, conflicts_with_all = ["to_earliest", "to_offset"])]
        to_latest: bool,
        #[arg(long, conflicts_with_all = ["to_earliest", "to_latest"])]
        to_offset: Option<i64>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

#[derive(Parser)]
struct ServeArgs {
    /// Address of shard 0; shard i listens on the same host at port + i.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Directory holding topics and the catalog.
    #[arg(long, default_value = "./shardlog-data")]
    data_dir: PathBuf,
    /// Number of shards, one pinned per core (default: all cores).
    #[arg(long)]
    cores: Option<usize>,
    /// Largest request frame accepted (socket.request.max.bytes).
    #[arg(long, default_value_t = 104_857_600)]
    max_frame_bytes: usize,
    /// Create topics on first use (auto.create.topics.enable).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    auto_create_topics: bool,
    /// Partitions of auto-created topics (num.partitions).
    #[arg(long, default_value_t = 1)]
    num_partitions: i32,
    /// Segment size before a roll (log.segment.bytes).
    #[arg(long, default_value_t = 1 << 30)]
    segment_bytes: u64,
    /// Segment age before a roll, in ms (log.roll.ms).
    #[arg(long, default_value_t = 7 * 24 * 3600 * 1000)]
    segment_ms: i64,
    /// Largest record batch accepted (message.max.bytes).
    #[arg(long, default_value_t = 1_048_588)]
    message_max_bytes: usize,
    /// How long an idempotent producer's state is kept after its last write
    /// (producer.id.expiration.ms).
    #[arg(long, default_value_t = 24 * 3600 * 1000)]
    producer_id_expiration_ms: i64,
    /// Delay before the first rebalance of an empty group, letting more members join
    /// (group.initial.rebalance.delay.ms).
    #[arg(long, default_value_t = 3000)]
    group_initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a consumer may ask for (group.min.session.timeout.ms).
    #[arg(long, default_value_t = 6000)]
    group_min_session_timeout_ms: u64,
    /// Committed offsets of a group empty for this long are deleted
    /// (offsets.retention.minutes).
    #[arg(long, default_value_t = 10080)]
    offsets_retention_minutes: u64,
    /// Address of the HTTP endpoint serving /metrics (Prometheus) and /health; "off" to
    /// disable; port 0 picks a free port (logged at startup).
    #[arg(long, default_value = "127.0.0.1:9644")]
    metrics_listen: String,
    /// Log filter, RUST_LOG syntax (overridden by RUST_LOG).
    #[arg(long, default_value = "info")]
    log: String,
}

#[derive(Subcommand)]
enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
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
    /// Show partitions, leaders and earliest/latest offsets of a topic.
    Describe {
        name: String,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Delete a topic.
    Delete {
        name: String,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Serve(a) => {
            init_logging(&a.log);
            let mut cfg = BrokerConfig {
                listen: a.listen,
                data_dir: a.data_dir,
                max_frame_bytes: a.max_frame_bytes,
                auto_create_topics: a.auto_create_topics,
                default_partitions: a.num_partitions,
                segment_bytes: a.segment_bytes,
                segment_ms: a.segment_ms,
                message_max_bytes: a.message_max_bytes,
                producer_id_expiration_ms: a.producer_id_expiration_ms,
                groups: shardlog::group::GroupConfig {
                    initial_rebalance_delay: Duration::from_millis(
                        a.group_initial_rebalance_delay_ms,
                    ),
                    min_session_timeout: Duration::from_millis(a.group_min_session_timeout_ms),
                    offsets_retention: Duration::from_secs(a.offsets_retention_minutes * 60),
                    ..Default::default()
                },
                ..BrokerConfig::default()
            };
            if let Some(c) = a.cores {
                cfg.cores = c;
            }
            cfg.metrics_listen = match a.metrics_listen.as_str() {
                "off" => None,
                addr => Some(addr.parse().with_context(|| {
                    format!("--metrics-listen {addr:?} is not HOST:PORT or off")
                })?),
            };
            shardlog::broker::serve(cfg)
        }
        Cmd::Group { cmd } => {
            init_logging("warn");
            use shardlog::admin::group;
            match cmd {
                GroupCmd::List { bootstrap } => group::list(&bootstrap),
                GroupCmd::Describe {
                    name,
                    window,
                    bootstrap,
                } => group::describe(&bootstrap, &name, Duration::from_secs(window)),
                GroupCmd::ResetOffsets {
                    name,
                    topic,
                    to_earliest,
                    to_latest,
                    to_offset,
                    bootstrap,
                } => {
                    let to = match (to_earliest, to_latest, to_offset) {
                        (true, _, _) => group::ResetTo::Earliest,
                        (_, true, _) => group::ResetTo::Latest,
                        (_, _, Some(n)) => group::ResetTo::Offset(n),
                        _ => anyhow::bail!("give --to-earliest, --to-latest or --to-offset N"),
                    };
                    group::reset_offsets(&bootstrap, &name, &topic, to)
                }
            }
        }
        Cmd::Topic { cmd } => {
            init_logging("warn");
            match cmd {
                TopicCmd::Create {
                    name,
                    partitions,
                    replication_factor,
                    configs,
                    bootstrap,
                } => {
                    let configs = configs
                        .iter()
                        .map(|kv| {
                            kv.split_once('=')
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .with_context(|| format!("--config {kv:?} is not KEY=VALUE"))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    shardlog::admin::topic::create(
                        &bootstrap,
                        &name,
                        partitions,
                        replication_factor,
                        &configs,
                    )
                }
                TopicCmd::List { bootstrap } => shardlog::admin::topic::list(&bootstrap),
                TopicCmd::Describe { name, bootstrap } => {
                    shardlog::admin::topic::describe(&bootstrap, &name)
                }
                TopicCmd::Delete { name, bootstrap } => {
                    shardlog::admin::topic::delete(&bootstrap, &name)
                }
            }
        }
    }
}
