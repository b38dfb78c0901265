//! Clients still in use that send older request versions: Debian's sarama 1.22
//! (tests/go/sarama_client.go, built with Debian's Go) creates topics with CreateTopics v0
//! and v1, reads configs with DescribeConfigs v0 and commits a consumer group's offsets
//! with OffsetCommit v1 — and those commits stick: a second run of the group reads only
//! what came after. Raw requests check OffsetCommit v0.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::Broker;

/// Builds the sarama program (GOPATH mode over Debian's packaged sources; the build cache
/// under target/ keeps reruns fast) and returns its path.
fn sarama_client(out: &std::path::Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let gopath = "/usr/share/gocode";
    assert!(
        PathBuf::from(gopath)
            .join("src/github.com/Shopify/sarama")
            .exists(),
        "Debian's sarama is missing: run tests/setup.sh"
    );
    let bin = out.join("sarama_client");
    let st = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(root.join("tests/go/sarama_client.go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOCACHE", root.join("target/go-cache"))
        .env("CGO_CFLAGS", "-Wno-deprecated-declarations")
        .status()
        .expect("go (tests/setup.sh installs it)");
    assert!(st.success(), "go build");
    bin
}

fn run(bin: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("sarama_client");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<i32>) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for i in range {
        let v = format!("s{i}");
        p.send(BaseRecord::<(), _>::to(topic).payload(&v))
            .expect("queued");
    }
    p.flush(Duration::from_secs(30)).expect("flushed");
}

#[test]
fn sarama_creates_topics_reads_configs_and_its_commits_stick() {
    let b = Broker::start(2);
    let tmp = tempfile::tempdir().expect("tmp");
    let bin = sarama_client(tmp.path());
    let boot = b.bootstrap();

    let out = run(&bin, &["setup", &boot, "old", "100"]);
    assert!(
        out.contains("config retention.ms=3600000 default=false"),
        "{out}"
    );
    assert!(
        out.contains("config cleanup.policy=delete default=true"),
        "{out}"
    );
    assert!(out.contains("produced 100"), "{out}");
    let listed = common::cli(&b, &["topic", "list"]);
    assert!(
        listed.contains("old") && listed.contains("old-v0"),
        "{listed}"
    );

    let out = run(&bin, &["consume", &boot, "old", "sarama-group", "100"]);
    assert!(out.contains("consumed 100 distinct 100"), "{out}");
    // The group's commits (OffsetCommit v1) stuck: a new run reads only the new records.
    produce(&boot, "old", 100..120);
    let out = run(&bin, &["consume", &boot, "old", "sarama-group", "20"]);
    assert!(out.contains("consumed 20 distinct 20"), "{out}");
    let described = common::cli(&b, &["group", "describe", "sarama-group"]);
    let committed: i64 = described
        .lines()
        .filter(|l| l.starts_with("old"))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<i64>().ok())
        .sum();
    assert_eq!(committed, 120, "{described}");
}

/// Sends one request frame (header v1) and returns the response body after the
/// correlation id.
fn raw(addr: &str, key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut frame = Vec::new();
    frame.extend(key.to_be_bytes());
    frame.extend(version.to_be_bytes());
    frame.extend(7i32.to_be_bytes());
    frame.extend((-1i16).to_be_bytes());
    frame.extend(body);
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(&(frame.len() as i32).to_be_bytes())
        .expect("write");
    s.write_all(&frame).expect("write");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("response length");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).expect("response");
    assert_eq!(resp[..4], 7i32.to_be_bytes(), "correlation id");
    resp[4..].to_vec()
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

#[test]
fn offset_commit_v0_and_v1_create_topics_v0_and_describe_configs_v0_on_the_wire() {
    let b = Broker::start(1);
    common::wire::create_topic(&b, "v0", 1);
    // OffsetCommit v0 (no membership) and v1 (a per-partition timestamp) of one offset:
    // the error code of the one partition in the answer.
    let commit = |version: i16, offset: i64| {
        let mut body = Vec::new();
        string(&mut body, "old-group");
        if version == 1 {
            body.extend((-1i32).to_be_bytes());
            string(&mut body, "");
        }
        body.extend(1i32.to_be_bytes());
        string(&mut body, "v0");
        body.extend(1i32.to_be_bytes());
        body.extend(0i32.to_be_bytes());
        body.extend(offset.to_be_bytes());
        if version == 1 {
            body.extend((-1i64).to_be_bytes());
        }
        string(&mut body, "meta");
        let r = raw(&b.bootstrap(), 8, version, &body);
        // [topics: name "v0", [partition 0, error]]
        assert_eq!(r[..4], 1i32.to_be_bytes());
        assert_eq!(&r[4..8], &[0, 2, b'v', b'0']);
        i16::from_be_bytes([r[16], r[17]])
    };
    assert_eq!(commit(0, 7), 0);
    assert_eq!(commit(1, 9), 0);
    let described = common::cli(&b, &["group", "describe", "old-group"]);
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("v0") && l.split_whitespace().nth(2) == Some("9")),
        "{described}"
    );
    // CreateTopics v0: [name, error] per topic; a second create of the name is refused.
    let create = || {
        let mut body = Vec::new();
        body.extend(1i32.to_be_bytes());
        string(&mut body, "made-v0");
        body.extend(2i32.to_be_bytes());
        body.extend(1i16.to_be_bytes());
        body.extend(0i32.to_be_bytes());
        body.extend(0i32.to_be_bytes());
        body.extend(5000i32.to_be_bytes());
        let r = raw(&b.bootstrap(), 19, 0, &body);
        assert_eq!(r.len(), 4 + 2 + 7 + 2, "v0 has no error message: {r:?}");
        i16::from_be_bytes([r[13], r[14]])
    };
    assert_eq!(create(), 0);
    assert_eq!(create(), 36, "TOPIC_ALREADY_EXISTS");
    // DescribeConfigs v0 of one key: is_default, not a source.
    let mut body = Vec::new();
    body.extend(1i32.to_be_bytes());
    body.push(2);
    string(&mut body, "made-v0");
    body.extend(1i32.to_be_bytes());
    string(&mut body, "cleanup.policy");
    let r = raw(&b.bootstrap(), 32, 0, &body);
    let mut want = Vec::new();
    want.extend(0i32.to_be_bytes());
    want.extend(1i32.to_be_bytes());
    want.extend(0i16.to_be_bytes());
    want.extend((-1i16).to_be_bytes());
    want.push(2);
    string(&mut want, "made-v0");
    want.extend(1i32.to_be_bytes());
    string(&mut want, "cleanup.policy");
    string(&mut want, "delete");
    want.extend([0, 1, 0]);
    assert_eq!(r, want);
}
