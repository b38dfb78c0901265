//! The web console in a real browser: Debian's headless chromium, driven through
//! chromedriver's WebDriver API. Each page loads with no script errors; a message produced
//! through the form is read back by librdkafka; the lag the group page shows equals
//! `shardlog group describe`; screenshots of each page are kept under docs/. Read-only and
//! off modes refuse writes and the page.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::Broker;
use serde_json::{json, Value};

/// One HTTP/1.1 request with a JSON body (or none): (status code, body). The response is
/// read by its Content-Length (or chunks), not to the connection's end: chromedriver keeps
/// connections open.
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let (code, _, body) = http_with(addr, method, path, body, "");
    (code, body)
}

/// Like [`http`], with `extra` header lines (each ending in \r\n): (code, head, body).
fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    extra: &str,
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    // A server may answer (413) and close before taking a large body: the answer counts.
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    // Bounded by the length, the chunk terminator, or the connection's end.
    loop {
        let rest = &buf[head_end..];
        let done = match length {
            Some(n) => rest.len() >= n,
            None if chunked => rest.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let rest = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest
    };
    (code, head, body)
}

struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

impl Browser {
    fn start() -> Browser {
        let port = common::pick_port(1);
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (tests/setup.sh installs chromium-driver)");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": ["--headless=new",
                "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}}}});
        let (code, body) = http(&addr, "POST", "/session", Some(&caps));
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("session")
            .to_string();
        Browser {
            driver,
            addr,
            session,
        }
    }

    fn post(&self, what: &str, body: Value) -> Value {
        let (code, out) = http(
            &self.addr,
            "POST",
            &format!("/session/{}/{what}", self.session),
            Some(&body),
        );
        assert_eq!(code, 200, "{what}: {out}");
        serde_json::from_str::<Value>(&out).expect("json")["value"].clone()
    }

    fn go(&self, url: &str) {
        self.post("url", json!({ "url": url }));
    }

    fn js(&self, script: &str) -> Value {
        self.post("execute/sync", json!({"script": script, "args": []}))
    }

    /// Waits (bounded) until `script` returns true.
    fn wait(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.js(script) != json!(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the page at `hash` to be drawn, then checks it met no script error.
    fn show(&self, base: &str, hash: &str) {
        self.go(&format!("{base}/ui{hash}"));
        self.wait(
            hash,
            &format!("return document.body.dataset.ready === {:?}", hash),
        );
        let errors = self.js("return window.__errors.concat(document.getElementById('error') ? [document.getElementById('error').textContent] : [])");
        assert_eq!(errors, json!([]), "{hash}: script errors");
    }

    fn screenshot(&self, name: &str) {
        let (code, out) = http(
            &self.addr,
            "GET",
            &format!("/session/{}/screenshot", self.session),
            None,
        );
        assert_eq!(code, 200);
        let v: Value = serde_json::from_str(&out).expect("json");
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().expect("base64"))
            .expect("png");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name);
        std::fs::write(&path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            &self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn shardlog(b: &Broker, args: &[&str], input: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardlog"));
    cmd.args(args).args(["--bootstrap", &b.bootstrap()]);
    let (ok, out, err) = common::run_with_input(cmd, input);
    assert!(ok, "{args:?}: {err}");
    out
}

#[test]
fn the_console_in_a_real_browser() {
    // The broker samples group lag every 200 ms here (10 s by default).
    let b = Broker::start_configured(2, "\"ui.lag.sample.interval.ms\" = 200\n", &[]);
    let http_addr = b.metrics_addr().expect("HTTP port");
    let base = format!("http://{http_addr}");
    shardlog(&b, &["topic", "create", "web", "--partitions", "3"], "");
    let input: String = (0..30)
        .map(|i| format!("user{}\t{{\"n\": {i}, \"kind\": \"click\"}}\n", i % 4))
        .collect();
    shardlog(
        &b,
        &["produce", "web", "-K", "\t", "-H", "source=test"],
        &input,
    );
    // A group that read 10 records: lag on the rest.
    shardlog(
        &b,
        &["consume", "web", "--group", "dashboard", "-c", "10"],
        "",
    );

    let br = Browser::start();
    br.show(&base, "#/cluster");
    assert_eq!(
        br.js("return document.getElementById('health').textContent"),
        json!("ok")
    );
    // Bytes per broker (DescribeLogDirs): the topic's 30 records are somewhere.
    let bytes = br.js("return [...document.querySelectorAll('td.bytes')].map(t => Number(t.textContent)).reduce((a, b) => a + b, 0)");
    assert!(bytes.as_i64().is_some_and(|n| n > 0), "{bytes}");
    br.screenshot("console-cluster.png");

    br.show(&base, "#/topics");
    br.wait(
        "the topic listed",
        "return [...document.querySelectorAll('td a')].some(a => a.textContent === 'web')",
    );
    br.screenshot("console-topics.png");

    // A message produced through the form, read back by librdkafka.
    br.show(&base, "#/topic/web");
    let sizes =
        br.js("return [...document.querySelectorAll('td.size')].map(t => Number(t.textContent))");
    let sizes: Vec<i64> = sizes
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    assert!(
        sizes.len() == 3 && sizes.iter().all(|n| *n >= 0),
        "{sizes:?}"
    );
    assert!(sizes.iter().sum::<i64>() > 0, "{sizes:?}");
    br.js("document.getElementById('p-key').value = 'form-key';
           document.getElementById('p-value').value = '{\"from\": \"the form\"}';
           document.getElementById('p-part').value = '1';
           document.getElementById('p-headers').value = 'via=ui';
           document.getElementById('p-send').click(); return true");
    br.wait(
        "the form's answer",
        "return !!document.getElementById('p-ok')",
    );
    let said = br.js("return document.getElementById('p-ok').textContent");
    let offset: i64 = said
        .as_str()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|o| o.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::Message;
        let c: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", b.bootstrap())
            .set("group.id", "ui-check")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset("web", 1, rdkafka::Offset::Offset(offset))
            .expect("offset");
        c.assign(&tpl).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(20);
        let m = loop {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                break m.detach();
            }
            assert!(
                Instant::now() < deadline,
                "librdkafka never read the form's message"
            );
        };
        assert_eq!(m.key(), Some(&b"form-key"[..]));
        assert_eq!(m.payload(), Some(&b"{\"from\": \"the form\"}"[..]));
    }
    // The message view shows it, pretty-printed.
    br.js("document.getElementById('m-part').value = '1'; document.getElementById('m-load').click(); return true");
    br.wait("the message view", "return [...document.querySelectorAll('pre.value')].some(p => p.textContent.includes('\"from\": \"the form\"'))");
    br.screenshot("console-topic.png");

    // The broker kept the group's lag: a page opened now already has a past, so the
    // status is known at once (the group stopped consuming: STALLED).
    let deadline = Instant::now() + Duration::from_secs(20);
    let kept = || {
        let body = http(&http_addr, "GET", "/api/groups/dashboard", None).1;
        serde_json::from_str::<Value>(&body).unwrap_or_default()["history"]
            .as_array()
            .map_or(0, Vec::len)
    };
    while kept() < 3 {
        assert!(Instant::now() < deadline, "no lag history kept");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The lag shown equals group describe's.
    br.show(&base, "#/group/dashboard");
    let past = br.js("return lagHistory['dashboard'].length");
    assert!(past.as_u64().unwrap_or(0) >= 3, "{past}");
    let statuses = br.js(
        "return [...document.querySelectorAll('tr.lag-row')].map(r => r.children[5].textContent)",
    );
    assert!(
        statuses
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == "STALLED")),
        "{statuses} {}",
        br.js("return JSON.stringify(lagHistory['dashboard'])")
    );
    let shown = br.js("return [...document.querySelectorAll('tr.lag-row')].map(r => r.children[0].textContent + '/' + r.children[1].textContent + '=' + r.querySelector('.lag').textContent)");
    let described = shardlog(&b, &["group", "describe", "dashboard"], "");
    let mut want: Vec<String> = described
        .lines()
        .filter(|l| l.starts_with("web\t"))
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            format!("{}/{}={}", c[0], c[1], c[4])
        })
        .collect();
    want.sort();
    let mut got: Vec<String> = shown
        .as_array()
        .expect("rows")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect();
    got.sort();
    assert_eq!(got, want, "{described}");
    assert!(
        got.iter().any(|r| !r.ends_with("=0")),
        "some lag to show: {got:?}"
    );
    br.screenshot("console-group.png");
    let errors = br.js("return window.__errors");
    assert_eq!(errors, json!([]));
}

#[test]
fn read_only_and_off_modes() {
    let ro = Broker::start_configured(1, "ui = \"read-only\"\n", &[]);
    let addr = ro.metrics_addr().expect("HTTP port");
    let (code, _) = http(&addr, "GET", "/ui", None);
    assert_eq!(code, 200);
    let (code, body) = http(&addr, "POST", "/api/topics", Some(&json!({"name": "nope"})));
    assert_eq!(code, 403, "{body}");
    let (code, body) = http(&addr, "GET", "/api/topics", None);
    assert_eq!(code, 200, "{body}");
    // Hostile input: a body over the limit, a bad query, an unknown API.
    let big = json!({"name": "x".repeat(2 << 20)});
    let (code, _) = http(&addr, "POST", "/api/topics", Some(&big));
    assert_eq!(code, 413);
    let (code, body) = http(&addr, "GET", "/api/topics?page=lots", None);
    assert!(code == 400 && body.contains("not a number"), "{body}");
    let (code, _) = http(&addr, "GET", "/api/%ff%fe/../x", None);
    assert_eq!(code, 404);

    let off = Broker::start_configured(1, "ui = \"off\"\n", &[]);
    let addr = off.metrics_addr().expect("HTTP port");
    assert_eq!(http(&addr, "GET", "/ui", None).0, 404);
    assert_eq!(http(&addr, "GET", "/api/cluster", None).0, 404);
    assert_eq!(http(&addr, "GET", "/health", None).0, 200);
}

#[test]
fn with_a_sasl_listener_the_console_logs_in_and_acls_apply() {
    let (b, _) = common::start_with_acls(1);
    // `common::cli` goes to `b.port`: the PLAINTEXT listener, where ANONYMOUS is a super user.
    let cli = |args: &[&str]| common::cli(&b, args);
    cli(&["user", "create", "alice", "--password", "pw-alice"]);
    for t in ["seen", "hidden"] {
        cli(&["topic", "create", t]);
    }
    cli(&[
        "acl",
        "add",
        "--allow-principal",
        "User:alice",
        "--operation",
        "describe",
        "--topic",
        "seen",
    ]);
    let addr = b.metrics_addr().expect("HTTP port");
    let basic = |user: &str, pw: &str| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    };
    // No login, a wrong one: asked to log in (the browser's prompt).
    let (code, head, _) = http_with(&addr, "GET", "/ui", None, "");
    assert_eq!(code, 401);
    assert!(head.contains("www-authenticate: basic"), "{head}");
    assert_eq!(
        http_with(&addr, "GET", "/ui", None, &basic("alice", "nope")).0,
        401
    );
    assert_eq!(
        http_with(&addr, "GET", "/api/topics", None, &basic("alice", "nope")).0,
        401
    );
    // Alice's login: the page, and the topics her ACLs let her describe.
    assert_eq!(
        http_with(&addr, "GET", "/ui", None, &basic("alice", "pw-alice")).0,
        200
    );
    let (code, _, body) = http_with(
        &addr,
        "GET",
        "/api/topics",
        None,
        &basic("alice", "pw-alice"),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"seen\"") && !body.contains("hidden"),
        "{body}"
    );
}
