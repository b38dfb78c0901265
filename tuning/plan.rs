//! Capacity arithmetic: from a measured per-partition limit and a target, how many
//! partitions, cores and how much disk, with the pitfalls Kafka users hit.
//!
//! Invariant: pure functions of their inputs (no I/O), so every figure can be checked by hand.

use serde::Serialize;

/// What the planner is told.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    /// Peak ingest to plan for, MB/s (before replication).
    pub target_mb_per_sec: f64,
    /// Sustainable MB/s of one partition at the SLO (from `shardlog-loadgen --find-limit`).
    pub per_partition_mb_per_sec: f64,
    /// Sustainable MB/s of the whole broker in that measurement, and the cores it had.
    pub measured_mb_per_sec: f64,
    pub measured_cores: usize,
    /// Share of a measured limit to plan to use (the rest absorbs bursts and failures).
    pub headroom: f64,
    pub retention_hours: f64,
    pub replication: u32,
    /// Consumers in the largest consumer group (each partition feeds one of them).
    pub consumers: u32,
    /// Growth of the target expected over the topic's life (keyed topics cannot add
    /// partitions later without moving keys).
    pub growth: f64,
    pub keyed: bool,
    /// Mean time a consumer spends on one record, ms (0: not given). With the record size it
    /// sizes the consumer side by Little's law.
    pub process_ms: f64,
    /// Mean record size in bytes, to turn MB/s into records/s.
    pub record_bytes: f64,
    /// Brokers in the cluster, for the partitions < 100 x brokers x replication guideline.
    pub brokers: u32,
}

/// The recommendation.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub partitions: u32,
    /// `None` without a whole-broker measurement to derive MB/s per core from.
    pub cores: Option<u32>,
    pub disk_bytes: f64,
    pub disk_write_mb_per_sec: f64,
    pub partitions_per_core: f64,
    pub warnings: Vec<String>,
    pub reasoning: Vec<String>,
}

/// Partitions above which one broker spends noticeable memory and recovery time on them.
pub const MAX_PARTITIONS_PER_CORE: f64 = 1000.0;
/// Index and time-index overhead on top of the data, and a free-space margin.
const INDEX_OVERHEAD: f64 = 0.02;
const DISK_MARGIN: f64 = 0.25;

pub fn plan(i: &Inputs) -> Result<Plan, String> {
    if !(i.target_mb_per_sec > 0.0 && i.per_partition_mb_per_sec > 0.0) {
        return Err("target and per-partition throughput must be positive".into());
    }
    if !(i.headroom > 0.0 && i.headroom <= 1.0) {
        return Err("headroom must be in (0, 1]".into());
    }
    let mut reasoning = Vec::new();
    let mut warnings = Vec::new();
    let growth = i.growth.max(1.0);
    let sized_for = i.target_mb_per_sec * if i.keyed { growth } else { 1.0 };
    let usable = i.per_partition_mb_per_sec * i.headroom;
    let by_throughput = (sized_for / usable).ceil() as u32;
    reasoning.push(format!(
        "throughput: {sized_for:.1} MB/s / ({:.2} MB/s per partition x {:.0}% headroom) = {by_throughput} partitions",
        i.per_partition_mb_per_sec,
        i.headroom * 100.0
    ));
    let mut partitions = by_throughput.max(1);
    if i.process_ms > 0.0 {
        if i.record_bytes.is_nan() || i.record_bytes <= 0.0 {
            return Err("record size must be positive".into());
        }
        // Little's law: records in processing at once = arrival rate x time in the system.
        let rate = sized_for * 1e6 / i.record_bytes;
        let in_flight = rate * i.process_ms / 1000.0;
        let needed = (in_flight / i.headroom).ceil() as u32;
        reasoning.push(format!(
            "consumers (Little's law): {sized_for:.1} MB/s / {:.0} B = {rate:.0} records/s x {:.3} ms each = {in_flight:.1} records being processed at once; one consumer works on one partition at a time, so / {:.0}% headroom = {needed} partitions (and as many consumers)",
            i.record_bytes,
            i.process_ms,
            i.headroom * 100.0
        ));
        if needed > partitions {
            partitions = needed;
        }
    }
    if i.consumers > partitions {
        reasoning.push(format!(
            "consumers: {} in the largest group need as many partitions",
            i.consumers
        ));
        partitions = i.consumers;
    }
    // Cores: ingest times replication over the measured per-core rate.
    let write = i.target_mb_per_sec * f64::from(i.replication.max(1));
    let cores = if i.measured_cores > 0 && i.measured_mb_per_sec > 0.0 {
        let per_core = i.measured_mb_per_sec / i.measured_cores as f64;
        let cores = ((write / (per_core * i.headroom)).ceil() as u32).max(1);
        reasoning.push(format!(
            "cores: {write:.1} MB/s written (x{} replication) / ({per_core:.1} MB/s per core x {:.0}%) = {cores}",
            i.replication.max(1),
            i.headroom * 100.0
        ));
        // Even spread: a multiple of the core count, so every shard owns as many partitions.
        if partitions % cores != 0 {
            let even = partitions.div_ceil(cores) * cores;
            reasoning.push(format!(
                "spread: rounded {partitions} up to {even} so each of {cores} cores owns the same number"
            ));
            partitions = even;
        }
        Some(cores)
    } else {
        reasoning
            .push("cores: no whole-broker measurement given (--limit or --measured-mbps)".into());
        None
    };
    let disk_write = write;
    let disk_bytes = i.target_mb_per_sec
        * 1e6
        * i.retention_hours
        * 3600.0
        * f64::from(i.replication.max(1))
        * (1.0 + INDEX_OVERHEAD)
        * (1.0 + DISK_MARGIN);
    reasoning.push(format!(
        "disk: {:.1} MB/s x {:.0} h x{} replication, +{:.0}% indexes, +{:.0}% free = {}",
        i.target_mb_per_sec,
        i.retention_hours,
        i.replication.max(1),
        INDEX_OVERHEAD * 100.0,
        DISK_MARGIN * 100.0,
        human_bytes(disk_bytes)
    ));
    let per_core_partitions = f64::from(partitions) / f64::from(cores.unwrap_or(1));
    if per_core_partitions > MAX_PARTITIONS_PER_CORE {
        warnings.push(format!(
            "{per_core_partitions:.0} partitions per core: beyond ~{MAX_PARTITIONS_PER_CORE:.0} each partition's open files, indexes and batches cost memory and slow recovery; use fewer, busier partitions or more cores"
        ));
    }
    let brokers = i.brokers.max(1);
    let guideline = 100 * brokers * i.replication.max(1);
    reasoning.push(format!(
        "cluster guideline: partitions < 100 x {brokers} broker(s) x {} replication = {guideline}",
        i.replication.max(1)
    ));
    if partitions >= guideline {
        warnings.push(format!(
            "{partitions} partitions is at or past the cluster-wide guideline of 100 x brokers x replication = {guideline}: leader elections and recovery slow down with the partition count; add brokers or use fewer partitions"
        ));
    }
    if i.keyed {
        warnings.push(format!(
            "keyed topic: adding partitions later moves keys to other partitions (ordering per key breaks across the change); sized for {growth:.1}x growth now"
        ));
    } else if growth > 1.0 {
        reasoning
            .push("unkeyed topic: partitions can be added later without breaking ordering".into());
    }
    if i.headroom > 0.9 {
        warnings
            .push("headroom above 90%: a burst or a slow disk puts the p99 over the SLO".into());
    }
    if i.replication > 1 {
        warnings.push(format!(
            "replication {}: shardlog is a single broker today; the figures assume a Kafka-style cluster where every replica writes the data",
            i.replication
        ));
    }
    Ok(Plan {
        partitions,
        cores,
        disk_bytes,
        disk_write_mb_per_sec: disk_write,
        partitions_per_core: per_core_partitions,
        warnings,
        reasoning,
    })
}

pub fn human_bytes(b: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            target_mb_per_sec: 100.0,
            per_partition_mb_per_sec: 10.0,
            measured_mb_per_sec: 200.0,
            measured_cores: 2,
            headroom: 0.5,
            retention_hours: 24.0,
            replication: 1,
            consumers: 4,
            growth: 1.0,
            keyed: false,
            process_ms: 0.0,
            record_bytes: 1000.0,
            brokers: 1,
        }
    }

    #[test]
    fn known_inputs_give_known_figures() {
        let p = plan(&inputs()).expect("plan");
        // 100 / (10 x 0.5) = 20 partitions; 100 / (100 per core x 0.5) = 2 cores.
        assert_eq!((p.partitions, p.cores), (20, Some(2)));
        // 100 MB/s x 86400 s x 1.02 x 1.25 = 11.016 TB.
        assert!((p.disk_bytes - 11.016e12).abs() < 1e9, "{}", p.disk_bytes);
        assert_eq!(p.partitions_per_core, 10.0);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn consumers_growth_replication_and_spread() {
        let mut i = inputs();
        i.consumers = 30;
        assert_eq!(plan(&i).expect("plan").partitions, 30);
        let mut i = inputs();
        i.keyed = true;
        i.growth = 3.0;
        i.replication = 3;
        let p = plan(&i).expect("plan");
        // 300 / 5 = 60 partitions; 300 MB/s written / 50 per core = 6 cores; 60 % 6 == 0.
        assert_eq!((p.partitions, p.cores), (60, Some(6)));
        assert_eq!(p.disk_write_mb_per_sec, 300.0);
        assert!(p.warnings.iter().any(|w| w.contains("keyed topic")));
        let mut i = inputs();
        i.per_partition_mb_per_sec = 7.0;
        // 100 / 3.5 = 28.6 -> 29, rounded up to a multiple of 2 cores.
        assert_eq!(plan(&i).expect("plan").partitions, 30);
        let mut i = inputs();
        i.per_partition_mb_per_sec = 0.01;
        assert!(plan(&i).expect("plan").warnings[0].contains("partitions per core"));
        i.measured_mb_per_sec = 0.0;
        assert_eq!(plan(&i).expect("plan").cores, None);
        i.headroom = 0.0;
        assert!(plan(&i).is_err());
    }

    #[test]
    fn littles_law_and_the_cluster_guideline() {
        let mut i = inputs();
        // 100 MB/s of 1,000-byte records = 100,000 records/s; 2 ms each = 200 in processing
        // at once; at 50% headroom, 400 partitions.
        i.process_ms = 2.0;
        let p = plan(&i).expect("plan");
        assert_eq!(p.partitions, 400);
        assert!(p
            .reasoning
            .iter()
            .any(|r| r.contains("Little's law") && r.contains("= 200.0 records")));
        // 400 >= 100 x 1 broker x 1: warned; with 3 brokers x 3 replicas (900) not.
        assert!(
            p.warnings.iter().any(|w| w.contains("guideline")),
            "{:?}",
            p.warnings
        );
        i.brokers = 3;
        i.replication = 3;
        let p = plan(&i).expect("plan");
        assert!(
            !p.warnings.iter().any(|w| w.contains("guideline")),
            "{:?}",
            p.warnings
        );
        // Fast consumers: throughput decides.
        i.process_ms = 0.001;
        i.replication = 1;
        assert_eq!(plan(&i).expect("plan").partitions, 20);
    }
}
