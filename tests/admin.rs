//! Topic administration through the `shardlog topic` CLI and librdkafka's AdminClient.

mod common;

use std::process::Command;
use std::time::Duration;

use futures::executor::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use common::Broker;

fn cli(b: &Broker, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(args)
        .args(["--bootstrap", &b.bootstrap()])
        .output()
        .expect("run cli");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn admin(b: &Broker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .create()
        .expect("admin")
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

#[test]
fn topic_cli_create_list_describe_delete() {
    let b = Broker::start(2);
    let (ok, out, err) = cli(&b, &["topic", "create", "orders", "--partitions", "3"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("created topic orders with 3 partitions"),
        "{out}"
    );
    let (ok, _, err) = cli(&b, &["topic", "create", "orders", "--partitions", "3"]);
    assert!(!ok);
    assert!(err.contains("error 36"), "already exists: {err}");
    let (ok, _, err) = cli(&b, &["topic", "create", "bad/name"]);
    assert!(!ok, "{err}");
    let (ok, _, err) = cli(&b, &["topic", "create", "cfg", "--config", "no.such.key=1"]);
    assert!(!ok && err.contains("error 40"), "{err}");

    // Put two records in partition 1.
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .create()
        .expect("producer");
    for v in ["a", "b"] {
        block_on(
            p.send_result(FutureRecord::<(), _>::to("orders").partition(1).payload(v))
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        )
        .expect("not cancelled")
        .expect("delivered");
    }

    let (ok, out, err) = cli(&b, &["topic", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("orders\t3 partitions"), "{out}");
    let (ok, out, err) = cli(&b, &["topic", "describe", "orders"]);
    assert!(ok, "{err}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert_eq!(rows[1][0], "1");
    assert_eq!((rows[1][2], rows[1][3]), ("0", "2"), "{out}");
    assert_eq!((rows[0][2], rows[0][3]), ("0", "0"), "{out}");
    // The configs follow: defaults, then a change made with alter-config.
    assert!(out.contains("\nCONFIG\tVALUE\tSOURCE\n"), "{out}");
    assert!(out.contains("cleanup.policy\tdelete\tdefault"), "{out}");
    let (ok, out, err) = cli(
        &b,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=60000",
            "--set",
            "cleanup.policy=compact",
        ],
    );
    assert!(ok && out.contains("orders: retention.ms=60000"), "{err}");
    let (_, out, _) = cli(&b, &["topic", "describe", "orders"]);
    assert!(out.contains("retention.ms\t60000\ttopic"), "{out}");
    assert!(out.contains("cleanup.policy\tcompact\ttopic"), "{out}");
    let (ok, _, err) = cli(
        &b,
        &[
            "topic",
            "alter-config",
            "orders",
            "--delete",
            "cleanup.policy",
        ],
    );
    assert!(ok, "{err}");
    let (_, out, _) = cli(&b, &["topic", "describe", "orders"]);
    assert!(out.contains("cleanup.policy\tdelete\tdefault"), "{out}");
    let (ok, _, err) = cli(
        &b,
        &["topic", "alter-config", "orders", "--set", "retention.ms"],
    );
    assert!(!ok && err.contains("is not KEY=VALUE"), "{err}");
    let (ok, _, err) = cli(
        &b,
        &["topic", "alter-config", "orders", "--set", "no.such=1"],
    );
    assert!(!ok && err.contains("configs not changed"), "{err}");
    let (ok, _, err) = cli(&b, &["topic", "alter-config", "orders"]);
    assert!(!ok && err.contains("nothing to change"), "{err}");
    // Partitions only grow.
    let (ok, out, err) = cli(
        &b,
        &["topic", "add-partitions", "orders", "--partitions", "5"],
    );
    assert!(ok && out.contains("now 5 partitions"), "{err}");
    let (_, out, _) = cli(&b, &["topic", "list"]);
    assert!(out.contains("orders\t5 partitions"), "{out}");
    let (ok, _, err) = cli(
        &b,
        &["topic", "add-partitions", "orders", "--partitions", "2"],
    );
    assert!(!ok && err.contains("partitions not added"), "{err}");
    let (ok, _, err) = cli(
        &b,
        &["topic", "add-partitions", "nope", "--partitions", "2"],
    );
    assert!(!ok && err.contains("does not exist"), "{err}");
    // The running broker's settings, and which are its defaults.
    let (ok, out, err) = cli(
        &b,
        &["config", "get", "num.partitions", "cores", "log.dirs"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("num.partitions\t1\tdefault"), "{out}");
    assert!(out.contains("cores\t2\tbroker"), "{out}");
    assert!(out.contains("log.dirs\t"), "{out}");
    let (ok, _, err) = cli(&b, &["config", "get", "no.such.setting"]);
    assert!(!ok && err.contains("has no setting"), "{err}");

    let (ok, out, err) = cli(&b, &["topic", "delete", "orders"]);
    assert!(ok && out.contains("deleted"), "{err}");
    let (ok, out, _) = cli(&b, &["topic", "list"]);
    assert!(ok && !out.contains("orders"), "{out}");
    let (ok, _, err) = cli(&b, &["topic", "describe", "orders"]);
    assert!(!ok && err.contains("error 3"), "{err}");
}

#[test]
fn admin_client_configs_partitions_and_delete() {
    let mut b = Broker::start(2);
    let a = admin(&b);
    let topic = NewTopic::new("cfgd", 3, TopicReplication::Fixed(1))
        .set("retention.ms", "3600000")
        .set("segment.bytes", "1048576");
    for r in block_on(a.create_topics(&[topic], &opts())).expect("create") {
        r.expect("created");
    }
    // Replication factor 3 cannot be met by one broker.
    let res = block_on(a.create_topics(
        &[NewTopic::new("rf3", 1, TopicReplication::Fixed(3))],
        &opts(),
    ))
    .expect("create");
    assert!(matches!(
        res[0],
        Err((_, RDKafkaErrorCode::InvalidReplicationFactor))
    ));

    let described = block_on(a.describe_configs(&[ResourceSpecifier::Topic("cfgd")], &opts()))
        .expect("describe");
    let res = described[0].as_ref().expect("resource");
    let get = |k: &str| {
        res.entries
            .iter()
            .find(|e| e.name == k)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(get("retention.ms").as_deref(), Some("3600000"));
    assert_eq!(get("segment.bytes").as_deref(), Some("1048576"));
    assert_eq!(get("cleanup.policy").as_deref(), Some("delete"));
    let broker = block_on(a.describe_configs(&[ResourceSpecifier::Broker(0)], &opts()))
        .expect("describe broker");
    assert!(broker[0]
        .as_ref()
        .expect("broker")
        .entries
        .iter()
        .any(|e| e.name == "auto.create.topics.enable"));

    // AlterConfigs replaces the topic's overrides (a bad value gets INVALID_CONFIG; checked
    // with confluent-kafka in tests/smoke, since rust-rdkafka reports it as success).
    let altered = block_on(a.alter_configs(
        &[AlterConfig::new(ResourceSpecifier::Topic("cfgd")).set("retention.ms", "7200000")],
        &opts(),
    ))
    .expect("alter");
    altered[0].as_ref().expect("altered");
    let described = block_on(a.describe_configs(&[ResourceSpecifier::Topic("cfgd")], &opts()))
        .expect("describe");
    let res = described[0].as_ref().expect("resource");
    let value = |k: &str| {
        res.entries
            .iter()
            .find(|e| e.name == k)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(value("retention.ms").as_deref(), Some("7200000"));
    // Not set any more by AlterConfigs (which replaces the whole set): back to the default.
    assert_eq!(value("segment.bytes").as_deref(), Some("1073741824"));

    let more = block_on(a.create_partitions(&[NewPartitions::new("cfgd", 5)], &opts()))
        .expect("create partitions");
    more[0].as_ref().expect("grown");
    let fewer = block_on(a.create_partitions(&[NewPartitions::new("cfgd", 2)], &opts()))
        .expect("create partitions");
    assert!(matches!(
        fewer[0],
        Err((_, RDKafkaErrorCode::InvalidPartitions))
    ));

    // Topics, their partition count and configs survive a restart.
    b.restart();
    let a = admin(&b);
    let md = a
        .inner()
        .fetch_metadata(Some("cfgd"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 5);
    assert_eq!(md.brokers().len(), 2, "one advertised broker per shard");
    let described = block_on(a.describe_configs(&[ResourceSpecifier::Topic("cfgd")], &opts()))
        .expect("describe");
    let res = described[0].as_ref().expect("resource");
    assert!(
        res.entries
            .iter()
            .any(|e| e.name == "retention.ms" && e.value.as_deref() == Some("7200000")),
        "altered config survives a restart"
    );

    let del = block_on(a.delete_topics(&["cfgd"], &opts())).expect("delete");
    del[0].as_ref().expect("deleted");
    let del = block_on(a.delete_topics(&["cfgd"], &opts())).expect("delete");
    assert!(matches!(
        del[0],
        Err((_, RDKafkaErrorCode::UnknownTopicOrPartition))
    ));
}

#[test]
fn offsets_for_times_and_auto_create_setting() {
    let b = Broker::start_with(1, &["--auto-create-topics", "false"]);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", "unused")
        .create()
        .expect("consumer");
    // Auto-creation off: metadata for an unknown topic says so and nothing is created.
    let md = consumer
        .fetch_metadata(Some("nope"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(
        md.topics()[0].error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    );

    let a = admin(&b);
    for r in block_on(a.create_topics(
        &[NewTopic::new("timed", 1, TopicReplication::Fixed(1))],
        &opts(),
    ))
    .expect("create")
    {
        r.expect("created");
    }
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    for i in 0..10i64 {
        block_on(
            p.send_result(
                FutureRecord::<(), _>::to("timed")
                    .partition(0)
                    .payload("v")
                    .timestamp(1_000_000 + i * 1000),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue"),
        )
        .expect("not cancelled")
        .expect("delivered");
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("timed", 0, rdkafka::Offset::Offset(1_004_500))
        .expect("tpl");
    let found = consumer
        .offsets_for_times(tpl, Duration::from_secs(10))
        .expect("offsets_for_times");
    let off = found.elements()[0].offset();
    assert_eq!(off, rdkafka::Offset::Offset(5));
    let (lo, hi) = consumer
        .fetch_watermarks("timed", 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!((lo, hi), (0, 10));
}

/// Sends one record of `size` bytes to partition 0 of `topic`: Kafka's error code, if any.
fn send_sized(b: &Broker, topic: &str, size: usize) -> Option<RDKafkaErrorCode> {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let payload = vec![b'x'; size];
    let sent = block_on(
        p.send_result(
            FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(&payload),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue"),
    )
    .expect("not cancelled");
    sent.err().and_then(|(e, _)| e.rdkafka_error_code())
}

#[test]
fn dynamic_broker_settings_apply_at_once_and_outlive_a_restart() {
    let mut b = Broker::start(2);
    let (ok, _, err) = cli(&b, &["topic", "create", "dyn", "--partitions", "1"]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&b, &["config", "get", "message.max.bytes", "cores"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("message.max.bytes\t1048588\tdefault\tyes"),
        "{out}"
    );
    assert!(out.contains("cores\t2\tbroker\tno"), "{out}");
    assert_eq!(send_sized(&b, "dyn", 5000), None);

    // Cluster-wide: every partition whose topic does not override it, at once.
    let (ok, out, err) = cli(&b, &["config", "set", "message.max.bytes=2000"]);
    assert!(
        ok && out.contains("every broker: message.max.bytes=2000"),
        "{err}"
    );
    let (_, out, _) = cli(&b, &["topic", "describe", "dyn"]);
    assert!(
        out.contains("max.message.bytes\t2000\tcluster (dynamic)"),
        "{out}"
    );
    assert_eq!(
        send_sized(&b, "dyn", 5000),
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    assert_eq!(send_sized(&b, "dyn", 100), None);

    // Refusals name the reason; nothing changes.
    let (ok, _, err) = cli(&b, &["config", "set", "cores=4"]);
    assert!(
        !ok && err.contains("cannot be changed on a running broker"),
        "{err}"
    );
    let (ok, _, err) = cli(&b, &["config", "set", "log.retention.ms=-7"]);
    assert!(!ok && err.contains("must be -1 or more"), "{err}");
    let (ok, _, err) = cli(&b, &["config", "set", "no.such.setting=1"]);
    assert!(!ok && err.contains("unknown broker setting"), "{err}");
    let (ok, _, err) = cli(
        &b,
        &["config", "set", "--broker", "99", "log.retention.ms=1"],
    );
    assert!(!ok && err.contains("no broker 99"), "{err}");
    let (ok, _, err) = cli(&b, &["config", "set", "message.max.bytes"]);
    assert!(!ok && err.contains("is not KEY=VALUE"), "{err}");

    // Per broker (its node): above the cluster-wide value.
    let (ok, _, err) = cli(
        &b,
        &["config", "set", "--broker", "1", "message.max.bytes=3000"],
    );
    assert!(ok, "{err}");
    let (_, out, _) = cli(&b, &["config", "get", "--broker", "0", "message.max.bytes"]);
    assert!(
        out.contains("message.max.bytes\t3000\tbroker (dynamic)\tyes"),
        "{out}"
    );

    // librdkafka's AlterConfigs (the whole set of the cluster-wide entity replaced).
    let a = admin(&b);
    let r = block_on(a.alter_configs(
        &[AlterConfig::new(ResourceSpecifier::Broker(0)).set("log.retention.ms", "3600000")],
        &opts(),
    ))
    .expect("alter broker");
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let described = block_on(a.describe_configs(&[ResourceSpecifier::Broker(0)], &opts()))
        .expect("describe broker");
    let entry = |k: &str| {
        described[0]
            .as_ref()
            .expect("broker")
            .entries
            .iter()
            .find(|e| e.name == k)
            .map(|e| (e.value.clone().unwrap_or_default(), e.is_read_only))
            .expect(k)
    };
    assert_eq!(entry("log.retention.ms"), ("3600000".to_string(), false));
    assert!(entry("cores").1);
    // AlterConfigs replaced broker 0's set: its message.max.bytes is the cluster's again.
    assert_eq!(entry("message.max.bytes").0, "2000");
    drop(a);

    // Kept with the catalog: the same after a restart.
    b.restart();
    let (_, out, _) = cli(
        &b,
        &["config", "get", "message.max.bytes", "log.retention.ms"],
    );
    assert!(
        out.contains("message.max.bytes\t2000\tcluster (dynamic)"),
        "{out}"
    );
    assert!(
        out.contains("log.retention.ms\t3600000\tbroker (dynamic)"),
        "{out}"
    );
    assert_eq!(
        send_sized(&b, "dyn", 5000),
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    // Removed: the static setting applies again.
    let (ok, _, err) = cli(&b, &["config", "set", "--delete", "message.max.bytes"]);
    assert!(ok, "{err}");
    let (_, out, _) = cli(&b, &["topic", "describe", "dyn"]);
    assert!(out.contains("max.message.bytes\t1048588\tdefault"), "{out}");
    assert_eq!(send_sized(&b, "dyn", 5000), None);
}
