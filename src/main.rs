//! The `shardlog` command: `serve` runs the broker; `topic ...` administers a running one.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use shardlog::settings::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "shardlog",
    version,
    about = "A Kafka-compatible, thread-per-core log broker"
)]
struct Cli {
    /// Kafka client properties for the admin commands (security.protocol, sasl.mechanism,
    /// sasl.jaas.config or sasl.username/sasl.password, ssl.truststore.location as PEM, ...),
    /// as Kafka's tools take them.
    #[arg(long, global = true)]
    command_config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the broker.
    Serve(Box<ServeArgs>),
    /// Write records (lines of standard input or a file) to a topic.
    Produce(shardlog::admin::produce::ProduceArgs),
    /// Read records of a topic and print them (values, a kcat-style format, or JSON).
    Consume(shardlog::admin::consume::ConsumeArgs),
    /// Create, list, describe, change or delete topics on a running broker.
    Topic {
        #[command(subcommand)]
        cmd: shardlog::admin::cli::TopicCmd,
    },
    /// List consumer groups, show their members and lag, reset their offsets, delete them.
    Group {
        #[command(subcommand)]
        cmd: shardlog::admin::cli::GroupCmd,
    },
    /// List and describe transactions, and the producers a partition knows.
    Txn {
        #[command(subcommand)]
        cmd: shardlog::admin::txn::TxnCmd,
    },
    /// Show the broker configuration; change its dynamic settings on a running broker.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Delete records below an offset (DeleteRecords) on a running broker.
    Records {
        #[command(subcommand)]
        cmd: RecordsCmd,
    },
    /// Inspect a data directory offline (the broker must not be running on it).
    Log {
        #[command(subcommand)]
        cmd: LogCmd,
    },
    /// Show the cluster: nodes, the controller, the metadata quorum.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Create, delete or list SASL/SCRAM users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Add, list or remove ACLs (with `authorizer.class.name` set on the broker).
    Acl {
        #[command(subcommand)]
        cmd: AclCmd,
    },
}

/// The resource an ACL command names.
#[derive(clap::Args)]
struct AclResource {
    /// A topic (or, with --resource-pattern-type prefixed, a topic name prefix).
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group (or prefix).
    #[arg(long)]
    group: Option<String>,
    /// A transactional id (or prefix).
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster itself (admin operations).
    #[arg(long)]
    cluster: bool,
    /// literal or prefixed (list and remove also take any and match).
    #[arg(long, default_value = "")]
    resource_pattern_type: String,
}

impl AclResource {
    fn resource(&self) -> shardlog::admin::acls::Resource {
        shardlog::admin::acls::Resource {
            topic: self.topic.clone(),
            group: self.group.clone(),
            transactional_id: self.transactional_id.clone(),
            cluster: self.cluster,
            pattern: self.resource_pattern_type.clone(),
        }
    }
}

#[derive(Subcommand)]
enum AclCmd {
    /// Allow or deny principals operations on a resource.
    Add {
        /// Principal to allow (User:alice, User:* for everyone); repeatable.
        #[arg(long)]
        allow_principal: Vec<String>,
        /// Principal to deny (a deny wins over any allow); repeatable.
        #[arg(long)]
        deny_principal: Vec<String>,
        /// Operations: read, write, create, delete, alter, describe, cluster_action,
        /// describe_configs, alter_configs, idempotent_write, all (repeatable or comma-separated).
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        /// Client address the ACL applies to (* for any).
        #[arg(long, default_value = "*")]
        host: String,
        #[command(flatten)]
        resource: AclResource,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// List ACLs (all, or those of a resource or principal).
    List {
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        resource: AclResource,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Remove the ACLs of a resource and/or principal (optionally only some operations).
    Remove {
        #[arg(long)]
        principal: Option<String>,
        #[arg(long = "operation")]
        operations: Vec<String>,
        #[command(flatten)]
        resource: AclResource,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user or set its password (salted and iterated here; the broker stores only
    /// SCRAM credentials, which also check PLAIN logins).
    Create {
        name: String,
        /// The password; read from the first line of stdin when not given (so it stays out
        /// of the process list and shell history).
        #[arg(long)]
        password: Option<String>,
        /// SCRAM mechanisms to store a credential for.
        #[arg(long = "mechanism", default_values = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
        mechanisms: Vec<String>,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Delete a user's credentials.
    Delete {
        name: String,
        #[arg(long = "mechanism", default_values = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
        mechanisms: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// List users and their mechanisms (all, or the ones named).
    List {
        names: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Nodes (address, shards, rack, epoch, live or fenced), the controller and the quorum's
    /// state, as the node at `--http` sees them.
    Info {
        /// HTTP (metrics) address of any node.
        #[arg(long, default_value = "127.0.0.1:9644")]
        http: String,
    },
    /// Start decommissioning a node: no new partitions or group coordinators are placed on
    /// it. Prints the partitions it still holds (moving them needs replication).
    Decommission {
        /// The node's `node.id`.
        node: u64,
        /// Cancel a decommission: the node takes new partitions again.
        #[arg(long)]
        cancel: bool,
        /// HTTP (metrics) address of any node.
        #[arg(long, default_value = "127.0.0.1:9644")]
        http: String,
    },
    /// Remove a stopped node that holds no partitions from the cluster (a broker-only node;
    /// voters stay).
    Unregister {
        /// The node's `node.id`.
        node: u64,
        /// HTTP (metrics) address of any node.
        #[arg(long, default_value = "127.0.0.1:9644")]
        http: String,
    },
}

#[derive(Subcommand)]
enum RecordsCmd {
    /// Move a partition's log start offset forward: records below `--before` are deleted
    /// and no longer served (Kafka's kafka-delete-records).
    Delete {
        topic: String,
        #[arg(long)]
        partition: i32,
        /// First offset to keep; -1 deletes everything up to the high watermark.
        #[arg(long, allow_hyphen_values = true)]
        before: i64,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

#[derive(Subcommand)]
enum LogCmd {
    /// Verify every batch (header, CRC, offsets, records) and index of every partition, like
    /// kafka-dump-log --verify; exits with status 1 if anything is damaged.
    Check {
        /// The broker's data directory (log.dirs).
        data_dir: std::path::PathBuf,
    },
}

/// Broker settings. Each flag overrides the same key from `SHARDLOG_*` environment
/// variables and the `--config` file; unset, the built-in default applies
/// (`shardlog config print` shows the effective values and where each came from).
#[derive(Parser, Clone)]
struct ServeArgs {
    /// TOML file of settings, keyed by Kafka's broker config names (docs/operations.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address of shard 0; shard i listens on the same host at port + i [listen; default
    /// 127.0.0.1:9092].
    #[arg(long)]
    listen: Option<String>,
    /// Directory holding topics, groups and the catalog [log.dirs; default ./shardlog-data].
    #[arg(long)]
    data_dir: Option<String>,
    /// Number of shards, one pinned per core [cores; default: all cores].
    #[arg(long)]
    cores: Option<String>,
    /// Largest request frame accepted [socket.request.max.bytes; default 104857600].
    #[arg(long)]
    max_frame_bytes: Option<String>,
    /// Create topics on first use, true or false [auto.create.topics.enable; default true].
    #[arg(long)]
    auto_create_topics: Option<String>,
    /// Partitions of auto-created topics [num.partitions; default 1].
    #[arg(long)]
    num_partitions: Option<String>,
    /// Segment size before a roll [log.segment.bytes; default 1073741824].
    #[arg(long)]
    segment_bytes: Option<String>,
    /// Segment age before a roll, in ms [log.roll.ms; default 7 days].
    #[arg(long)]
    segment_ms: Option<String>,
    /// Largest record batch accepted [message.max.bytes; default 1048588].
    #[arg(long)]
    message_max_bytes: Option<String>,
    /// How long an idempotent producer's state is kept after its last write
    /// [producer.id.expiration.ms; default 1 day].
    #[arg(long)]
    producer_id_expiration_ms: Option<String>,
    /// Wait before an empty group's first rebalance [group.initial.rebalance.delay.ms;
    /// default 3000].
    #[arg(long)]
    group_initial_rebalance_delay_ms: Option<String>,
    /// Smallest session timeout a consumer may ask for [group.min.session.timeout.ms;
    /// default 6000].
    #[arg(long)]
    group_min_session_timeout_ms: Option<String>,
    /// Offsets of a group empty this long are deleted [offsets.retention.minutes; default
    /// 10080].
    #[arg(long)]
    offsets_retention_minutes: Option<String>,
    /// HTTP address of /metrics and /health, or "off"; port 0 picks a free port
    /// [metrics.listen; default 127.0.0.1:9644].
    #[arg(long)]
    metrics_listen: Option<String>,
    /// When data is fdatasynced: always (acks=all answered after fdatasync, shared by
    /// concurrent produces), interval (every log.flush.interval.ms), never
    /// [log.flush.policy; default always].
    #[arg(long)]
    flush: Option<String>,
    /// The web console on the HTTP port (/ui): read-write, read-only or off
    /// [ui; default read-write].
    #[arg(long)]
    ui: Option<String>,
    /// Log format, text or json [log.format; default text].
    #[arg(long)]
    log_format: Option<String>,
    /// Log filter, RUST_LOG syntax; RUST_LOG overrides it [log.level; default info].
    #[arg(long)]
    log: Option<String>,
}

impl ServeArgs {
    /// (setting key, value, flag) of every flag given.
    fn flags(&self) -> Vec<(&'static str, String, &'static str)> {
        let given = [
            ("--listen", &self.listen),
            ("--data-dir", &self.data_dir),
            ("--cores", &self.cores),
            ("--max-frame-bytes", &self.max_frame_bytes),
            ("--auto-create-topics", &self.auto_create_topics),
            ("--num-partitions", &self.num_partitions),
            ("--segment-bytes", &self.segment_bytes),
            ("--segment-ms", &self.segment_ms),
            ("--message-max-bytes", &self.message_max_bytes),
            (
                "--producer-id-expiration-ms",
                &self.producer_id_expiration_ms,
            ),
            (
                "--group-initial-rebalance-delay-ms",
                &self.group_initial_rebalance_delay_ms,
            ),
            (
                "--group-min-session-timeout-ms",
                &self.group_min_session_timeout_ms,
            ),
            (
                "--offsets-retention-minutes",
                &self.offsets_retention_minutes,
            ),
            ("--metrics-listen", &self.metrics_listen),
            ("--flush", &self.flush),
            ("--ui", &self.ui),
            ("--log-format", &self.log_format),
            ("--log", &self.log),
        ];
        given
            .into_iter()
            .filter_map(|(flag, v)| {
                let (f, key) = settings::FLAG_KEYS.iter().find(|(f, _)| *f == flag)?;
                v.clone().map(|v| (*key, v, *f))
            })
            .collect()
    }

    fn resolve(&self) -> Result<settings::Resolved> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("SHARDLOG_"))
            .collect();
        Ok(settings::resolve(
            self.config.as_deref(),
            &env,
            &self.flags(),
        )?)
    }
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print every setting's effective value and where it came from.
    Print(Box<ServeArgs>),
    /// The settings a running broker runs with (DescribeConfigs on the broker), each with
    /// its value and whether it is the default.
    Get {
        /// Only these settings (default: all).
        keys: Vec<String>,
        /// The broker id to ask (default: the first broker in Metadata).
        #[arg(long)]
        broker: Option<i32>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Change dynamic settings of a running broker (IncrementalAlterConfigs on the broker
    /// resource): stored with the cluster's metadata, kept across restarts, applied at once
    /// to every partition whose topic does not override them. `config get` marks which
    /// settings are dynamic.
    Set {
        /// KEY=VALUE to set (e.g. log.retention.ms=3600000).
        set: Vec<String>,
        /// KEY whose dynamic value to remove (the static setting applies again; repeatable).
        #[arg(long = "delete")]
        delete: Vec<String>,
        /// Only the node of this broker id (default: every broker, Kafka's `<default>`).
        #[arg(long)]
        broker: Option<i32>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

fn init_logging(filter: &str, format: LogFormat) {
    // openraft reports every unreachable peer and superseded vote at warn/error level while
    // elections settle; the quorum's own state changes are logged by `cluster` instead.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{filter},openraft=error,openraft::core=off"))
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Serve(_)) {
        // A command's output piped into `head` ends quietly when the reader goes, as other
        // Unix tools do (Rust ignores SIGPIPE, and a print to a closed pipe would panic).
        // The broker keeps ignoring it: a client's closed socket is an error, not an exit.
        // SAFETY: restores the default action of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(path) = &cli.command_config {
        shardlog::admin::client::configure(path)?;
    }
    match cli.cmd {
        Cmd::Serve(a) => {
            let resolved = a.resolve()?;
            let st = resolved.settings;
            init_logging(&st.log_level, st.log_format);
            for w in &resolved.warnings {
                tracing::warn!("{w}");
            }
            shardlog::broker::serve(st.broker)
        }
        Cmd::Config {
            cmd:
                ConfigCmd::Get {
                    keys,
                    broker,
                    bootstrap,
                },
        } => {
            init_logging("warn", LogFormat::Text);
            shardlog::admin::configs::print_broker(&bootstrap, broker, &keys)
        }
        Cmd::Config {
            cmd:
                ConfigCmd::Set {
                    set,
                    delete,
                    broker,
                    bootstrap,
                },
        } => {
            init_logging("warn", LogFormat::Text);
            if set.is_empty() && delete.is_empty() {
                anyhow::bail!("nothing to change: give KEY=VALUE or --delete KEY");
            }
            let set = shardlog::admin::cli::key_values(&set, "")?;
            shardlog::admin::configs::alter_broker(&bootstrap, broker, &set, &delete)
        }
        Cmd::Config {
            cmd: ConfigCmd::Print(a),
        } => {
            let resolved = a.resolve()?;
            for w in &resolved.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", resolved.print());
            Ok(())
        }
        Cmd::Records {
            cmd:
                RecordsCmd::Delete {
                    topic,
                    partition,
                    before,
                    bootstrap,
                },
        } => {
            init_logging("warn", LogFormat::Text);
            shardlog::admin::records::delete(&bootstrap, &topic, partition, before).map(|_| ())
        }
        Cmd::Log {
            cmd: LogCmd::Check { data_dir },
        } => {
            let bad = shardlog::admin::log_check::run(&data_dir)?;
            if bad > 0 {
                anyhow::bail!("{bad} partition(s) with problems");
            }
            Ok(())
        }
        Cmd::Cluster { cmd } => match cmd {
            ClusterCmd::Info { http } => shardlog::admin::cluster::info(&http),
            ClusterCmd::Decommission { node, cancel, http } => {
                shardlog::admin::cluster::decommission(&http, node, cancel)
            }
            ClusterCmd::Unregister { node, http } => {
                shardlog::admin::cluster::unregister(&http, node)
            }
        },
        Cmd::Acl { cmd } => {
            init_logging("warn", LogFormat::Text);
            use shardlog::admin::acls;
            match cmd {
                AclCmd::Add {
                    allow_principal,
                    deny_principal,
                    operations,
                    host,
                    resource,
                    bootstrap,
                } => acls::add(
                    &bootstrap,
                    &allow_principal,
                    &deny_principal,
                    &operations,
                    &host,
                    &resource.resource(),
                ),
                AclCmd::List {
                    principal,
                    resource,
                    bootstrap,
                } => acls::list(&bootstrap, principal.as_deref(), &resource.resource()),
                AclCmd::Remove {
                    principal,
                    operations,
                    resource,
                    bootstrap,
                } => acls::remove(
                    &bootstrap,
                    principal.as_deref(),
                    &operations,
                    &resource.resource(),
                ),
            }
        }
        Cmd::User { cmd } => {
            init_logging("warn", LogFormat::Text);
            use shardlog::admin::users;
            match cmd {
                UserCmd::Create {
                    name,
                    password,
                    mechanisms,
                    iterations,
                    bootstrap,
                } => {
                    let password = match password {
                        Some(p) => p,
                        None => {
                            let mut line = String::new();
                            std::io::stdin()
                                .read_line(&mut line)
                                .context("cannot read the password from stdin")?;
                            line.trim_end_matches(['\r', '\n']).to_string()
                        }
                    };
                    users::create(&bootstrap, &name, &password, &mechanisms, iterations)
                }
                UserCmd::Delete {
                    name,
                    mechanisms,
                    bootstrap,
                } => users::delete(&bootstrap, &name, &mechanisms),
                UserCmd::List { names, bootstrap } => users::list(&bootstrap, &names),
            }
        }
        Cmd::Produce(args) => {
            init_logging("warn", LogFormat::Text);
            shardlog::admin::produce::run(args)
        }
        Cmd::Consume(args) => {
            init_logging("warn", LogFormat::Text);
            shardlog::admin::consume::run(args)
        }
        Cmd::Txn { cmd } => {
            init_logging("warn", LogFormat::Text);
            shardlog::admin::txn::run(cmd)
        }
        Cmd::Group { cmd } => {
            init_logging("warn", LogFormat::Text);
            shardlog::admin::cli::group(cmd)
        }
        Cmd::Topic { cmd } => {
            init_logging("warn", LogFormat::Text);
            shardlog::admin::cli::topic(cmd)
        }
    }
}
