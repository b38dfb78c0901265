//! `shardlog-loadgen`: a Kafka-protocol load generator for any Kafka-API broker. It speaks the
//! protocol itself (no librdkafka), runs thread-per-core (one io_uring executor per worker),
//! measures produce-ack and end-to-end latency in hdrhistograms, and with `--find-limit`
//! finds the highest rate a number of partitions sustains within a p99 SLO.
//!
//! Invariants: workers share nothing but a bounded channel of interval statistics to the main
//! thread, a stop flag and the end offsets published when producing ends; every run is
//! bounded in time (`--duration`, plus at most 30 s of draining).

mod conn;
mod consumer;
mod gen;
mod limit;
mod plot;
mod producer;
mod report;
mod schedule;
mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use shardlog::admin::client::Client;
use shardlog::admin::topic;
use shardlog::log::codec::Codec;

use gen::{Keys, Sizes};
use stats::{Latency, Stats};

#[derive(Parser, Debug, Clone, Serialize)]
#[command(
    name = "shardlog-loadgen",
    version,
    about = "Load generator for Kafka-API brokers: throughput, latency tails, per-partition limits"
)]
struct Args {
    /// Broker to bootstrap from (any Kafka-API broker).
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Kafka client properties (security.protocol, sasl.mechanism, sasl.jaas.config or
    /// sasl.username/sasl.password, ssl.truststore.location as PEM, ...), as Kafka's tools
    /// take them: every connection (metadata and load) uses them.
    #[arg(long)]
    command_config: Option<std::path::PathBuf>,
    /// Topic to write and read; created with --partitions if missing.
    #[arg(long, default_value = "loadgen")]
    topic: String,
    /// Partitions of the topic when it is created (an existing topic keeps its own).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Message value size in bytes: N, or MIN-MAX for a uniform spread (at least 16).
    #[arg(long, default_value = "1024")]
    #[serde(skip)]
    size: Sizes,
    /// Keys: none (sticky partitioner), uniform:N, zipf:N[:S].
    #[arg(long, default_value = "none")]
    #[serde(skip)]
    keys: Keys,
    /// Acknowledgements: 0, 1, or all (-1).
    #[arg(long, default_value = "1", value_parser = parse_acks)]
    acks: i16,
    /// Bytes of records per batch before it is sent.
    #[arg(long, default_value_t = 65536)]
    batch_bytes: usize,
    /// Longest a batch waits to fill, in ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Batch compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none", value_parser = parse_codec)]
    #[serde(skip)]
    compression: Codec,
    /// Connections per producer worker to each partition leader.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Produce requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    max_in_flight: usize,
    /// Producer workers (threads, each its own client).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer workers (0: no end-to-end latency).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Open loop at this many messages/s in total; omitted: closed loop (as fast as acks
    /// allow).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of producing per run (per step with --find-limit).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Find the highest rate the partitions sustain within --slo.
    #[arg(long)]
    find_limit: bool,
    /// p99 latency objective for --find-limit, in ms.
    #[arg(long, default_value_t = 10.0)]
    slo: f64,
    /// Which latency the SLO applies to: ack or e2e.
    #[arg(long, default_value = "ack")]
    slo_on: String,
    /// Most open-loop steps of --find-limit (10% of the probed maximum each).
    #[arg(long, default_value_t = 12)]
    max_steps: usize,
    /// Most bisections of --find-limit between the last step that held and the first that
    /// did not (each halves the bracket; stops at 5%).
    #[arg(long, default_value_t = 4)]
    refine: usize,
    /// Runs at the limit found (the confirmation and repeats) whose spread is reported.
    #[arg(long, default_value_t = 1)]
    trials: usize,
    /// SVG: with --find-limit the latency/throughput curve (default loadgen-curve.svg);
    /// otherwise latency over time.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write the results as JSON to this file (`-`: standard output).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Pin worker i to core i mod cores.
    #[arg(long)]
    pin: bool,
    /// Seed of the payload, key and size generators.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

/// A chart's title: the broker and the workload.
fn title(args: &Args, partitions: i32, acks: &str) -> String {
    format!(
        "{} — {} partitions, {} B messages, acks={acks}, compression {}",
        args.bootstrap,
        partitions,
        args.size,
        args.compression.name()
    )
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("expected 0, 1 or all, got {s:?}")),
    }
}

fn parse_codec(s: &str) -> Result<Codec, String> {
    Codec::from_name(s)
        .ok_or_else(|| format!("expected none, gzip, snappy, lz4 or zstd, got {s:?}"))
}

/// A monotonic microsecond clock anchored to the Unix epoch once, shared by all workers so
/// that send stamps and receive times compare.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    epoch_us: u64,
}

impl Clock {
    fn new() -> Clock {
        let epoch_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Clock {
            start: Instant::now(),
            epoch_us,
        }
    }
    pub fn now_us(&self) -> u64 {
        self.epoch_us + self.start.elapsed().as_micros() as u64
    }
}

/// The topic and its partition leaders (`host:port` per partition).
#[derive(Debug, Clone)]
pub struct Target {
    pub topic: String,
    pub leaders: Vec<String>,
}

/// What every worker of a run is told.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub target: Target,
    pub acks: i16,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub codec: Codec,
    pub sizes: Sizes,
    pub keys: Keys,
    pub connections: usize,
    pub max_in_flight: usize,
    pub duration: Duration,
    pub seed: u64,
}

/// One worker's handles: identity, clock, stop flag, statistics channel, end offsets.
pub struct Worker {
    pub id: usize,
    pub clock: Clock,
    stop: Arc<AtomicBool>,
    tx: SyncSender<Stats>,
    ends: Arc<OnceLock<Vec<i64>>>,
}

impl Worker {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    /// Sends an interval snapshot to the main thread (blocks only if it is 1024 behind).
    pub fn report(&self, s: Stats) {
        let _ = self.tx.send(s);
    }
    /// End offsets per partition, once producing has finished.
    pub fn end_offsets(&self) -> Option<&Vec<i64>> {
        self.ends.get()
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunResult {
    /// `None`: closed loop.
    pub offered_msgs_per_sec: Option<f64>,
    pub seconds: f64,
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub consumed: u64,
    pub acked_msgs_per_sec: f64,
    pub acked_mb_per_sec: f64,
    pub consumed_mb_per_sec: f64,
    pub ack_latency_ms: Latency,
    pub e2e_latency_ms: Latency,
    /// Each second of the run, from the first message sent.
    pub timeline: Vec<Second>,
}

/// One second of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    pub t: f64,
    pub sent_msgs_per_sec: f64,
    pub acked_msgs_per_sec: f64,
    pub ack_latency_ms: Latency,
    pub e2e_latency_ms: Latency,
}

impl RunResult {
    /// The latency an SLO applies to: produce-ack, or end-to-end.
    pub fn slo_latency(&self, ack: bool) -> Latency {
        if ack {
            self.ack_latency_ms
        } else {
            self.e2e_latency_ms
        }
    }
}

fn metadata_target(bootstrap: &str, topic_name: &str, partitions: i32) -> Result<Target> {
    let mut c = Client::connect(bootstrap)?;
    for attempt in 0..50 {
        let md = topic::metadata(&mut c, Some(vec![topic_name.to_string()]))?;
        let t = md.topics.first().context("no topic in metadata response")?;
        match t.error_code {
            0 if !t.partitions.is_empty() => {
                let mut leaders = vec![String::new(); t.partitions.len()];
                for p in &t.partitions {
                    let b = md
                        .brokers
                        .iter()
                        .find(|b| b.node_id == p.leader_id)
                        .with_context(|| {
                            format!("partition {} has no known leader", p.partition_index)
                        })?;
                    let slot = leaders
                        .get_mut(p.partition_index as usize)
                        .context("partition index out of range")?;
                    *slot = format!("{}:{}", b.host, b.port);
                }
                if leaders.iter().any(String::is_empty) {
                    bail!("metadata is missing partitions of {topic_name}");
                }
                return Ok(Target {
                    topic: topic_name.to_string(),
                    leaders,
                });
            }
            3 if attempt == 0 => {
                topic::create(bootstrap, topic_name, partitions, 1, &[])?;
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    bail!("topic {topic_name} did not become available")
}

fn latest_offsets(bootstrap: &str, t: &Target) -> Result<Vec<i64>> {
    let mut c = Client::connect(bootstrap)?;
    let md = topic::metadata(&mut c, Some(vec![t.topic.clone()]))?;
    let parts: Vec<(i32, i32)> = md
        .topics
        .first()
        .map(|tm| {
            tm.partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![0i64; t.leaders.len()];
    for (p, o) in topic::offsets(&md, &t.topic, &parts, -1)? {
        if o < 0 {
            bail!("cannot read the end offset of partition {p}");
        }
        if let Some(slot) = out.get_mut(p as usize) {
            *slot = o;
        }
    }
    Ok(out)
}

/// Starts a worker thread with its own io_uring executor; `done` counts finished workers.
fn spawn_worker<F, Fut>(
    name: String,
    core: Option<usize>,
    done: Arc<AtomicUsize>,
    f: F,
) -> Result<glommio::ExecutorJoinHandle<Result<()>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + 'static,
{
    let placement = match core {
        Some(c) => glommio::Placement::Fixed(c),
        None => glommio::Placement::Unbound,
    };
    glommio::LocalExecutorBuilder::new(placement)
        .name(&name)
        .spawn(move || async move {
            let r = f().await;
            done.fetch_add(1, Ordering::Release);
            r
        })
        .map_err(|e| anyhow::anyhow!("cannot start worker {name}: {e}"))
}

/// One run: consumers from the current end, producers for the duration (open loop at `rate`
/// msgs/s in total, or closed loop), then consumers until they reach the new end.
fn run_once(args: &Args, spec: &LoadSpec, rate: Option<f64>, quiet: bool) -> Result<RunResult> {
    let clock = Clock::new();
    let stop = Arc::new(AtomicBool::new(false));
    let ends = Arc::new(OnceLock::new());
    let (tx, rx): (SyncSender<Stats>, Receiver<Stats>) = sync_channel(1024);
    let spec = Arc::new(spec.clone());
    let ncores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let worker = |id: usize| Worker {
        id,
        clock,
        stop: stop.clone(),
        tx: tx.clone(),
        ends: ends.clone(),
    };
    let core = |i: usize| args.pin.then_some(i % ncores);
    let mut consumers = Vec::new();
    let consumers_done = Arc::new(AtomicUsize::new(0));
    let producers_done = Arc::new(AtomicUsize::new(0));
    if args.consumers > 0 {
        let start = latest_offsets(&args.bootstrap, &spec.target)?;
        for c in 0..args.consumers {
            let parts: Vec<(i32, i64)> = start
                .iter()
                .enumerate()
                .filter(|(p, _)| p % args.consumers == c)
                .map(|(p, o)| (p as i32, *o))
                .collect();
            if parts.is_empty() {
                continue;
            }
            let (w, spec) = (worker(1000 + c), spec.clone());
            consumers.push(spawn_worker(
                format!("consumer-{c}"),
                core(args.producers + c),
                consumers_done.clone(),
                move || async move { consumer::run(&spec, &w, parts).await },
            )?);
        }
    }
    let started = Instant::now();
    let mut producers = Vec::new();
    for p in 0..args.producers {
        let (w, spec) = (worker(p), spec.clone());
        let r = rate.map(|r| r / args.producers as f64);
        producers.push(spawn_worker(
            format!("producer-{p}"),
            core(p),
            producers_done.clone(),
            move || async move { producer::run(&spec, &w, r).await },
        )?);
    }
    drop(tx);
    let mut total = Stats::default();
    let mut interval = Stats::default();
    let mut last = Instant::now();
    let mut produced_secs = None;
    let mut consumer_deadline = None;
    let mut timeline = Vec::new();
    // A worker that died without reporting must not hang the run.
    let hard_deadline = started + spec.duration + Duration::from_secs(90);
    // Bounded: producers stop after the duration plus draining; consumers get 30 s more.
    loop {
        while let Ok(s) = rx.try_recv() {
            interval.merge(&s);
        }
        if total.sent == 0 && interval.sent == 0 {
            // Seconds count from the first message, not from connection set-up (else the
            // first second shows nothing sent and the next twice the rate).
            last = Instant::now();
        } else if last.elapsed() >= Duration::from_secs(1) {
            let secs = last.elapsed().as_secs_f64();
            let t = started.elapsed().as_secs_f64();
            if !quiet {
                eprintln!("{}", report::progress_line(t, &interval, secs));
            }
            timeline.push(Second {
                t,
                sent_msgs_per_sec: interval.sent as f64 / secs,
                acked_msgs_per_sec: interval.acked as f64 / secs,
                ack_latency_ms: Latency::of(&interval.ack),
                e2e_latency_ms: Latency::of(&interval.e2e),
            });
            total.merge(&interval.take());
            last = Instant::now();
        }
        if produced_secs.is_none() && producers_done.load(Ordering::Acquire) == producers.len() {
            produced_secs = Some(started.elapsed().as_secs_f64());
            if !consumers.is_empty() {
                let _ = ends.set(latest_offsets(&args.bootstrap, &spec.target)?);
                consumer_deadline = Some(Instant::now() + Duration::from_secs(30));
            }
        }
        if produced_secs.is_some() && consumers_done.load(Ordering::Acquire) == consumers.len() {
            break;
        }
        if consumer_deadline.is_some_and(|d| Instant::now() > d) {
            stop.store(true, Ordering::Relaxed);
        }
        if Instant::now() > hard_deadline {
            stop.store(true, Ordering::Relaxed);
            bail!("workers did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for h in producers.into_iter().chain(consumers) {
        h.join()
            .map_err(|e| anyhow::anyhow!("worker failed: {e}"))??;
    }
    while let Ok(s) = rx.try_recv() {
        interval.merge(&s);
    }
    total.merge(&interval);
    // Rates over the producers' active time (first message to last ack), not counting
    // connection set-up.
    let secs = match total.active_us {
        0 => produced_secs.unwrap_or(1.0),
        us => us as f64 / 1e6,
    }
    .max(1e-3);
    Ok(RunResult {
        offered_msgs_per_sec: rate,
        seconds: secs,
        sent: total.sent,
        acked: total.acked,
        failed: total.failed,
        consumed: total.consumed,
        acked_msgs_per_sec: total.acked as f64 / secs,
        acked_mb_per_sec: total.acked_bytes as f64 / secs / 1e6,
        consumed_mb_per_sec: total.consumed_bytes as f64 / secs / 1e6,
        ack_latency_ms: Latency::of(&total.ack),
        e2e_latency_ms: Latency::of(&total.e2e),
        timeline,
    })
}

#[derive(Serialize)]
struct Report<'a> {
    tool: &'static str,
    version: &'static str,
    args: &'a Args,
    message_size: String,
    keys: String,
    compression: String,
    partitions: i32,
    run: Option<RunResult>,
    probe: Option<RunResult>,
    steps: Vec<limit::Step>,
    limit: Option<limit::Limit>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(path) = &args.command_config {
        shardlog::admin::client::configure(path)?;
    }
    if args.batch_bytes == 0
        || args.connections == 0
        || args.max_in_flight == 0
        || args.producers == 0
    {
        bail!("--batch-bytes, --connections, --max-in-flight and --producers must be positive");
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be in (0, 3600] seconds");
    }
    let ack_slo = match args.slo_on.as_str() {
        "ack" => true,
        "e2e" if args.consumers > 0 => false,
        "e2e" => bail!("--slo-on e2e needs consumers"),
        other => bail!("--slo-on must be ack or e2e, got {other:?}"),
    };
    let target = metadata_target(&args.bootstrap, &args.topic, args.partitions)?;
    let partitions = target.leaders.len() as i32;
    let spec = LoadSpec {
        target,
        acks: args.acks,
        batch_bytes: args.batch_bytes,
        linger: Duration::from_millis(args.linger_ms),
        codec: args.compression,
        sizes: args.size,
        keys: args.keys,
        connections: args.connections,
        max_in_flight: args.max_in_flight,
        duration: Duration::from_secs_f64(args.duration),
        seed: args.seed,
    };
    let mut report = Report {
        tool: "shardlog-loadgen",
        version: env!("CARGO_PKG_VERSION"),
        args: &args,
        message_size: args.size.to_string(),
        keys: args.keys.to_string(),
        compression: args.compression.name().to_string(),
        partitions,
        run: None,
        probe: None,
        steps: Vec::new(),
        limit: None,
    };
    let acks = if args.acks == -1 {
        "all".to_string()
    } else {
        args.acks.to_string()
    };
    if args.find_limit {
        eprintln!(
            "probe: closed loop for {:.0} s on {partitions} partitions",
            args.duration
        );
        let probe = run_once(&args, &spec, None, args.quiet)?;
        report::print_result(&probe);
        let max = probe.acked_msgs_per_sec;
        if max <= 0.0 {
            bail!("the probe acknowledged nothing; is the broker up?");
        }
        let cfg = limit::Search {
            max_steps: args.max_steps,
            refine: args.refine,
            trials: args.trials,
            slo_ms: args.slo,
            ack: ack_slo,
        };
        let (steps, found) = limit::search(max, &cfg, |rate, phase| {
            eprintln!("{phase:?}: open loop at {rate:.0} msg/s");
            let r = run_once(&args, &spec, Some(rate), args.quiet)?;
            let p99 = r.slo_latency(ack_slo).p99;
            eprintln!(
                "{phase:?}: offered {rate:.0}, acknowledged {:.0} msg/s ({:.1} MB/s), p99 {p99:.2} ms: {}",
                r.acked_msgs_per_sec,
                r.acked_mb_per_sec,
                if limit::held(rate, &r, p99, args.slo) { "held" } else { "did not hold" }
            );
            Ok(r)
        })?;
        report.steps = steps;
        report.probe = Some(probe);
        report.limit = limit::limit(&report.steps, found, partitions, args.slo, ack_slo);
        report::print_steps(&report.steps, ack_slo);
        report::print_limit(report.limit.as_ref(), args.slo, ack_slo);
        let plot = args
            .plot
            .clone()
            .unwrap_or_else(|| PathBuf::from("loadgen-curve.svg"));
        let svg = limit::svg(
            &report.steps,
            args.slo,
            report.limit.as_ref(),
            &title(&args, partitions, &acks),
            ack_slo,
        );
        std::fs::write(&plot, svg).with_context(|| format!("cannot write {}", plot.display()))?;
        println!("curve: {}", plot.display());
    } else {
        eprintln!(
            "{} for {:.0} s on {partitions} partitions, acks={acks}",
            match args.rate {
                Some(r) => format!("open loop at {r:.0} msg/s"),
                None => "closed loop".into(),
            },
            args.duration
        );
        let r = run_once(&args, &spec, args.rate, args.quiet)?;
        report::print_result(&r);
        if let Some(plot) = &args.plot {
            let svg = report::timeline_svg(&r, &title(&args, partitions, &acks), args.slo, ack_slo);
            std::fs::write(plot, svg)
                .with_context(|| format!("cannot write {}", plot.display()))?;
            println!("latency over time: {}", plot.display());
        }
        report.run = Some(r);
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        if path.as_os_str() == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}
