//! `shardlog-plan`: turns a measured per-partition limit (`shardlog-loadgen --find-limit
//! --json`) and a target into partitions, cores and disk, and checks a host for what limits
//! a thread-per-core io_uring broker.
//!
//! Invariant: reads files and the system, never changes them; all arithmetic is in `plan.rs`.

mod host;
mod plan;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shardlog-plan",
    version,
    about = "Capacity planner and host check for shardlog (and any Kafka-API broker)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Recommend partitions, cores and disk for a target throughput.
    Plan {
        /// JSON written by `shardlog-loadgen --find-limit --json FILE`.
        #[arg(long)]
        limit: Option<PathBuf>,
        /// Per-partition limit in MB/s, instead of --limit.
        #[arg(long)]
        per_partition_mbps: Option<f64>,
        /// Whole-broker MB/s measured, with --per-partition-mbps (--limit carries it).
        #[arg(long)]
        measured_mbps: Option<f64>,
        /// Broker cores during the measurement (to derive MB/s per core).
        #[arg(long, default_value_t = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))]
        measured_cores: usize,
        /// Peak ingest to plan for, MB/s.
        #[arg(long)]
        target_mbps: f64,
        /// Retention in hours.
        #[arg(long, default_value_t = 168.0)]
        retention_hours: f64,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication: u32,
        /// Consumers in the largest consumer group.
        #[arg(long, default_value_t = 1)]
        consumers: u32,
        /// Share of the measured limit to use.
        #[arg(long, default_value_t = 0.7)]
        headroom: f64,
        /// Growth of the target over the topic's life.
        #[arg(long, default_value_t = 1.0)]
        growth: f64,
        /// Messages are keyed (ordering per key matters).
        #[arg(long)]
        keyed: bool,
        /// Mean time a consumer spends processing one record, ms: sizes the consumer side by
        /// Little's law (records in the system = arrival rate x time in the system).
        #[arg(long, default_value_t = 0.0)]
        process_ms: f64,
        /// Mean record size in bytes (to turn MB/s into records/s for --process-ms).
        #[arg(long, default_value_t = 1024.0)]
        record_bytes: f64,
        /// Brokers in the cluster (for the partitions < 100 x brokers x replication guideline).
        #[arg(long, default_value_t = 1)]
        brokers: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check this host: io_uring, memlock, cores, CPU governor, disk scheduler, THP.
    HostCheck {
        /// Data directory whose disk to check.
        #[arg(long, default_value = "./shardlog-data")]
        data_dir: PathBuf,
        /// Shards the broker will run (`shardlog serve --cores`).
        #[arg(long)]
        cores: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// (per-partition MB/s, whole-broker MB/s) from a loadgen report.
fn read_limit(path: &PathBuf) -> Result<(f64, f64)> {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    let l = &v["limit"];
    match (l["per_partition_mb_per_sec"].as_f64(), l["mb_per_sec"].as_f64()) {
        (Some(p), Some(t)) => Ok((p, t)),
        _ => bail!(
            "{} has no limit (was it written by `shardlog-loadgen --find-limit --json`, and did a step hold?)",
            path.display()
        ),
    }
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Plan {
            limit,
            per_partition_mbps,
            measured_mbps,
            measured_cores,
            target_mbps,
            retention_hours,
            replication,
            consumers,
            headroom,
            growth,
            keyed,
            process_ms,
            record_bytes,
            brokers,
            json,
        } => {
            let (per_partition, measured) = match (limit, per_partition_mbps) {
                (Some(p), None) => read_limit(&p)?,
                (None, Some(v)) => (v, measured_mbps.unwrap_or(0.0)),
                _ => bail!("give exactly one of --limit FILE or --per-partition-mbps X"),
            };
            let inputs = plan::Inputs {
                target_mb_per_sec: target_mbps,
                per_partition_mb_per_sec: per_partition,
                measured_mb_per_sec: measured,
                measured_cores,
                headroom,
                retention_hours,
                replication,
                consumers,
                growth,
                keyed,
                process_ms,
                record_bytes,
                brokers,
            };
            let p = plan::plan(&inputs).map_err(anyhow::Error::msg)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"inputs": inputs, "plan": p})
                    )?
                );
                return Ok(());
            }
            println!(
                "partitions {}   cores {}   disk {}   disk writes {:.1} MB/s",
                p.partitions,
                p.cores.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                plan::human_bytes(p.disk_bytes),
                p.disk_write_mb_per_sec
            );
            for r in &p.reasoning {
                println!("  - {r}");
            }
            for w in &p.warnings {
                println!("warning: {w}");
            }
        }
        Cmd::HostCheck {
            data_dir,
            cores,
            json,
        } => {
            let findings = host::check(&data_dir, cores);
            if json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else {
                for f in &findings {
                    println!(
                        "{:<5} {:<24} {}",
                        format!("{:?}", f.level).to_uppercase(),
                        f.check,
                        f.found
                    );
                    if !f.fix.is_empty() {
                        println!("      fix: {}", f.fix);
                    }
                }
            }
            if findings.iter().any(|f| f.level == host::Level::Fail) {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
