//! End-to-end throughput: the release broker, driven by librdkafka on the same machine.
//!
//! `cargo bench --bench e2e_throughput -- [messages] [size] [acks] [idempotent]` produces `messages`
//! records of `size` bytes (default 1,000,000 x 1 KiB, acks=1) to an 8-partition topic,
//! then consumes them all, and prints rates and the broker's CPU-seconds per GB (of record
//! values, before compression). `BENCH_COMPRESSION=lz4|zstd|gzip|snappy` compresses batches;
//! values are then drawn from a 16 MiB buffer of text-like bytes (compressing about 2:1),
//! not one repeated value.
//! Client and broker share this machine's cores: the figures are a floor, not a ceiling.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/pid/stat (11 and 12 after the name).
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let size: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let acks = args.get(2).cloned().unwrap_or_else(|| "1".into());
    let idempotent = args.get(3).is_some_and(|a| a == "idempotent");
    let partitions = 8;
    let b = common::Broker::start(2);
    let pid = b.pid().expect("broker pid");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .create()
        .expect("admin");
    for r in block_on(admin.create_topics(
        &[NewTopic::new(
            "bench",
            partitions,
            TopicReplication::Fixed(1),
        )],
        &AdminOptions::new(),
    ))
    .expect("create")
    {
        r.expect("created");
    }
    let compression = std::env::var("BENCH_COMPRESSION").unwrap_or_else(|_| "none".into());
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("compression.type", &compression)
        .set("acks", &acks)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .create()
        .expect("producer");
    let pool = common::text_bytes(if compression == "none" {
        size
    } else {
        16 << 20
    });
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    for i in 0..n {
        let at = (i * 7919 * size) % (pool.len() - size + 1);
        let mut rec = BaseRecord::<(), [u8]>::to("bench")
            .payload(&pool[at..at + size])
            .partition((i % partitions as usize) as i32);
        // Bounded: each retry polls, which drains the queue as acks arrive.
        for _ in 0..1_000_000 {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let produce_s = start.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", "bench")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "4194304")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset("bench", p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let start = Instant::now();
    let mut got = 0usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    while got < n && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            got += 1;
        }
    }
    let fetch_s = start.elapsed().as_secs_f64();
    let cpu2 = cpu_seconds(pid);
    let mb = (n * size) as f64 / 1e6;
    let gb = (n * size) as f64 / 1e9;
    println!(
        "messages {n} x {size} B, acks={acks}, idempotent={idempotent}, compression={compression}, {partitions} partitions, 2 shards"
    );
    println!(
        "produce: {:.0} msg/s, {:.1} MB/s, broker CPU {:.2} s/GB",
        n as f64 / produce_s,
        mb / produce_s,
        (cpu1 - cpu0) / gb
    );
    println!(
        "fetch:   {:.0} msg/s, {:.1} MB/s, broker CPU {:.2} s/GB ({got} read)",
        got as f64 / fetch_s,
        mb / fetch_s,
        (cpu2 - cpu1) / gb
    );
    if let Some(addr) = b.metrics_addr() {
        let m = common::http_get(&addr, "/metrics").1;
        let sum = |name: &str| {
            (0..2)
                .filter_map(|s| common::metric_sample(&m, &format!("{name}{{shard=\"{s}\"}}")))
                .sum::<f64>()
                / 1e6
        };
        println!(
            "fetch bytes spliced {:.1} MB, copied instead {:.1} MB",
            sum("shardlog_shard_fetch_spliced_bytes_total"),
            sum("shardlog_shard_fetch_splice_copied_bytes_total")
        );
    }
}
