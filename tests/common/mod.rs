//! Test harness: runs the real `shardlog` binary on free ports with a temporary data dir.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Broker {
    pub port: u16,
    pub cores: usize,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub log: PathBuf,
    extra: Vec<String>,
    /// `ulimit -n` for the broker process.
    pub nofile: Option<u64>,
    /// The address it listens on (127.0.0.1 unless started in a network namespace).
    pub host: String,
    /// A command the broker is started through (e.g. `ip netns exec NAME`).
    wrap: Vec<String>,
}

fn ports_free(base: u16, n: usize) -> bool {
    (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i as u16)).is_ok())
}

/// `n` consecutive free ports for a broker's shards, in 20000–49999.
pub fn pick_port(n: usize) -> u16 {
    pick_port_in(20_000, 30_000, n)
}

/// A free port for a controller listener, in 10000–19999: apart from the brokers' range and
/// below the kernel's ephemeral ports, so nothing started later can take it before its node
/// binds it.
pub fn pick_controller_port() -> u16 {
    pick_port_in(10_000, 10_000, 1)
}

fn pick_port_in(low: u16, span: u16, n: usize) -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    let mut x = seed | 1;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = low + (x % u64::from(span)) as u16;
        if ports_free(base, n) {
            return base;
        }
    }
    panic!("no free ports");
}

impl Broker {
    pub fn start(cores: usize) -> Broker {
        Self::start_with(cores, &[])
    }

    pub fn start_with(cores: usize, extra: &[&str]) -> Broker {
        Self::start_configured(cores, "", extra)
    }

    /// Like [`Broker::start_with`], with `toml` as the broker's `--config` file (settings
    /// that have no flag; Kafka's key names).
    pub fn start_configured(cores: usize, toml: &str, extra: &[&str]) -> Broker {
        Self::start_limited(cores, toml, extra, None)
    }

    /// Like [`Broker::start_configured`], with the broker's open file limit (soft and hard,
    /// as `ulimit -n`) set to `nofile` (kept for restarts).
    pub fn start_limited(cores: usize, toml: &str, extra: &[&str], nofile: Option<u64>) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("broker.log");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !toml.is_empty() {
            let path = dir.path().join("shardlog.toml");
            std::fs::write(&path, toml).expect("write config");
            extra.extend(["--config".to_string(), path.display().to_string()]);
        }
        let mut b = Broker {
            port: 0,
            host: "127.0.0.1".to_string(),
            wrap: Vec::new(),
            cores,
            dir,
            child: None,
            log,
            extra,
            nofile,
        };
        b.launch();
        b
    }

    /// Starts a broker listening on `host` (its Kafka, metrics and, in `toml`, controller
    /// listeners), started through `wrap` (e.g. `ip netns exec NAME`) if not empty.
    pub fn start_at(host: &str, wrap: &[&str], cores: usize, toml: &str) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("broker.log");
        let path = dir.path().join("shardlog.toml");
        std::fs::write(&path, toml).expect("write config");
        let metrics = format!("{host}:0");
        let mut b = Broker {
            port: 0,
            cores,
            dir,
            child: None,
            log,
            extra: vec![
                "--config".to_string(),
                path.display().to_string(),
                "--metrics-listen".to_string(),
                metrics,
            ],
            nofile: None,
            host: host.to_string(),
            wrap: wrap.iter().map(|s| s.to_string()).collect(),
        };
        b.launch();
        b
    }

    /// The data directory: `--data-dir` from the extra arguments, else one in the temp dir.
    pub fn data_dir(&self) -> PathBuf {
        self.extra
            .iter()
            .position(|a| a == "--data-dir")
            .and_then(|i| self.extra.get(i + 1))
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    fn launch(&mut self) {
        for _attempt in 0..5 {
            if self.port == 0 || !ports_free(self.port, self.cores) {
                self.port = pick_port(self.cores);
            }
            let mut cmd = match self.wrap.split_first() {
                Some((first, rest)) => {
                    let mut c = Command::new(first);
                    c.args(rest).arg(env!("CARGO_BIN_EXE_shardlog"));
                    c
                }
                None => Command::new(env!("CARGO_BIN_EXE_shardlog")),
            };
            if let Some(n) = self.nofile {
                limit_nofile(&mut cmd, n);
            }
            let mut child = cmd
                .args(["serve", "--listen"])
                .arg(format!("{}:{}", self.host, self.port))
                .args(if self.extra.iter().any(|a| a == "--data-dir") {
                    Vec::new()
                } else {
                    vec![
                        "--data-dir".to_string(),
                        self.data_dir().display().to_string(),
                    ]
                })
                .args(["--cores", &self.cores.to_string()])
                .args(if self.extra.iter().any(|a| a == "--metrics-listen") {
                    &[][..]
                } else {
                    &["--metrics-listen", "127.0.0.1:0"][..]
                })
                .args(&self.extra)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn shardlog");
            let stderr = child.stderr.take().expect("stderr");
            let (tx, rx) = mpsc::channel();
            let log_path = self.log.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log_path)
                    .expect("log file");
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = writeln!(out, "{line}");
                    if line.contains("listening on") {
                        let _ = tx.send(true);
                    }
                }
                let _ = tx.send(false);
            });
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(true) => {
                    self.child = Some(child);
                    return;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.port = 0;
                }
            }
        }
        panic!("broker did not start; log:\n{}", self.log_text());
    }

    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The broker's log so far. Lines reach the file through a copying thread, after the
    /// broker wrote them: this waits (up to 2 s) until the file stops growing for 100 ms, so
    /// a line logged before a response the test has already read is there.
    pub fn log_text(&self) -> String {
        let size = || std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut last = size();
        while std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = size();
            if now == last {
                break;
            }
            last = now;
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let status = c.wait().expect("wait");
            assert!(
                status.success(),
                "broker exit status {status}; log:\n{}",
                self.log_text()
            );
        }
    }

    /// SIGKILL, no clean shutdown.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn start_again(&mut self) {
        self.launch();
    }

    /// The metrics address the broker logged at startup.
    pub fn metrics_addr(&self) -> Option<String> {
        self.log_text()
            .lines()
            .rev()
            .find_map(|l| {
                l.split("metrics on http://")
                    .nth(1)
                    .or_else(|| l.split("metrics on https://").nth(1))
            })
            .map(|rest| rest.trim_end_matches("/metrics").trim().to_string())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A librdkafka consumer assigned to `partitions` of `topic` from their beginning (no group
/// membership, no commits).
pub fn reader(
    b: &Broker,
    topic: &str,
    partitions: std::ops::Range<i32>,
) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// Sets the open file limit (soft and hard, as `ulimit -n`) of the process `cmd` starts.
pub fn limit_nofile(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `n` node processes of `cores` shards each forming one cluster (every node a voter of
/// the metadata quorum, node ids 1..=n), with a 3 s session timeout.
#[allow(dead_code)]
pub fn start_cluster(n: usize, cores: usize) -> Vec<Broker> {
    start_cluster_with_voters(n, cores).0
}

/// The settings of node `id` of a test cluster (3 s session timeout).
#[allow(dead_code)]
pub fn node_toml(id: u64, voters: &str) -> String {
    format!(
        "\"node.id\" = {id}\n\"controller.quorum.voters\" = \"{voters}\"\n\"broker.session.timeout.ms\" = 3000\n\"broker.heartbeat.interval.ms\" = 500\n\"controller.quorum.election.timeout.ms\" = 500\n"
    )
}

/// [`start_cluster`], and its `controller.quorum.voters` for nodes started later.
#[allow(dead_code)]
pub fn start_cluster_with_voters(n: usize, cores: usize) -> (Vec<Broker>, String) {
    start_cluster_configured(n, cores, "")
}

/// [`start_cluster_with_voters`], with `extra` settings (TOML lines) on every node.
#[allow(dead_code)]
pub fn start_cluster_configured(n: usize, cores: usize, extra: &str) -> (Vec<Broker>, String) {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    // Bounded: a repeat is rare and the next pick is random.
    while ports.len() < n {
        let p = pick_controller_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let voters: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect();
    let voters = voters.join(",");
    let nodes: Vec<Broker> = (0..n)
        .map(|i| {
            // A key in `extra` replaces the default line for it.
            let keys: Vec<&str> = extra.lines().filter_map(|l| l.split('=').next()).collect();
            let base: String = node_toml(i as u64 + 1, &voters)
                .lines()
                .filter(|l| !keys.iter().any(|k| l.starts_with(k.trim_end())))
                .map(|l| format!("{l}\n"))
                .collect();
            Broker::start_configured(cores, &format!("{base}{extra}"), &[])
        })
        .collect();
    wait_cluster_formed(&nodes);
    (nodes, voters)
}

/// Waits (bounded) until every node sees all of them registered and live, and a controller.
#[allow(dead_code)]
pub fn wait_cluster_formed(nodes: &[Broker]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Bounded by the deadline.
    while std::time::Instant::now() < deadline {
        let formed = nodes.iter().all(|b| {
            let Some(addr) = b.metrics_addr() else {
                return false;
            };
            let v: serde_json::Value =
                serde_json::from_str(&http_get(&addr, "/v1/cluster").1).unwrap_or_default();
            let all = v["image"]["nodes"].as_object().is_some_and(|m| {
                m.len() == nodes.len() && m.values().all(|n| n["fenced"] == false)
            });
            all && v["controller"].is_u64()
        });
        if formed {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the cluster did not form within 30 s");
}

/// Runs `shardlog ARGS --bootstrap <b>`, asserts it succeeded, returns its stdout.
pub fn cli(b: &Broker, args: &[&str]) -> String {
    let mut all = args.to_vec();
    let bootstrap = b.bootstrap();
    all.extend(["--bootstrap", &bootstrap]);
    shardlog(&all)
}

/// Runs `shardlog ARGS`: (success, stdout, stderr).
#[allow(dead_code)]
pub fn shardlog_try(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(args)
        .output()
        .expect("run cli");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Runs `shardlog ARGS`, asserts it succeeded, returns its stdout.
pub fn shardlog(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(args)
        .output()
        .expect("run cli");
    assert!(
        out.status.success(),
        "shardlog {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// GET `path` from an HTTP server: (status line, body).
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("http response");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the first Prometheus sample whose name and labels start with `prefix`.
pub fn metric_sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Resident memory of a process, in bytes (from /proc).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// `len` bytes of lowercase words and spaces from a fixed-seed generator: text-like values
/// that compress about 2:1, for benchmarks of compressed batches.
pub fn text_bytes(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 32 {
                0..=4 => b' ',
                n => b'a' + (n % 12) as u8,
            }
        })
        .collect()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A valid uncompressed magic-2 record batch of `values`, with null keys.
pub fn record_batch(values: &[&[u8]], timestamp: i64) -> Vec<u8> {
    producer_batch(values, timestamp, -1, -1, -1)
}

/// Like [`record_batch`], from an idempotent producer.
pub fn producer_batch(
    values: &[&[u8]],
    timestamp: i64,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
) -> Vec<u8> {
    let records: Vec<_> = values.iter().map(|v| (None, Some(*v))).collect();
    shardlog::log::records::build_producer_batch(
        &records,
        timestamp,
        producer_id,
        epoch,
        base_sequence,
    )
}

/// Wire-level helpers: raw requests through the admin client.
#[allow(dead_code)]
pub mod certs;
pub mod cluster;
pub mod java;
pub mod txn;

pub mod wire {
    use bytes::Bytes;
    use kafka_protocol::messages::produce_request::{
        PartitionProduceData, ProduceRequest, TopicProduceData,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    use shardlog::admin::client::Client;

    pub fn name(s: &str) -> TopicName {
        TopicName(StrBytes::from_string(s.to_string()))
    }

    /// Creates a topic with the `shardlog topic create` command.
    pub fn create_topic(b: &super::Broker, topic: &str, partitions: i32) {
        create_topic_with(b, topic, partitions, &[]);
    }

    /// Like [`create_topic`], with topic configs (`KEY=VALUE`).
    pub fn create_topic_with(b: &super::Broker, topic: &str, partitions: i32, configs: &[&str]) {
        let parts = partitions.to_string();
        let mut args = vec!["topic", "create", topic, "--partitions", &parts];
        args.extend(configs.iter().flat_map(|c| ["--config", *c]));
        super::cli(b, &args);
    }

    /// Produce v9, acks=all, one partition: (error code, base offset).
    pub fn produce(c: &mut Client, topic: &str, partition: i32, records: Vec<u8>) -> (i16, i64) {
        try_produce(c, topic, partition, records).expect("produce")
    }

    /// Like [`produce`], with connection errors returned instead of panicking.
    pub fn try_produce(
        c: &mut Client,
        topic: &str,
        partition: i32,
        records: Vec<u8>,
    ) -> anyhow::Result<(i16, i64)> {
        let mut p = PartitionProduceData::default();
        p.index = partition;
        p.records = Some(Bytes::from(records));
        let mut t = TopicProduceData::default();
        t.name = name(topic);
        t.partition_data = vec![p];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 10_000;
        req.topic_data = vec![t];
        let resp = c.call(&req, 9)?;
        let pr = &resp.responses[0].partition_responses[0];
        Ok((pr.error_code, pr.base_offset))
    }

    /// Fetch v11 of one partition, long-polling up to `wait_ms`: (error code, records).
    pub fn fetch(
        c: &mut Client,
        topic: &str,
        partition: i32,
        offset: i64,
        wait_ms: i32,
    ) -> (i16, Bytes) {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
        let mut fp = FetchPartition::default();
        fp.partition = partition;
        fp.fetch_offset = offset;
        fp.partition_max_bytes = 1 << 20;
        let mut ft = FetchTopic::default();
        ft.topic = name(topic);
        ft.partitions = vec![fp];
        let mut req = FetchRequest::default();
        req.replica_id = kafka_protocol::messages::BrokerId(-1);
        req.max_wait_ms = wait_ms;
        req.min_bytes = 1;
        req.max_bytes = 50 << 20;
        req.topics = vec![ft];
        let resp = c.call(&req, 11).expect("fetch");
        let pd = &resp.responses[0].partitions[0];
        (pd.error_code, pd.records.clone().unwrap_or_default())
    }

    /// The latest offset (high watermark) of a partition.
    pub fn latest(c: &mut Client, topic: &str, partition: i32) -> i64 {
        shardlog::admin::topic::list_offset(c, topic, partition, -1)
            .expect("list offsets")
            .1
    }
}

/// Runs `cmd` with `input` on its standard input: (success, stdout, stderr).
pub fn run_with_input(mut cmd: Command, input: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A broker with ACLs on: a PLAINTEXT listener where ANONYMOUS is a super user (for the
/// test's own admin commands; `port` points there) and a SASL_PLAINTEXT one (PLAIN and
/// SCRAM-SHA-512) for the users under test: the broker and the SASL port.
pub fn start_with_acls(cores: usize) -> (Broker, u16) {
    let base = pick_port(4);
    let (plain, sasl) = (base, base + 2);
    let toml = format!(
        r#"listeners = "PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"
"sasl.enabled.mechanisms" = "PLAIN,SCRAM-SHA-512"
"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
"super.users" = "User:ANONYMOUS"
"#
    );
    let mut b = Broker::start_configured(cores, &toml, &[]);
    b.port = plain;
    (b, sasl)
}
