//! The schema registry on the HTTP port, with confluent-kafka's schema-registry
//! serializers (tests/py/schema_client.py): Avro and JSON Schema registered by producers,
//! growth accepted and breakage refused naming the field, records read back with the
//! deserializers before and after a restart; and what hostile or buggy requests get.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::Broker;
use serde_json::{json, Value};

fn py(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/schema_client.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// One HTTP request (the server closes the connection after answering): status and body.
fn call(addr: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn serializers_register_grow_refuse_breakage_and_the_schemas_survive_a_restart() {
    let mut b = Broker::start(2);
    let registry = b.metrics_addr().expect("HTTP port");
    let out = py(&["produce", &registry, &b.bootstrap(), "shop"]);
    // Growth (an optional field; an optional property) became version 2.
    assert_eq!(out["avro_versions"], json!([1, 2]), "{out}");
    assert_eq!(out["json_versions"], json!([1, 2]), "{out}");
    // Breakage is refused with the field and the rule.
    let bad = &out["avro_bad"];
    assert_eq!(bad["status"], 409, "{out}");
    assert!(
        message(bad).contains("field \"id\": type changed from int to string"),
        "{bad}"
    );
    assert_eq!(out["avro_compatible_bad"], false);
    let bad = &out["json_bad"];
    assert_eq!(bad["status"], 409, "{out}");
    assert!(
        message(bad).contains("property \"msg_id\": type changed from integer to string"),
        "{bad}"
    );
    // Under FULL, removing a field version 2's readers require is breakage too.
    assert_eq!(out["avro_level"], "FULL");
    assert!(
        message(&out["avro_removed_full"]).contains("field \"item\" was removed"),
        "{out}"
    );

    let want = json!({
        "avro": [{"id": 1, "item": "apple"}, {"id": 2, "item": "pear", "note": "ripe"}],
        "json": [{"msg_id": 1, "body": "hello"}, {"msg_id": 2, "body": "again", "tags": ["x"]}],
    });
    assert_eq!(py(&["consume", &registry, &b.bootstrap(), "shop"]), want);

    // Kept in `_schemas`: the same ids, versions and levels after a restart, and a new
    // reader (no cache) decodes the old records.
    let (_, before) = call(&registry, "GET", "/schemas/ids/2", "");
    b.restart();
    let registry = b.metrics_addr().expect("HTTP port");
    let (code, after) = call(&registry, "GET", "/schemas/ids/2", "");
    assert_eq!((code, &after), (200, &before));
    let (_, level) = call(&registry, "GET", "/config/shop-avro-value", "");
    assert_eq!(level["compatibilityLevel"], "FULL");
    assert_eq!(py(&["consume", &registry, &b.bootstrap(), "shop"]), want);
    // The next new schema gets the next id.
    let grown = json!({"schema": json!({"type":"record","name":"Order","namespace":"shop","fields":[
        {"name":"id","type":"int"},{"name":"item","type":"string"},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"qty","type":"int","default":1}]}).to_string()});
    let (code, v) = call(
        &registry,
        "POST",
        "/subjects/shop-avro-value/versions",
        &grown.to_string(),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["id"].as_u64(), v["version"].as_u64()),
        (Some(5), Some(3))
    );
}

#[test]
fn bad_and_hostile_requests_get_the_registry_errors() {
    let b = Broker::start(1);
    let r = b.metrics_addr().expect("HTTP port");
    let avro = |fields: Value| {
        json!({"schema": json!({"type":"record","name":"r","fields":fields}).to_string()})
            .to_string()
    };
    let v1 = avro(json!([{"name":"a","type":"int"}]));
    assert_eq!(call(&r, "POST", "/subjects/s/versions", &v1).0, 200);
    // Not JSON, not a schema, an unknown type, references, too deep.
    for (body, code) in [
        ("{nope", 400),
        ("[1,2]", 400),
        (r#"{"schema":"{\"type\":\"recrd\"}"}"#, 42201),
        (r#"{"schema":"{}","schemaType":"PROTOBUF"}"#, 42201),
        (
            r#"{"schema":"{\"type\":\"string\"}","references":[{"name":"x","subject":"y","version":1}]}"#,
            42201,
        ),
    ] {
        let (_, v) = call(&r, "POST", "/subjects/s/versions", body);
        assert_eq!(v["error_code"], code, "{body}: {v}");
    }
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let (_, v) = call(
        &r,
        "POST",
        "/subjects/s/versions",
        &json!({"schema": deep, "schemaType": "JSON"}).to_string(),
    );
    assert_eq!(v["error_code"], 42201, "{v}");
    // A body past the limit is refused before it is read.
    let huge = format!("{{\"schema\":\"{}\"}}", "x".repeat(2 << 20));
    assert_eq!(call(&r, "POST", "/subjects/s/versions", &huge).0, 413);
    // Unknown subjects, versions, ids, levels, paths.
    assert_eq!(
        call(&r, "GET", "/subjects/none/versions", "").1["error_code"],
        40401
    );
    assert_eq!(
        call(&r, "GET", "/subjects/s/versions/7", "").1["error_code"],
        40402
    );
    assert_eq!(
        call(&r, "GET", "/subjects/s/versions/0", "").1["error_code"],
        42202
    );
    assert_eq!(
        call(&r, "GET", "/subjects/s/versions/x", "").1["error_code"],
        42202
    );
    assert_eq!(
        call(&r, "GET", "/schemas/ids/99", "").1["error_code"],
        40403
    );
    assert_eq!(call(&r, "GET", "/schemas/ids/-1", "").0, 400);
    assert_eq!(
        call(&r, "PUT", "/config", r#"{"compatibility":"SIDEWAYS"}"#).1["error_code"],
        42203
    );
    assert_eq!(call(&r, "GET", "/config/s", "").1["error_code"], 40408);
    assert_eq!(call(&r, "GET", "/subjects/s/what/ever", "").0, 404);
    // Deletion: permanent only after soft; a soft-deleted subject is gone from listings.
    assert_eq!(
        call(&r, "DELETE", "/subjects/s?permanent=true", "").1["error_code"],
        40407
    );
    assert_eq!(call(&r, "DELETE", "/subjects/s", "").1, json!([1]));
    assert_eq!(call(&r, "GET", "/subjects", "").1, json!([]));
    assert_eq!(
        call(&r, "GET", "/subjects?deleted=true", "").1,
        json!(["s"])
    );
    assert_eq!(
        call(&r, "DELETE", "/subjects/s?permanent=true", "").1,
        json!([1])
    );
    assert_eq!(call(&r, "GET", "/subjects?deleted=true", "").1, json!([]));
    // The id stays the schema's: registering it again (anywhere) gives the same id.
    let (_, v) = call(&r, "POST", "/subjects/t/versions", &v1);
    assert_eq!(v["id"], 1, "{v}");
    // The broker is still well.
    assert_eq!(common::http_get(&r, "/health").0, "HTTP/1.1 200 OK");
}

#[test]
fn the_registry_can_be_turned_off() {
    let b = Broker::start_configured(1, "\"schema.registry.enable\" = false\n", &[]);
    let r = b.metrics_addr().expect("HTTP port");
    assert_eq!(call(&r, "GET", "/subjects", "").0, 404);
    assert_eq!(common::http_get(&r, "/health").0, "HTTP/1.1 200 OK");
}

/// `[0, id, payload]`: the serializers' framing.
fn framed(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend(id.to_be_bytes());
    v.extend(payload);
    v
}

/// The Avro encoding of `{"id": id, "item": item}` (schema AVRO_V1 of schema_client.py).
fn order(id: i64, item: &str) -> Vec<u8> {
    let mut v = Vec::new();
    shardlog::log::records::put_varint(&mut v, id);
    shardlog::log::records::put_varint(&mut v, item.len() as i64);
    v.extend(item.as_bytes());
    v
}

/// Every record of `topic`/`partition` as (offset, key, headers) through `shardlog consume`.
fn consumed(b: &Broker, topic: &str, partition: &str) -> Vec<(i64, String, String)> {
    let out = common::cli(
        b,
        &[
            "consume",
            topic,
            "-p",
            partition,
            "-e",
            "-f",
            "%o\t%k\t%h\n",
        ],
    );
    out.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            Some((
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
                f.next().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

#[test]
fn invalid_records_are_refused_or_dead_lettered_and_never_reach_the_topic() {
    use common::wire::{create_topic_with, produce};
    let b = Broker::start(2);
    let registry = b.metrics_addr().expect("HTTP port");
    create_topic_with(
        &b,
        "orders",
        2,
        &[
            "schema.validation=full",
            "schema.validation.failure=dead-letter",
        ],
    );
    create_topic_with(&b, "strict", 1, &["schema.validation=full"]);
    create_topic_with(&b, "ids", 1, &["schema.validation=id"]);

    // One librdkafka batch: three valid records between three invalid ones.
    let mixed = py(&["mixed", &registry, &b.bootstrap(), "orders"]);
    let told: Vec<&Value> = mixed["results"]
        .as_array()
        .expect("results")
        .iter()
        .collect();
    assert!(told.iter().all(|r| r["error"].is_null()), "{mixed}");
    // The valid ones are in the topic at their original offsets (monotonic, with gaps)...
    let kept = consumed(&b, "orders", "0");
    let keys: Vec<(i64, &str)> = kept.iter().map(|(o, k, _)| (*o, k.as_str())).collect();
    assert_eq!(keys, vec![(0, "k0"), (2, "k2"), (4, "k4")], "{kept:?}");
    // ...and the invalid ones in orders.dlq, each saying where it was going and why.
    let dead = consumed(&b, "orders.dlq", "0");
    assert_eq!(dead.len(), 3, "{dead:?}");
    for ((_, key, headers), (offset, why)) in dead.iter().zip([
        (1, "not in the schema registry's wire format"),
        (3, "does not decode with Avro schema 1"),
        (
            5,
            "schema id 999 is not registered under subject orders-value",
        ),
    ]) {
        assert_eq!(key, &format!("k{offset}"));
        assert!(
            headers.contains("dlq.topic=orders")
                && headers.contains("dlq.partition=0")
                && headers.contains(&format!("dlq.offset={offset}"))
                && headers.contains(why),
            "{headers}"
        );
    }
    // The dead-letter topic has the topic's partition count.
    let described = common::cli(&b, &["topic", "describe", "orders.dlq"]);
    assert!(described.contains("partitions 2"), "{described}");

    // With `reject` the batch fails: the invalid records get INVALID_RECORD, the valid
    // ones of the same batch that it was refused for another record; nothing is stored.
    let rejected = py(&["mixed", &registry, &b.bootstrap(), "strict"]);
    let errors: Vec<&str> = rejected["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["error"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(
        errors,
        vec![
            "_INVALID_DIFFERENT_RECORD",
            "INVALID_RECORD",
            "_INVALID_DIFFERENT_RECORD",
            "INVALID_RECORD",
            "_INVALID_DIFFERENT_RECORD",
            "INVALID_RECORD"
        ],
        "{rejected}"
    );
    assert!(consumed(&b, "strict", "0").is_empty());

    // `id` checks the framing and the id (registered under `ids-value`), not the payload.
    let v1 = json!({"type":"record","name":"Order","namespace":"shop","fields":[
        {"name":"id","type":"int"},{"name":"item","type":"string"}]});
    let (_, r) = call(
        &registry,
        "POST",
        "/subjects/ids-value/versions",
        &json!({"schema": v1.to_string()}).to_string(),
    );
    assert_eq!(r["id"], 1, "{r}");
    let mut c = shardlog::admin::client::Client::connect(&b.bootstrap()).expect("connect");
    let cut = framed(1, &[2]);
    let batch = common::producer_batch(&[&cut], 1, -1, -1, -1);
    assert_eq!(produce(&mut c, "ids", 0, batch).0, 0);
    let batch = common::producer_batch(&[b"nope"], 1, -1, -1, -1);
    assert_eq!(produce(&mut c, "ids", 0, batch).0, 87);
    // Keys too, once asked (under `ids-key`); a bad setting is refused.
    let (ok, _, err) = common::shardlog_try(&[
        "topic",
        "alter-config",
        "ids",
        "--set",
        "schema.validation=maybe",
        "--bootstrap",
        &b.bootstrap(),
    ]);
    assert!(!ok && err.contains("none, id or full"), "{err}");
    common::cli(
        &b,
        &[
            "topic",
            "alter-config",
            "ids",
            "--set",
            "schema.validation.key=true",
        ],
    );
    let (_, r) = call(
        &registry,
        "POST",
        "/subjects/ids-key/versions",
        &json!({"schema": v1.to_string()}).to_string(),
    );
    assert_eq!(r["id"], 1, "{r}");
    let keyed = |key: Option<&[u8]>| {
        shardlog::log::records::build_producer_batch(&[(key, Some(&cut[..]))], 1, -1, -1, -1)
    };
    assert_eq!(produce(&mut c, "ids", 0, keyed(None)).0, 87);
    assert_eq!(produce(&mut c, "ids", 0, keyed(Some(b"plain"))).0, 87);
    assert_eq!(produce(&mut c, "ids", 0, keyed(Some(&cut))).0, 0);

    // An idempotent producer's retry of a batch with a dead letter is a duplicate: the same
    // offsets, nothing added to either topic.
    let (pid, epoch) = {
        let mut req =
            kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest::default();
        req.transaction_timeout_ms = 60_000;
        req.producer_id = kafka_protocol::messages::ProducerId(-1);
        req.producer_epoch = -1;
        let r = c.call(&req, 4).expect("init producer id");
        (r.producer_id.0, r.producer_epoch)
    };
    let good = framed(1, &order(7, "retried"));
    let batch = common::producer_batch(&[&good, b"bad"], 1, pid, epoch, 0);
    let first = produce(&mut c, "orders", 1, batch.clone());
    let again = produce(&mut c, "orders", 1, batch);
    assert_eq!(first, (0, 0));
    assert_eq!(again, first);
    assert_eq!(consumed(&b, "orders", "1").len(), 1);
    assert_eq!(consumed(&b, "orders.dlq", "1").len(), 1);
    // A batch of nothing but invalid records keeps its offsets (and sequence range): the
    // next record comes after them, and the producer's next sequence is accepted.
    let batch = common::producer_batch(&[b"x", b"y"], 1, pid, epoch, 2);
    assert_eq!(produce(&mut c, "orders", 1, batch), (0, 2));
    let batch = common::producer_batch(&[&good], 1, pid, epoch, 4);
    assert_eq!(produce(&mut c, "orders", 1, batch), (0, 4));
    let offsets: Vec<i64> = consumed(&b, "orders", "1").iter().map(|r| r.0).collect();
    assert_eq!(offsets, vec![0, 4]);
    assert_eq!(consumed(&b, "orders.dlq", "1").len(), 3);

    // A consumer group on the topic reads only valid records.
    let group = common::cli(
        &b,
        &["consume", "orders", "-G", "readers", "-e", "-f", "%k\n"],
    );
    let mut keys: Vec<&str> = group.lines().collect();
    keys.sort();
    assert_eq!(keys, vec!["", "", "k0", "k2", "k4"], "{group}");

    // Per-topic counters.
    let (_, metrics) = common::http_get(&registry, "/metrics");
    for (name, want) in [
        (
            "shardlog_topic_schema_dead_lettered_total{topic=\"orders\"}",
            6.0,
        ),
        ("shardlog_topic_schema_refused_total{topic=\"strict\"}", 3.0),
        (
            "shardlog_topic_schema_validated_total{topic=\"orders\"}",
            11.0,
        ),
    ] {
        assert_eq!(common::metric_sample(&metrics, name), Some(want), "{name}");
    }
}

#[test]
fn in_a_cluster_every_node_serves_the_registry_and_validates_with_schemas_registered_elsewhere() {
    use common::cluster::{leaders, Cluster};
    let c = Cluster::start(3);
    let registry = |i: usize| c.nodes[i].metrics_addr().expect("HTTP port");
    common::cli(
        &c.nodes[0],
        &[
            "topic",
            "create",
            "events",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
            "--config",
            "schema.validation=full",
            "--config",
            "schema.validation.failure=dead-letter",
        ],
    );
    // Registered through node 1; read through node 3.
    let v1 = json!({"type":"record","name":"Order","namespace":"shop","fields":[
        {"name":"id","type":"int"},{"name":"item","type":"string"}]});
    let body = json!({"schema": v1.to_string()}).to_string();
    let (code, r) = call(
        &registry(0),
        "POST",
        "/subjects/events-value/versions",
        &body,
    );
    assert_eq!((code, &r["id"]), (200, &json!(1)), "{r}");
    let (code, r) = call(&registry(2), "GET", "/schemas/ids/1", "");
    assert_eq!(code, 200, "{r}");
    // Each partition's leader (one per node) checks a batch against a schema another node
    // registered, and sends its dead letter to the dead-letter partition's leader.
    let valid = framed(1, &order(1, "ok"));
    for (partition, (_, leader)) in leaders(&c.nodes[0].bootstrap(), "events")
        .iter()
        .enumerate()
    {
        let node = (*leader / 1024) as usize - 1;
        let mut conn =
            shardlog::admin::client::Client::connect(&c.nodes[node].bootstrap()).expect("connect");
        let batch = common::producer_batch(&[&valid, b"junk"], 1, -1, -1, -1);
        let got = common::wire::produce(&mut conn, "events", partition as i32, batch);
        assert_eq!(
            got,
            (0, 0),
            "partition {partition} led by node {}: {}",
            node + 1,
            c.nodes[node].log_text()
        );
    }
    // The registry's topic and the dead-letter topic have three replicas, as `events`.
    for t in ["_schemas", "events.dlq"] {
        let d = common::cli(&c.nodes[2], &["topic", "describe", t]);
        let replicas: Vec<usize> = d
            .lines()
            .filter(|l| l.chars().next().is_some_and(|ch| ch.is_ascii_digit()))
            .filter_map(|l| l.split('\t').nth(4))
            .map(|r| r.split(',').count())
            .collect();
        assert!(
            !replicas.is_empty() && replicas.iter().all(|n| *n == 3),
            "{d}"
        );
    }
    for p in ["0", "1", "2"] {
        assert_eq!(consumed(&c.nodes[1], "events", p).len(), 1, "events/{p}");
        let dead = consumed(&c.nodes[1], "events.dlq", p);
        assert_eq!(dead.len(), 1, "events.dlq/{p}");
        assert!(
            dead[0].2.contains(&format!("dlq.partition={p}")),
            "{dead:?}"
        );
    }
}
