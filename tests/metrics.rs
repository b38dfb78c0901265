//! The /metrics endpoint against real traffic: counters match what clients did.

mod common;

use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use common::wire::create_topic;
use common::{http_get, metric_sample as sample, Broker};

#[test]
fn metrics_match_the_traffic() {
    let b = Broker::start_with(2, &["--group-initial-rebalance-delay-ms", "100"]);
    let addr = b.metrics_addr().expect("metrics address logged");
    let (status, body) = http_get(&addr, "/health");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");

    create_topic(&b, "m", 1);
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let futs: Vec<_> = (0..1000)
        .map(|i| {
            let v = format!("value-{i}");
            p.send_result(FutureRecord::<(), _>::to("m").partition(0).payload(&v))
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for f in futs {
        block_on(f).expect("not cancelled").expect("delivered");
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", "mg")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["m"]).expect("subscribe");
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while read < 1000 && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            read += 1;
        }
    }
    assert_eq!(read, 1000);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("m", 0, Offset::Offset(600))
        .expect("tpl");
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");

    let (status, body) = http_get(&addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        sample(&body, "shardlog_topic_records_in_total{topic=\"m\"}"),
        Some(1000.0),
        "{body}"
    );
    assert!(
        sample(&body, "shardlog_topic_records_out_total{topic=\"m\"}").unwrap_or(0.0) >= 1000.0
    );
    assert!(
        sample(&body, "shardlog_topic_bytes_in_total{topic=\"m\"}").unwrap_or(0.0) > 1000.0 * 7.0
    );
    assert_eq!(
        sample(
            &body,
            "shardlog_partition_log_end_offset{topic=\"m\",partition=\"0\"}"
        ),
        Some(1000.0)
    );
    assert_eq!(
        sample(
            &body,
            "shardlog_group_committed_offset{group=\"mg\",topic=\"m\",partition=\"0\"}"
        ),
        Some(600.0)
    );
    assert_eq!(
        sample(
            &body,
            "shardlog_group_lag{group=\"mg\",topic=\"m\",partition=\"0\"}"
        ),
        Some(400.0),
        "lag = end - committed"
    );
    assert!(sample(&body, "shardlog_requests_total{api=\"Produce\"}").unwrap_or(0.0) >= 1.0);
    assert!(sample(&body, "shardlog_requests_total{api=\"Fetch\"}").unwrap_or(0.0) >= 1.0);
    assert!(
        sample(
            &body,
            "shardlog_request_duration_seconds_count{api=\"Produce\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        body.contains("shardlog_shard_connections{shard=\"1\"}"),
        "every shard reports"
    );
    assert!(sample(&body, "shardlog_shard_io_writes_total{shard=").is_some());
    let (status, _) = http_get(&addr, "/nope");
    assert!(status.contains("404"));
}

#[test]
fn every_metric_the_dashboard_and_the_docs_name_is_exported() {
    // A one-voter metadata quorum, so the quorum's metrics are exported too.
    let port = common::pick_controller_port();
    let b = Broker::start_configured(
        1,
        &format!("\"node.id\" = 1\n\"controller.quorum.voters\" = \"1@127.0.0.1:{port}\"\n"),
        &[],
    );
    let addr = b.metrics_addr().expect("metrics address logged");
    let (_, body) = http_get(&addr, "/metrics");
    let names = |text: &str| -> Vec<String> {
        let mut out: Vec<String> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("shardlog_") && w.len() > "shardlog_".len())
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        out
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard =
        std::fs::read_to_string(format!("{root}/docs/grafana-dashboard.json")).expect("dashboard");
    let ops = std::fs::read_to_string(format!("{root}/docs/operations.md")).expect("docs");
    // Histogram/summary suffixes are exported under their family name.
    let exported = |n: &str| {
        let family = n
            .trim_end_matches("_sum")
            .trim_end_matches("_count")
            .trim_end_matches("_bucket");
        body.contains(&format!("# TYPE {family} ")) || body.contains(&format!("{n} "))
    };
    for n in names(&dashboard).iter().chain(&names(&ops)) {
        assert!(
            exported(n),
            "{n} is named in the dashboard or docs but not exported"
        );
    }
}
