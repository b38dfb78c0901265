//! What a hostile or careless client can hold of the broker: memory through size prefixes,
//! the request budget, connections (in all and per address), idle connections, and the
//! accept loop when file descriptors run out.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use shardlog::admin::client::Client;

use common::wire::{create_topic, produce};
use common::{http_get, metric_sample, record_batch, rss_bytes, Broker};

/// True if the peer closes `s` within `within` (EOF or reset); false if it stays open.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A connection that announced a `size`-byte frame and sent `sent` bytes of it.
fn trickler(addr: &str, size: i32, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&size.to_be_bytes()).expect("size");
    s.write_all(&vec![0u8; sent]).expect("bytes");
    s
}

fn metrics(b: &Broker) -> String {
    http_get(&b.metrics_addr().expect("metrics address"), "/metrics").1
}

#[test]
fn size_prefixes_pin_no_memory_and_the_budget_applies_back_pressure() {
    let b = Broker::start(1);
    create_topic(&b, "mem", 1);
    let pid = b.pid().expect("pid");
    let mut good = Client::connect(&b.bootstrap()).expect("connect");
    assert_eq!(
        produce(&mut good, "mem", 0, record_batch(&[b"warm"], 1)).0,
        0
    );
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = rss_bytes(pid);
    // 20 connections announce 100 MiB frames and send 1 KiB each.
    let hostile: Vec<TcpStream> = (0..20)
        .map(|_| trickler(&b.bootstrap(), 100 << 20, 1024))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let grew = rss_bytes(pid).saturating_sub(rss0);
    assert!(
        grew < 64 << 20,
        "20 announced 100 MiB frames grew the broker by {} MiB",
        grew >> 20
    );
    // The default budget (256 MiB per shard) is reserved by the first two; a small request
    // still fits beside them.
    let m = metrics(&b);
    let reserved = metric_sample(&m, "shardlog_shard_request_bytes_reserved{shard=\"0\"}")
        .expect("reserved gauge");
    assert!(
        (200.0 * 1048576.0..=256.0 * 1048576.0).contains(&reserved),
        "{reserved}"
    );
    assert_eq!(
        produce(&mut good, "mem", 0, record_batch(&[b"still"], 1)).0,
        0
    );
    drop(hostile);
    // Once they hang up their reservations return.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(&b);
        let r = metric_sample(&m, "shardlog_shard_request_bytes_reserved{shard=\"0\"}");
        if r == Some(0.0) || Instant::now() > deadline {
            assert_eq!(r, Some(0.0), "reservations returned");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stalled_frame_holds_the_budget_until_the_idle_timeout() {
    // Budget = one 1 MiB frame; an idle timeout of 3 s.
    let b = Broker::start_configured(
        1,
        "\"socket.request.max.bytes\" = 1048576\n\"queued.max.request.bytes\" = 1048576\n\"connections.max.idle.ms\" = 3000\n",
        &[],
    );
    create_topic(&b, "bp", 1);
    let mut stalled = trickler(&b.bootstrap(), 1 << 20, 100);
    std::thread::sleep(Duration::from_millis(300));
    // A producer now waits for the budget (back-pressure), and gets through once the stalled
    // connection is closed for idleness.
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let started = Instant::now();
    assert_eq!(
        produce(&mut c, "bp", 0, record_batch(&[b"waited"], 1)),
        (0, 0)
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "produce did not wait for the budget: {waited:?}"
    );
    assert!(
        closed_within(&mut stalled, Duration::from_secs(5)),
        "stalled frame closed"
    );
    let m = metrics(&b);
    assert!(
        metric_sample(&m, "shardlog_shard_request_budget_waits_total{shard=\"0\"}")
            .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    // An idle connection is closed too; one that keeps talking is not.
    let mut idle = TcpStream::connect(b.bootstrap()).expect("connect");
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(produce(&mut c, "bp", 0, record_batch(&[b"busy"], 1)).0, 0);
    }
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)),
        "idle closed"
    );
    let m = metrics(&b);
    assert!(
        metric_sample(
            &m,
            "shardlog_shard_idle_connections_closed_total{shard=\"0\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    assert!(
        b.log_text().contains("no bytes of a request frame"),
        "stall logged"
    );
}

#[test]
fn connections_are_limited_per_address_and_refusals_logged_once() {
    let b = Broker::start_configured(1, "\"max.connections.per.ip\" = 5\n", &[]);
    create_topic(&b, "conns", 1);
    // The CLI's connection must be gone (its slot given back) before the count starts.
    std::thread::sleep(Duration::from_millis(300));
    let mut held: Vec<Client> = (0..4)
        .map(|_| Client::connect(&b.bootstrap()).expect("connect"))
        .collect();
    // The metrics scrapes below use the HTTP port, which has its own count.
    let fifth = TcpStream::connect(b.bootstrap()).expect("connect");
    for _ in 0..50 {
        let mut s = TcpStream::connect(b.bootstrap()).expect("tcp connect");
        assert!(
            closed_within(&mut s, Duration::from_secs(5)),
            "sixth refused"
        );
    }
    for c in &mut held {
        assert_eq!(produce(c, "conns", 0, record_batch(&[b"ok"], 1)).0, 0);
    }
    let m = metrics(&b);
    assert_eq!(
        metric_sample(&m, "shardlog_connections_refused_total{listener=\"kafka\"}"),
        Some(50.0),
        "{m}"
    );
    let log = b.log_text();
    assert_eq!(
        log.matches("connection refused: limit reached").count(),
        1,
        "refusals are logged once per interval: {log}"
    );
    assert!(log.contains("max.connections.per.ip"), "{log}");
    // A slot is given back when its connection closes.
    drop(fifth);
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(300));
    let mut again = Client::connect(&b.bootstrap()).expect("connect");
    assert_eq!(
        produce(&mut again, "conns", 0, record_batch(&[b"ok"], 1)).0,
        0
    );

    // The HTTP port: five held connections, the sixth is closed at once.
    let addr = b.metrics_addr().expect("metrics");
    let held_http: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(&addr).expect("http connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut sixth = TcpStream::connect(&addr).expect("http connect");
    assert!(
        closed_within(&mut sixth, Duration::from_secs(5)),
        "HTTP limit"
    );
    drop(held_http);
}

#[test]
fn running_out_of_file_descriptors_does_not_spin_the_accept_loop() {
    let b = Broker::start(1);
    let pid = b.pid().expect("pid") as i32;
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open_fds + 5,
        rlim_max: open_fds + 5,
    };
    // SAFETY: prlimit on our own child with a valid rlimit.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit");
    let before = b.log_text().matches("accept failed").count();
    let conns: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(b.bootstrap()).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let lines = b.log_text().matches("accept failed").count() - before;
    assert!(
        (1..=2).contains(&lines),
        "{lines} accept-failure lines in 3 s:\n{}",
        b.log_text()
    );
    drop(conns);
}

#[test]
fn fetch_max_bytes_caps_what_a_client_asks_for() {
    let b = Broker::start_configured(1, "\"fetch.max.bytes\" = 100000\n", &[]);
    create_topic(&b, "big", 1);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let value = vec![b'v'; 20_000];
    for _ in 0..20 {
        assert_eq!(produce(&mut c, "big", 0, record_batch(&[&value], 1)).0, 0);
    }
    // The client asks for 50 MiB (1 MiB for the partition): it gets at most 100,000 bytes.
    let (err, records) = common::wire::fetch(&mut c, "big", 0, 0, 0);
    assert_eq!(err, 0);
    assert!(
        (20_000..=100_000).contains(&records.len()),
        "{} bytes",
        records.len()
    );
}

#[test]
fn a_harness_environment_and_a_pipe_suit_the_broker() {
    // A script's own SHARDLOG_* variables (not settings) do not stop the broker.
    // SAFETY (edition 2021: safe): nextest runs each test in its own process.
    std::env::set_var("SHARDLOG_BIN", "/usr/local/bin/shardlog");
    std::env::set_var("SHARDLOG_CRASH_ROUNDS", "3");
    let b = Broker::start(1);
    std::env::remove_var("SHARDLOG_BIN");
    std::env::remove_var("SHARDLOG_CRASH_ROUNDS");
    let log = b.log_text();
    assert!(
        log.contains("ignoring environment variable SHARDLOG_BIN"),
        "{log}"
    );
    assert!(log.contains("SHARDLOG_CRASH_ROUNDS"), "{log}");
    // stderr is a pipe here: no ANSI colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log: {log:?}"
    );
    // The documented shard metrics are exported.
    let m = metrics(&b);
    for name in [
        "shardlog_shard_fsyncs_total{shard=\"0\"}",
        "shardlog_shard_buffer_bytes{shard=\"0\"}",
        "shardlog_storage_low_space",
        "shardlog_shard_open_log_files{shard=\"0\"}",
    ] {
        assert!(metric_sample(&m, name).is_some(), "{name} missing:\n{m}");
    }
}
