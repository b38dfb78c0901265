//! Metrics: each shard counts in its own cells (no locks, no atomics on the data path); a
//! scrape collects a plain-data [`Snapshot`] from every shard and renders the merged
//! Prometheus text exposition.
//!
//! Invariant: recording is O(1) and allocation-free after a key's first use; merging and
//! formatting happen only on scrape.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Request latency range tracked: 1 µs to 60 s, 3 significant figures.
const HIST_MAX_US: u64 = 60_000_000;

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant histogram bounds are valid")
}

#[derive(Clone)]
pub struct ApiStats {
    pub requests: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct TopicStats {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
    /// Schema validation: records checked, refused (reject), sent to the dead-letter topic.
    pub schema_validated: u64,
    pub schema_refused: u64,
    pub schema_dead_lettered: u64,
}

/// One shard's counters.
#[derive(Default)]
pub struct ShardMetrics {
    apis: RefCell<HashMap<i16, ApiStats>>,
    topics: RefCell<HashMap<String, TopicStats>>,
    pub router_calls: Cell<u64>,
    /// Request frames that waited for the shard's request budget.
    pub request_budget_waits: Cell<u64>,
    /// Connections closed after `connections.max.idle.ms` without a byte.
    pub idle_closed: Cell<u64>,
    /// SASL authentications refused (wrong password, unknown user, rate limit).
    pub auth_failures: Cell<u64>,
    /// TLS handshakes that failed (not TLS, bad certificate, timeout).
    pub tls_failures: Cell<u64>,
    io_reads: Cell<(u64, u64)>,
    io_writes: Cell<(u64, u64)>,
    /// Partitions of Produce responses answered with an error, by error code (a few dozen
    /// codes at most).
    produce_errors: RefCell<BTreeMap<i16, u64>>,
}

impl ShardMetrics {
    pub fn record_request(&self, api: i16, took: Duration, failed: bool) {
        let mut apis = self.apis.borrow_mut();
        let s = apis.entry(api).or_insert_with(|| ApiStats {
            requests: 0,
            errors: 0,
            latency_us: new_hist(),
        });
        s.requests += 1;
        if failed {
            s.errors += 1;
        }
        let us = (took.as_micros() as u64).clamp(1, HIST_MAX_US);
        let _ = s.latency_us.record(us);
    }

    fn topic(&self, topic: &str, f: impl FnOnce(&mut TopicStats)) {
        let mut topics = self.topics.borrow_mut();
        if let Some(t) = topics.get_mut(topic) {
            f(t);
        } else {
            let mut t = TopicStats::default();
            f(&mut t);
            topics.insert(topic.to_string(), t);
        }
    }

    pub fn record_in(&self, topic: &str, bytes: u64, records: u64) {
        self.topic(topic, |t| {
            t.bytes_in += bytes;
            t.records_in += records;
        });
    }

    /// Counts records schema validation checked, refused, and dead-lettered.
    pub fn record_schema(&self, topic: &str, validated: u64, refused: u64, dead_lettered: u64) {
        self.topic(topic, |t| {
            t.schema_validated += validated;
            t.schema_refused += refused;
            t.schema_dead_lettered += dead_lettered;
        });
    }

    pub fn record_out(&self, topic: &str, bytes: u64, records: u64) {
        self.topic(topic, |t| {
            t.bytes_out += bytes;
            t.records_out += records;
        });
    }

    /// Counts a partition of a Produce response answered with `code` (not NONE).
    pub fn record_produce_error(&self, code: i16) {
        *self.produce_errors.borrow_mut().entry(code).or_default() += 1;
    }

    /// Adds the I/O counts the runtime reports since the last call (ops, bytes).
    pub fn add_io(&self, reads: (u64, u64), writes: (u64, u64)) {
        let (r, w) = (self.io_reads.get(), self.io_writes.get());
        self.io_reads.set((r.0 + reads.0, r.1 + reads.1));
        self.io_writes.set((w.0 + writes.0, w.1 + writes.1));
    }

    pub fn snapshot(&self, shard: usize) -> Snapshot {
        Snapshot {
            shard,
            apis: self
                .apis
                .borrow()
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            topics: self
                .topics
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            router_calls: self.router_calls.get(),
            request_budget_waits: self.request_budget_waits.get(),
            idle_closed: self.idle_closed.get(),
            auth_failures: self.auth_failures.get(),
            tls_failures: self.tls_failures.get(),
            io_reads: self.io_reads.get(),
            io_writes: self.io_writes.get(),
            produce_errors: self
                .produce_errors
                .borrow()
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            ..Snapshot::default()
        }
    }
}

/// What one shard reports on a scrape (plain data, sent across shards).
#[derive(Default, Clone)]
pub struct Snapshot {
    pub shard: usize,
    pub apis: Vec<(i16, ApiStats)>,
    pub topics: Vec<(String, TopicStats)>,
    /// (topic, partition, log start, log end, size bytes) of partitions the shard owns.
    pub partitions: Vec<(String, i32, i64, i64, u64)>,
    /// (group, topic, partition, committed offset) of groups the shard coordinates.
    pub committed: Vec<(String, String, i32, i64)>,
    /// (group, state, members)
    pub groups: Vec<(String, &'static str, usize)>,
    pub connections: usize,
    pub router_calls: u64,
    pub request_budget_waits: u64,
    pub idle_closed: u64,
    pub auth_failures: u64,
    pub tls_failures: u64,
    /// Bytes of the request budget reserved at the scrape.
    pub request_bytes_reserved: u64,
    /// Connections refused by `max.connections`/`max.connections.per.ip`, by port kind
    /// (broker-wide counts: the first snapshot's are rendered).
    pub connections_refused: Vec<(&'static str, u64)>,
    /// (log-file descriptors open now, opens so far) of the shard's descriptor cache.
    pub open_files: (usize, u64),
    /// (corrupt batches found by reads, offset indexes rebuilt after a wrong entry).
    pub damage: (u64, u64),
    /// (free bytes at the last measurement, produce refused for low space).
    pub storage: (u64, bool),
    pub io_reads: (u64, u64),
    pub io_writes: (u64, u64),
    /// (error code, partitions answered with it) of Produce responses.
    pub produce_errors: Vec<(i16, u64)>,
    pub producers_tracked: usize,
    /// (fsyncs, total microseconds)
    pub fsyncs: (u64, u64),
    /// Bytes held in append queues and connection read buffers.
    pub buffer_bytes: u64,
    /// Inline log writes that were slow and turned inline writes off for a while.
    pub slow_inline_writes: u64,
    /// (fetch bytes spliced from files to sockets, bytes of file ranges copied instead).
    pub fetch_sent: (u64, u64),
    /// Replication: ISR shrinks and expands this shard's leaders committed, the largest lag
    /// (messages) of a follower of its partitions, bytes its followers appended.
    pub replication: crate::replication::Stats,
}

fn api_name(key: i16) -> String {
    kafka_protocol::messages::ApiKey::try_from(key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| key.to_string())
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Renders the Prometheus text exposition (format 0.0.4) of all shards' snapshots.
pub fn render(shards: &[Snapshot]) -> String {
    let mut o = String::new();
    let mut w = |line: String| {
        o.push_str(&line);
        o.push('\n');
    };
    // Requests, merged across shards.
    let mut apis: BTreeMap<String, ApiStats> = BTreeMap::new();
    for s in shards {
        for (k, a) in &s.apis {
            match apis.get_mut(&api_name(*k)) {
                Some(m) => {
                    m.requests += a.requests;
                    m.errors += a.errors;
                    let _ = m.latency_us.add(&a.latency_us);
                }
                None => {
                    apis.insert(api_name(*k), a.clone());
                }
            }
        }
    }
    w("# HELP shardlog_requests_total Requests handled, by API.".into());
    w("# TYPE shardlog_requests_total counter".into());
    for (n, a) in &apis {
        w(format!(
            "shardlog_requests_total{{api=\"{n}\"}} {}",
            a.requests
        ));
    }
    w("# HELP shardlog_request_errors_total Requests that closed their connection (malformed, unsupported, unencodable), by API.".into());
    w("# TYPE shardlog_request_errors_total counter".into());
    for (n, a) in &apis {
        w(format!(
            "shardlog_request_errors_total{{api=\"{n}\"}} {}",
            a.errors
        ));
    }
    let mut produce_errors: BTreeMap<i16, u64> = BTreeMap::new();
    for s in shards {
        for (code, n) in &s.produce_errors {
            *produce_errors.entry(*code).or_default() += n;
        }
    }
    w("# HELP shardlog_produce_partition_errors_total Partitions of Produce responses answered with an error, by Kafka error code.".into());
    w("# TYPE shardlog_produce_partition_errors_total counter".into());
    for (code, n) in &produce_errors {
        w(format!(
            "shardlog_produce_partition_errors_total{{error=\"{code}\"}} {n}"
        ));
    }
    w("# HELP shardlog_request_duration_seconds Time from a request's decode to its response, by API (hdrhistogram per shard, merged).".into());
    w("# TYPE shardlog_request_duration_seconds summary".into());
    for (n, a) in &apis {
        for q in [0.5, 0.9, 0.99, 0.999] {
            let v = a.latency_us.value_at_quantile(q) as f64 / 1e6;
            w(format!(
                "shardlog_request_duration_seconds{{api=\"{n}\",quantile=\"{q}\"}} {v}"
            ));
        }
        let sum = a.latency_us.mean() * a.latency_us.len() as f64 / 1e6;
        w(format!(
            "shardlog_request_duration_seconds_sum{{api=\"{n}\"}} {sum}"
        ));
        w(format!(
            "shardlog_request_duration_seconds_count{{api=\"{n}\"}} {}",
            a.latency_us.len()
        ));
    }
    let mut topics: BTreeMap<&str, TopicStats> = BTreeMap::new();
    for s in shards {
        for (t, v) in &s.topics {
            let e = topics.entry(t.as_str()).or_default();
            e.bytes_in += v.bytes_in;
            e.records_in += v.records_in;
            e.bytes_out += v.bytes_out;
            e.records_out += v.records_out;
            e.schema_validated += v.schema_validated;
            e.schema_refused += v.schema_refused;
            e.schema_dead_lettered += v.schema_dead_lettered;
        }
    }
    for (name, help, get) in [
        (
            "shardlog_topic_bytes_in_total",
            "Record-batch bytes appended, by topic.",
            (|t: &TopicStats| t.bytes_in) as fn(&TopicStats) -> u64,
        ),
        (
            "shardlog_topic_records_in_total",
            "Records appended, by topic.",
            |t| t.records_in,
        ),
        (
            "shardlog_topic_bytes_out_total",
            "Record-batch bytes served to fetches, by topic.",
            |t| t.bytes_out,
        ),
        (
            "shardlog_topic_records_out_total",
            "Records served to fetches (whole batches), by topic.",
            |t| t.records_out,
        ),
        (
            "shardlog_topic_schema_validated_total",
            "Records checked by schema validation, by topic.",
            |t| t.schema_validated,
        ),
        (
            "shardlog_topic_schema_refused_total",
            "Records schema validation refused (schema.validation.failure=reject), by topic.",
            |t| t.schema_refused,
        ),
        (
            "shardlog_topic_schema_dead_lettered_total",
            "Records schema validation sent to the dead-letter topic, by topic.",
            |t| t.schema_dead_lettered,
        ),
    ] {
        let validation = name.contains("_schema_");
        w(format!("# HELP {name} {help}"));
        w(format!("# TYPE {name} counter"));
        for (t, v) in topics
            .iter()
            .filter(|(_, v)| !validation || v.schema_validated > 0)
        {
            w(format!("{name}{{topic=\"{}\"}} {}", esc(t), get(v)));
        }
    }
    let mut parts: Vec<&(String, i32, i64, i64, u64)> =
        shards.iter().flat_map(|s| &s.partitions).collect();
    parts.sort();
    for (name, help, idx) in [
        (
            "shardlog_partition_log_start_offset",
            "First offset still in the log.",
            0,
        ),
        (
            "shardlog_partition_log_end_offset",
            "Offset the next record will get (high watermark).",
            1,
        ),
        (
            "shardlog_partition_size_bytes",
            "Bytes of record batches on disk.",
            2,
        ),
    ] {
        w(format!("# HELP {name} {help}"));
        w(format!("# TYPE {name} gauge"));
        for (t, p, start, end, size) in &parts {
            let v = match idx {
                0 => *start,
                1 => *end,
                _ => *size as i64,
            };
            w(format!(
                "{name}{{topic=\"{}\",partition=\"{p}\"}} {v}",
                esc(t)
            ));
        }
    }
    let ends: HashMap<(&str, i32), i64> = parts
        .iter()
        .map(|(t, p, _, e, _)| ((t.as_str(), *p), *e))
        .collect();
    w("# HELP shardlog_group_committed_offset Committed offset, by group and partition.".into());
    w("# TYPE shardlog_group_committed_offset gauge".into());
    let mut committed: Vec<&(String, String, i32, i64)> =
        shards.iter().flat_map(|s| &s.committed).collect();
    committed.sort();
    for (g, t, p, c) in &committed {
        w(format!(
            "shardlog_group_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {c}",
            esc(g),
            esc(t)
        ));
    }
    w(
        "# HELP shardlog_group_lag Log end offset minus committed offset, by group and partition."
            .into(),
    );
    w("# TYPE shardlog_group_lag gauge".into());
    for (g, t, p, c) in &committed {
        if let Some(end) = ends.get(&(t.as_str(), *p)) {
            w(format!(
                "shardlog_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {}",
                esc(g),
                esc(t),
                (end - c).max(0)
            ));
        }
    }
    w("# HELP shardlog_group_members Members of a consumer group, with its state.".into());
    w("# TYPE shardlog_group_members gauge".into());
    let mut groups: Vec<&(String, &'static str, usize)> =
        shards.iter().flat_map(|s| &s.groups).collect();
    groups.sort();
    for (g, st, n) in groups {
        w(format!(
            "shardlog_group_members{{group=\"{}\",state=\"{st}\"}} {n}",
            esc(g)
        ));
    }
    w("# HELP shardlog_shard_fsync_seconds_total Time spent in fdatasync.".into());
    w("# TYPE shardlog_shard_fsync_seconds_total counter".into());
    for s in shards {
        w(format!(
            "shardlog_shard_fsync_seconds_total{{shard=\"{}\"}} {}",
            s.shard,
            s.fsyncs.1 as f64 / 1e6
        ));
    }
    if let Some(s) = shards.first() {
        w("# HELP shardlog_storage_free_bytes Free bytes on the data directory's file system at the last measurement (each second).".into());
        w("# TYPE shardlog_storage_free_bytes gauge".into());
        if s.storage.0 != u64::MAX {
            w(format!("shardlog_storage_free_bytes {}", s.storage.0));
        }
        w("# HELP shardlog_storage_low_space 1 while free space is below storage.min.free.bytes and produce is refused.".into());
        w("# TYPE shardlog_storage_low_space gauge".into());
        w(format!(
            "shardlog_storage_low_space {}",
            u8::from(s.storage.1)
        ));
    }
    w("# HELP shardlog_connections_refused_total Connections refused by max.connections or max.connections.per.ip, by listener.".into());
    w("# TYPE shardlog_connections_refused_total counter".into());
    for (kind, n) in shards
        .first()
        .map(|s| &s.connections_refused[..])
        .unwrap_or(&[])
    {
        w(format!(
            "shardlog_connections_refused_total{{listener=\"{kind}\"}} {n}"
        ));
    }
    for (name, help, kind, get) in [
        (
            "shardlog_shard_connections",
            "Open client connections.",
            "gauge",
            (|s: &Snapshot| s.connections as u64) as fn(&Snapshot) -> u64,
        ),
        (
            "shardlog_shard_fsyncs_total",
            "fdatasync calls.",
            "counter",
            |s| s.fsyncs.0,
        ),
        (
            "shardlog_shard_slow_inline_writes_total",
            "Inline (pwrite) log writes slower than 2 ms; each sends the shard's writes through io_uring workers for 5 s.",
            "counter",
            |s| s.slow_inline_writes,
        ),
        (
            "shardlog_shard_fetch_spliced_bytes_total",
            "Fetch record bytes spliced from segment files to sockets without a copy (fetch.zero.copy).",
            "counter",
            |s| s.fetch_sent.0,
        ),
        (
            "shardlog_shard_fetch_splice_copied_bytes_total",
            "Bytes of spliceable fetch ranges copied instead (socket full, or no pipe free).",
            "counter",
            |s| s.fetch_sent.1,
        ),
        (
            "shardlog_shard_buffer_bytes",
            "Bytes held in append queues and connection read buffers.",
            "gauge",
            |s| s.buffer_bytes,
        ),
        (
            "shardlog_shard_request_bytes_reserved",
            "Bytes of queued.max.request.bytes reserved by requests being read or handled.",
            "gauge",
            |s| s.request_bytes_reserved,
        ),
        (
            "shardlog_shard_request_budget_waits_total",
            "Request frames that waited for queued.max.request.bytes (back-pressure).",
            "counter",
            |s| s.request_budget_waits,
        ),
        (
            "shardlog_shard_idle_connections_closed_total",
            "Connections closed after connections.max.idle.ms without a byte.",
            "counter",
            |s| s.idle_closed,
        ),
        (
            "shardlog_shard_authentication_failures_total",
            "SASL authentications refused (bad credentials, unknown user, too many failures from the address).",
            "counter",
            |s| s.auth_failures,
        ),
        (
            "shardlog_shard_tls_handshake_failures_total",
            "TLS handshakes that failed (not TLS, certificate refused, timeout).",
            "counter",
            |s| s.tls_failures,
        ),
        (
            "shardlog_shard_open_log_files",
            "Log and index file descriptors the shard holds open (bounded by its share of ulimit -n).",
            "gauge",
            |s| s.open_files.0 as u64,
        ),
        (
            "shardlog_shard_log_file_opens_total",
            "Log and index files opened, reopens after the descriptor cache closed them included.",
            "counter",
            |s| s.open_files.1,
        ),
        (
            "shardlog_shard_corrupt_batches_total",
            "Distinct corrupt batches found on disk by reads (each also logged once).",
            "counter",
            |s| s.damage.0,
        ),
        (
            "shardlog_shard_index_repairs_total",
            "Segment offset indexes rebuilt because an entry did not point at the batch it names.",
            "counter",
            |s| s.damage.1,
        ),
        (
            "shardlog_shard_isr_shrinks_total",
            "ISR shrinks committed for partitions this shard leads (a follower fell behind).",
            "counter",
            |s| s.replication.isr_shrinks,
        ),
        (
            "shardlog_shard_isr_expands_total",
            "ISR expansions committed for partitions this shard leads (a follower caught up).",
            "counter",
            |s| s.replication.isr_expands,
        ),
        (
            "shardlog_shard_replica_max_lag",
            "Largest lag, in offsets, of a follower of a partition this shard leads.",
            "gauge",
            |s| s.replication.max_lag,
        ),
        (
            "shardlog_shard_replica_max_lag_bytes",
            "Largest lag, in log bytes, of a follower of a partition this shard leads.",
            "gauge",
            |s| s.replication.max_lag_bytes,
        ),
        (
            "shardlog_shard_replica_max_lag_ms",
            "Longest time since a lagging follower of a partition this shard leads last had everything the leader had (ms).",
            "gauge",
            |s| s.replication.max_lag_ms,
        ),
        (
            "shardlog_shard_replica_fetched_bytes_total",
            "Bytes this shard's follower replicas fetched from their leaders and appended.",
            "counter",
            |s| s.replication.fetched_bytes,
        ),
        (
            "shardlog_shard_router_calls_total",
            "Calls this shard sent to other shards (strays, admin).",
            "counter",
            |s| s.router_calls,
        ),
        (
            "shardlog_shard_io_reads_total",
            "File reads issued through io_uring.",
            "counter",
            |s| s.io_reads.0,
        ),
        (
            "shardlog_shard_io_read_bytes_total",
            "Bytes read from files through io_uring.",
            "counter",
            |s| s.io_reads.1,
        ),
        (
            "shardlog_shard_io_writes_total",
            "File writes issued through io_uring.",
            "counter",
            |s| s.io_writes.0,
        ),
        (
            "shardlog_shard_io_write_bytes_total",
            "Bytes written to files through io_uring.",
            "counter",
            |s| s.io_writes.1,
        ),
    ] {
        w(format!("# HELP {name} {help}"));
        w(format!("# TYPE {name} {kind}"));
        for s in shards {
            w(format!("{name}{{shard=\"{}\"}} {}", s.shard, get(s)));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_merged_counters_and_lag() {
        let a = ShardMetrics::default();
        a.record_request(0, Duration::from_micros(150), false);
        a.record_in("t", 100, 3);
        let mut sa = a.snapshot(0);
        sa.partitions.push(("t".into(), 0, 0, 10, 300));
        let b = ShardMetrics::default();
        b.record_request(0, Duration::from_micros(250), true);
        b.record_in("t", 50, 2);
        let mut sb = b.snapshot(1);
        sb.committed.push(("g".into(), "t".into(), 0, 4));
        let text = render(&[sa, sb]);
        assert!(
            text.contains("shardlog_requests_total{api=\"Produce\"} 2"),
            "{text}"
        );
        assert!(text.contains("shardlog_request_errors_total{api=\"Produce\"} 1"));
        assert!(text.contains("shardlog_topic_records_in_total{topic=\"t\"} 5"));
        assert!(text.contains("shardlog_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 6"));
    }
}
