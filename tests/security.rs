//! Security against the real broker with real clients: TLS (server and client certificates),
//! SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512 over SASL_SSL with kcat (librdkafka) and
//! confluent-kafka, users made with `shardlog user`, refusals (wrong password, unknown user,
//! requests before authentication, an unknown mechanism, plaintext or garbage on a TLS port,
//! too many failures from one address), credentials kept across a restart, and the
//! certificate reloaded on SIGHUP.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::certs;
use kafka_protocol::messages::{MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rcgen::DnType;
use shardlog::admin::client::Client;

struct Setup {
    broker: common::Broker,
    dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    client_cert: (std::path::PathBuf, std::path::PathBuf),
    sasl_ssl: u16,
    ssl: u16,
    sasl_plain: u16,
}

/// A CA and the broker's keystore it issued (for localhost and 127.0.0.1).
fn broker_keystore(dir: &std::path::Path) -> (certs::Ca, std::path::PathBuf) {
    let ca = certs::ca(dir);
    let (_, _, keystore) = ca.issue(
        dir,
        "broker",
        &["localhost", "127.0.0.1"],
        &[(DnType::CommonName, "localhost")],
    );
    (ca, keystore)
}

fn start(extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let (ca, keystore) = broker_keystore(dir.path());
    let (cc, ck, _) = ca.issue(
        dir.path(),
        "bob",
        &[],
        &[
            (DnType::OrganizationName, "Example"),
            (DnType::CommonName, "bob"),
        ],
    );
    // Each listener takes one port per shard (2 shards).
    let base = common::pick_port(8);
    let (plain, sasl_ssl, ssl, sasl_plain) = (base, base + 2, base + 4, base + 6);
    let toml = format!(
        r#"listeners = "PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{sasl_ssl},SSL://127.0.0.1:{ssl},SASL_PLAINTEXT://127.0.0.1:{sasl_plain}"
"ssl.keystore.location" = "{}"
"ssl.truststore.location" = "{}"
"ssl.client.auth" = "requested"
"sasl.enabled.mechanisms" = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
"connection.failed.authentication.delay.ms" = "20"
{extra}
"#,
        keystore.display(),
        ca.pem.display()
    );
    let mut broker = common::Broker::start_configured(2, &toml, &[]);
    broker.port = plain;
    Setup {
        broker,
        ca: ca.pem.clone(),
        client_cert: (cc, ck),
        dir,
        sasl_ssl,
        ssl,
        sasl_plain,
    }
}

/// Runs kcat with `args`, `input` on stdin; (success, stdout, stderr).
fn kcat(args: &[String], input: &str) -> (bool, String, String) {
    let mut cmd = Command::new("timeout");
    cmd.arg("30").arg("kcat").args(args);
    // Cargo's library path would load the test build's librdkafka (built without TLS).
    cmd.env_remove("LD_LIBRARY_PATH");
    common::run_with_input(cmd, input)
}

fn sasl_args(s: &Setup, mech: &str, user: &str, password: &str) -> Vec<String> {
    [
        "-b",
        &format!("127.0.0.1:{}", s.sasl_ssl),
        "-X",
        "security.protocol=SASL_SSL",
        "-X",
        &format!("sasl.mechanisms={mech}"),
        "-X",
        &format!("sasl.username={user}"),
        "-X",
        &format!("sasl.password={password}"),
        "-X",
        &format!("ssl.ca.location={}", s.ca.display()),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

fn with(mut base: Vec<String>, more: &[&str]) -> Vec<String> {
    base.extend(more.iter().map(|s| s.to_string()));
    base
}

fn consume_all(args: Vec<String>, topic: &str) -> Vec<String> {
    let (ok, out, err) = kcat(
        &with(args, &["-C", "-t", topic, "-e", "-q", "-f", "%s\n"]),
        "",
    );
    assert!(ok, "consume failed: {err}");
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// confluent-kafka (librdkafka 2.x, with TLS and SASL) produces ten values with `prefix` to
/// `topic` with the client settings `conf` (JSON), then reads them back in a group; prints
/// how many it read back.
fn confluent_round_trip(conf: serde_json::Value, topic: &str, prefix: &str) -> String {
    let script = r#"
import json, sys
from confluent_kafka import Producer, Consumer
conf, topic, prefix = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
p = Producer(conf)
for i in range(10):
    p.produce(topic, value=prefix + b"%d" % i)
assert p.flush(20) == 0
c = Consumer(dict(conf, **{"group.id": "py-" + sys.argv[3], "auto.offset.reset": "earliest"}))
c.subscribe([topic])
seen = set()
for _ in range(200):
    m = c.poll(0.5)
    if m is not None and m.error() is None and m.value().startswith(prefix):
        seen.add(m.value())
    if len(seen) == 10:
        break
c.close()
print(len(seen))
"#;
    let out = Command::new("python3")
        .env_remove("LD_LIBRARY_PATH")
        .args(["-c", script, &conf.to_string(), topic, prefix])
        .output()
        .expect("python3");
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if got != "10" {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    got
}

#[test]
fn clients_authenticate_with_tls_and_sasl_and_bad_ones_are_refused() {
    let mut s = start("");
    let b = s.broker.bootstrap();
    common::shardlog(&[
        "user",
        "create",
        "alice",
        "--password",
        "alice-secret",
        "--bootstrap",
        &b,
    ]);
    let listed = common::shardlog(&["user", "list", "--bootstrap", &b]);
    assert!(
        listed.contains("alice") && listed.contains("SCRAM-SHA-512 (8192 iterations)"),
        "{listed}"
    );
    common::shardlog(&[
        "topic",
        "create",
        "secure",
        "--partitions",
        "2",
        "--bootstrap",
        &b,
    ]);

    // Every mechanism over SASL_SSL, with kcat (librdkafka).
    for mech in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let (ok, _, err) = kcat(
            &with(
                sasl_args(&s, mech, "alice", "alice-secret"),
                &["-P", "-t", "secure"],
            ),
            &format!("{mech}-1\n{mech}-2\n"),
        );
        assert!(ok, "{mech}: {err}");
    }
    let got = consume_all(
        sasl_args(&s, "SCRAM-SHA-512", "alice", "alice-secret"),
        "secure",
    );
    assert_eq!(
        got,
        [
            "PLAIN-1",
            "PLAIN-2",
            "SCRAM-SHA-256-1",
            "SCRAM-SHA-256-2",
            "SCRAM-SHA-512-1",
            "SCRAM-SHA-512-2"
        ]
    );

    // confluent-kafka with SASL_SSL + SCRAM-SHA-512: produce and read back.
    let conf = serde_json::json!({
        "bootstrap.servers": format!("127.0.0.1:{}", s.sasl_ssl),
        "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "alice", "sasl.password": "alice-secret",
        "ssl.ca.location": s.ca.display().to_string(),
    });
    assert_eq!(confluent_round_trip(conf, "secure", "py-"), "10");

    // The admin CLI with Kafka's client properties (--command-config): SASL_SSL, the
    // credentials in a JAAS line as the Java tools take them; and mTLS with a PEM keystore.
    let props = s.dir.path().join("client.properties");
    std::fs::write(
        &props,
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"alice-secret\";\nssl.truststore.type=PEM\nssl.truststore.location={}\n",
            s.ca.display()
        ),
    )
    .expect("props");
    let sasl_ssl_addr = format!("127.0.0.1:{}", s.sasl_ssl);
    let listed = common::shardlog(&[
        "--command-config",
        &props.display().to_string(),
        "topic",
        "describe",
        "secure",
        "--bootstrap",
        &sasl_ssl_addr,
    ]);
    assert!(listed.contains("secure"), "{listed}");
    // The load generator takes the same file: a short run over SASL_SSL.
    let json = s.dir.path().join("lg.json");
    let out = Command::new(env!("CARGO_BIN_EXE_shardlog-loadgen"))
        .args(["--bootstrap", &sasl_ssl_addr, "--quiet", "--command-config"])
        .arg(&props)
        .args([
            "--topic",
            "secure",
            "--duration",
            "1",
            "--rate",
            "2000",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("loadgen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("json");
    assert!(
        report["run"]["acked"].as_u64().unwrap_or(0) > 1000,
        "{report}"
    );
    let mtls_props = s.dir.path().join("mtls.properties");
    std::fs::write(
        &mtls_props,
        format!(
            "security.protocol=SSL\nssl.ca.location={}\nssl.certificate.location={}\nssl.key.location={}\n",
            s.ca.display(),
            s.client_cert.0.display(),
            s.client_cert.1.display()
        ),
    )
    .expect("props");
    let users = common::shardlog(&[
        "--command-config",
        &mtls_props.display().to_string(),
        "user",
        "list",
        "--bootstrap",
        &format!("127.0.0.1:{}", s.ssl),
    ]);
    assert!(users.contains("alice"), "{users}");
    let bad = s.dir.path().join("bad.properties");
    std::fs::write(
        &bad,
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=alice\nsasl.password=nope\nssl.ca.location={}\n",
            s.ca.display()
        ),
    )
    .expect("props");
    let (ok, _, err) = common::shardlog_try(&[
        "--command-config",
        &bad.display().to_string(),
        "topic",
        "list",
        "--bootstrap",
        &sasl_ssl_addr,
    ]);
    assert!(!ok && err.contains("Authentication failed"), "{err}");

    // Mutual TLS: a client certificate on the SSL listener.
    let mtls: Vec<String> = [
        "-b",
        &format!("127.0.0.1:{}", s.ssl),
        "-X",
        "security.protocol=SSL",
        "-X",
        &format!("ssl.ca.location={}", s.ca.display()),
        "-X",
        &format!("ssl.certificate.location={}", s.client_cert.0.display()),
        "-X",
        &format!("ssl.key.location={}", s.client_cert.1.display()),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let (ok, _, err) = kcat(&with(mtls.clone(), &["-P", "-t", "secure"]), "mtls\n");
    assert!(ok, "mTLS produce: {err}");
    assert!(consume_all(mtls, "secure").contains(&"mtls".to_string()));

    // A wrong password and an unknown user are refused, logged with the client address.
    for (user, pw) in [("alice", "guess"), ("mallory", "alice-secret")] {
        let (ok, _, err) = kcat(&with(sasl_args(&s, "SCRAM-SHA-512", user, pw), &["-L"]), "");
        assert!(
            !ok && err.contains("Authentication failed"),
            "{user}: {err}"
        );
    }
    let (ok, _, err) = kcat(&with(sasl_args(&s, "PLAIN", "alice", "guess"), &["-L"]), "");
    assert!(!ok && err.contains("Authentication failed"), "PLAIN: {err}");
    let log = s.broker.log_text();
    assert!(
        log.contains("SASL authentication failed") && log.contains("peer=127.0.0.1:"),
        "{log}"
    );
    let metrics = common::http_get(&s.broker.metrics_addr().expect("metrics"), "/metrics").1;
    let failures: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("shardlog_shard_authentication_failures_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(failures >= 3.0, "{failures}");

    // The SASL exchange by hand, on the SASL_PLAINTEXT listener.
    let addr = format!("127.0.0.1:{}", s.sasl_plain);
    // A request before authenticating closes the connection.
    let mut c = Client::connect(&addr).expect("connect");
    assert!(c.call(&MetadataRequest::default(), 9).is_err());
    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM (33) with the enabled ones.
    let mut c = Client::connect(&addr).expect("connect");
    let r = c
        .call(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI")),
            1,
        )
        .expect("handshake");
    assert_eq!(r.error_code, 33);
    assert_eq!(r.mechanisms.len(), 3);
    // PLAIN with the right password, then requests are served.
    let mut c = Client::connect(&addr).expect("connect");
    let r = c
        .call(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
            1,
        )
        .expect("handshake");
    assert_eq!(r.error_code, 0);
    let r = c
        .call(
            &SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"\0alice\0alice-secret")),
            2,
        )
        .expect("authenticate");
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert!(c.call(&MetadataRequest::default(), 9).is_ok());
    // A wrong password: SASL_AUTHENTICATION_FAILED (58), then the connection closes.
    let mut c = Client::connect(&addr).expect("connect");
    c.call(
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        1,
    )
    .expect("handshake");
    let r = c
        .call(
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0alice\0no")),
            2,
        )
        .expect("authenticate");
    assert_eq!(r.error_code, 58);
    assert!(c.call(&MetadataRequest::default(), 9).is_err());

    // SaslHandshake v0: the tokens follow as raw frames, without a Kafka header.
    {
        use shardlog::admin::client::{decode_response, encode_request, response_len};
        use std::io::Read;
        let mut t = std::net::TcpStream::connect(&addr).expect("connect");
        t.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        t.write_all(&encode_request(&hs, 0, 1, "t").expect("encode"))
            .expect("write");
        let read_frame = |t: &mut std::net::TcpStream| {
            let mut len = [0u8; 4];
            t.read_exact(&mut len).expect("length");
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            t.read_exact(&mut body).expect("body");
            body
        };
        let mut len = [0u8; 4];
        t.read_exact(&mut len).expect("length");
        let mut body = vec![0u8; response_len(len).expect("len")];
        t.read_exact(&mut body).expect("body");
        let r = decode_response::<SaslHandshakeRequest>(Bytes::from(body), 0, 1).expect("decode");
        assert_eq!(r.error_code, 0);
        let token = b"\0alice\0alice-secret";
        t.write_all(&(token.len() as u32).to_be_bytes())
            .expect("write");
        t.write_all(token).expect("write");
        assert!(read_frame(&mut t).is_empty(), "PLAIN's empty server token");
        let md = MetadataRequest::default();
        t.write_all(&encode_request(&md, 9, 2, "t").expect("encode"))
            .expect("write");
        assert!(!read_frame(&mut t).is_empty(), "served after a v0 exchange");
    }
    // Before authentication a large frame closes the connection unread.
    {
        use std::io::Read;
        let mut t = std::net::TcpStream::connect(&addr).expect("connect");
        t.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        t.write_all(&(1u32 << 20).to_be_bytes()).expect("write");
        let mut buf = [0u8; 8];
        assert!(matches!(t.read(&mut buf), Ok(0) | Err(_)));
    }

    // A plaintext Kafka client and garbage on the TLS port close only their connection.
    for junk in [
        &b"\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\x00\x00"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5][..],
    ] {
        use std::io::Read;
        let mut t = std::net::TcpStream::connect(("127.0.0.1", s.sasl_ssl)).expect("connect");
        t.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        t.write_all(junk).expect("write");
        let mut buf = [0u8; 64];
        // The broker answers with at most a TLS alert, then closes.
        let mut total = 0;
        loop {
            match t.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
            assert!(total < 1024, "the broker kept talking to a non-TLS client");
        }
    }
    assert!(s.broker.log_text().contains("TLS handshake failed"));
    let (ok, _, err) = kcat(
        &with(
            sasl_args(&s, "SCRAM-SHA-256", "alice", "alice-secret"),
            &["-L"],
        ),
        "",
    );
    assert!(ok, "a good client after the bad ones: {err}");

    // Credentials survive a restart; a deleted user is refused.
    s.broker.restart();
    let (ok, _, err) = kcat(
        &with(
            sasl_args(&s, "SCRAM-SHA-512", "alice", "alice-secret"),
            &["-L"],
        ),
        "",
    );
    assert!(ok, "after restart: {err}");
    let b = s.broker.bootstrap();
    common::shardlog(&["user", "delete", "alice", "--bootstrap", &b]);
    let (ok, _, _) = kcat(
        &with(
            sasl_args(&s, "SCRAM-SHA-512", "alice", "alice-secret"),
            &["-L"],
        ),
        "",
    );
    assert!(!ok, "a deleted user is refused");
    let (ok, _, err) = common::shardlog_try(&["user", "delete", "alice", "--bootstrap", &b]);
    assert!(!ok && err.contains("91"), "{err}");
    drop(s.dir);
}

#[test]
fn repeated_failures_from_one_address_are_refused_unchecked() {
    let s = start(r#""authentication.failures.per.ip.per.minute" = "3""#);
    let b = s.broker.bootstrap();
    common::shardlog(&[
        "user",
        "create",
        "carol",
        "--password",
        "pw-carol",
        "--bootstrap",
        &b,
    ]);
    let (ok, _, err) = kcat(
        &with(sasl_args(&s, "SCRAM-SHA-256", "carol", "pw-carol"), &["-L"]),
        "",
    );
    assert!(ok, "{err}");
    for _ in 0..3 {
        let (ok, _, _) = kcat(
            &with(sasl_args(&s, "SCRAM-SHA-256", "carol", "x"), &["-L"]),
            "",
        );
        assert!(!ok);
    }
    // Now even the right password is refused from this address, for the rest of the minute.
    let (ok, _, err) = kcat(
        &with(sasl_args(&s, "SCRAM-SHA-256", "carol", "pw-carol"), &["-L"]),
        "",
    );
    assert!(!ok && err.contains("too many failed attempts"), "{err}");
    assert!(s
        .broker
        .log_text()
        .contains("too many failures from this address"));
}

#[test]
fn the_certificate_is_reloaded_on_sighup() {
    let s = start("");
    let subject = || {
        let out = Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", s.ssl))
            .stdin(Stdio::null())
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(subject().contains("CN=localhost") || subject().contains("CN = localhost"));
    // A new certificate in the keystore file, then SIGHUP.
    let ca_dir = tempfile::tempdir().expect("tmp");
    let ca = certs::ca(ca_dir.path());
    let (_, _, keystore) = ca.issue(
        ca_dir.path(),
        "renewed",
        &["localhost", "127.0.0.1"],
        &[(DnType::CommonName, "renewed.example")],
    );
    std::fs::copy(&keystore, s.dir.path().join("broker-keystore.pem")).expect("replace");
    let pid = s.broker.pid().expect("pid");
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill")
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !subject().contains("renewed.example") {
        assert!(
            std::time::Instant::now() < deadline,
            "not reloaded: {}",
            s.broker.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken keystore is refused on SIGHUP; the renewed one stays in use.
    std::fs::write(s.dir.path().join("broker-keystore.pem"), "not a PEM").expect("break");
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    std::thread::sleep(Duration::from_millis(500));
    assert!(subject().contains("renewed.example"));
    assert!(s.broker.log_text().contains("TLS files not reloaded"));
}

/// The Java client and kafkajs, each over SASL_SSL with SCRAM-SHA-512 and over SSL with a
/// client certificate, and confluent-kafka with a client certificate, produce and read back
/// through their consumer groups (kcat and confluent-kafka over SASL_SSL: the first test).
#[test]
fn java_kafkajs_and_confluent_kafka_connect_with_sasl_ssl_and_mtls() {
    let s = start("");
    let b = s.broker.bootstrap();
    common::shardlog(&[
        "user",
        "create",
        "dave",
        "--password",
        "dave-secret",
        "--bootstrap",
        &b,
    ]);
    common::shardlog(&[
        "topic",
        "create",
        "clients",
        "--partitions",
        "2",
        "--bootstrap",
        &b,
    ]);
    let classes = tempfile::tempdir().expect("tmp");
    let cp = common::java::compile("SecureClient", classes.path());
    let keystore = s.dir.path().join("bob-java-keystore.pem");
    // PEM keystore for Java: the private key, then the certificate.
    std::fs::write(
        &keystore,
        format!(
            "{}{}",
            std::fs::read_to_string(&s.client_cert.1).expect("key"),
            std::fs::read_to_string(&s.client_cert.0).expect("cert")
        ),
    )
    .expect("keystore");
    let ca = s.ca.display().to_string();
    let sasl_ssl = format!("127.0.0.1:{}", s.sasl_ssl);
    let ssl = format!("127.0.0.1:{}", s.ssl);
    let ks = keystore.display().to_string();
    for args in [
        vec![
            sasl_ssl.as_str(),
            "clients",
            "20",
            ca.as_str(),
            "scram",
            "dave",
            "dave-secret",
        ],
        vec![
            ssl.as_str(),
            "clients",
            "20",
            ca.as_str(),
            "mtls",
            ks.as_str(),
        ],
    ] {
        let out = Command::new("java")
            .args(["-cp", &cp, "SecureClient"])
            .args(&args)
            .output()
            .expect("java");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ok 20",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let js =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/js-clients/node_modules");
    assert!(
        js.join("kafkajs").exists(),
        "kafkajs missing: run tests/setup.sh"
    );
    let (cert, key) = (
        s.client_cert.0.display().to_string(),
        s.client_cert.1.display().to_string(),
    );
    for args in [
        [
            sasl_ssl.as_str(),
            "clients",
            "20",
            ca.as_str(),
            "scram",
            "dave",
            "dave-secret",
        ],
        [
            ssl.as_str(),
            "clients",
            "20",
            ca.as_str(),
            "mtls",
            cert.as_str(),
            key.as_str(),
        ],
    ] {
        let out = Command::new("node")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/secure_client.js"))
            .args(args)
            .env("NODE_PATH", &js)
            .output()
            .expect("node");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ok 20",
            "kafkajs {}: {}",
            args[4],
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // confluent-kafka with a client certificate.
    let conf = serde_json::json!({
        "bootstrap.servers": ssl, "security.protocol": "SSL", "ssl.ca.location": ca,
        "ssl.certificate.location": cert, "ssl.key.location": key,
    });
    assert_eq!(confluent_round_trip(conf, "clients", "py-mtls-"), "10");
    // A wrong password is refused for the Java client too.
    let out = Command::new("java")
        .args([
            "-cp",
            &cp,
            "SecureClient",
            &sasl_ssl,
            "clients",
            "1",
            &ca,
            "scram",
            "dave",
            "wrong",
        ])
        .output()
        .expect("java");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// KIP-368: a SASL session lasts `connections.max.reauth.ms`; the client re-authenticates on
/// the same connection (as the same principal) or is disconnected at its next request.
#[test]
fn sasl_sessions_expire_unless_reauthenticated() {
    let s = start(r#""connections.max.reauth.ms" = "1500""#);
    let b = s.broker.bootstrap();
    for (u, pw) in [("erin", "pw-erin"), ("frank", "pw-frank")] {
        common::shardlog(&["user", "create", u, "--password", pw, "--bootstrap", &b]);
    }
    let addr = format!("127.0.0.1:{}", s.sasl_plain);
    let auth = |c: &mut Client, user: &str, pw: &str| {
        let r = c
            .call(
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
                1,
            )
            .expect("handshake");
        assert_eq!(r.error_code, 0);
        c.call(
            &SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from(format!("\0{user}\0{pw}"))),
            2,
        )
        .expect("authenticate")
    };
    let metadata = |c: &mut Client| c.call(&MetadataRequest::default().with_topics(None), 9);
    let mut c = Client::connect(&addr).expect("connect");
    let r = auth(&mut c, "erin", "pw-erin");
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 1500));
    assert!(metadata(&mut c).is_ok());
    // Re-authenticated within the lifetime: served past the first session's end.
    std::thread::sleep(Duration::from_millis(900));
    let r = auth(&mut c, "erin", "pw-erin");
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 1500));
    std::thread::sleep(Duration::from_millis(900));
    assert!(metadata(&mut c).is_ok(), "served after re-authentication");
    // Re-authenticating as someone else is refused and closes the connection.
    let r = auth(&mut c, "frank", "pw-frank");
    assert_eq!(r.error_code, 58);
    assert!(metadata(&mut c).is_err());
    // Not re-authenticated: the next request after the lifetime closes the connection.
    let mut c = Client::connect(&addr).expect("connect");
    assert_eq!(auth(&mut c, "erin", "pw-erin").error_code, 0);
    std::thread::sleep(Duration::from_millis(1700));
    assert!(
        metadata(&mut c).is_err(),
        "served after the session expired"
    );
    assert!(s.broker.log_text().contains("SASL session expired"));
    // librdkafka (2.2 and later: confluent-kafka's; Debian's kcat links 2.0, which does not)
    // re-authenticates on its own: a producer sending once a second for several lifetimes is
    // never cut off for an expired session, and every send is delivered.
    common::shardlog(&[
        "topic",
        "create",
        "reauth",
        "--partitions",
        "1",
        "--bootstrap",
        &b,
    ]);
    let expired_before = s.broker.log_text().matches("SASL session expired").count();
    let script = r#"
import sys, time
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "security.protocol": "SASL_PLAINTEXT",
              "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": "erin",
              "sasl.password": "pw-erin", "linger.ms": 0})
failed = []
for i in range(6):
    p.produce("reauth", b"slow-%d" % i, on_delivery=lambda e, m: e and failed.append(str(e)))
    p.flush(10)
    time.sleep(1)
print("failed", len(failed), failed[:3])
"#;
    let out = Command::new("python3")
        .env_remove("LD_LIBRARY_PATH")
        .args(["-c", script, &addr])
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "failed 0 []",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expired_after = s.broker.log_text().matches("SASL session expired").count();
    assert_eq!(
        expired_before, expired_after,
        "librdkafka let a session expire"
    );
}

/// `http.ssl.enabled`: /metrics, /health and /v1/cluster over TLS with the listeners'
/// certificate; `shardlog cluster` reaches it with `--command-config`'s trust store.
#[test]
fn the_http_port_speaks_tls() {
    let s = start(r#""http.ssl.enabled" = "true""#);
    assert!(s.broker.log_text().contains("metrics on https://"));
    let http = s.broker.metrics_addr().expect("metrics address");
    let props = s.dir.path().join("tls.properties");
    std::fs::write(
        &props,
        format!(
            "security.protocol=SSL\nssl.ca.location={}\n",
            s.ca.display()
        ),
    )
    .expect("props");
    let out = common::shardlog(&[
        "--command-config",
        &props.display().to_string(),
        "cluster",
        "info",
        "--http",
        &http,
    ]);
    assert!(out.contains("single node"), "{out}");
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&s.ca)
        .arg(format!("https://{http}/metrics"))
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("shardlog_shard_tls_handshake_failures_total"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    use std::io::Read;
    let mut t = std::net::TcpStream::connect(&http).expect("connect");
    t.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    t.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    let _ = t.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/1.1"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// A broker reachable only over TLS (SASL_SSL and SSL listeners, the HTTP port over TLS):
/// the console reaches it through SASL_SSL, trusting the broker's own certificate, as the
/// user of the HTTP Basic login.
#[test]
fn the_console_logs_in_through_a_sasl_ssl_listener() {
    let dir = tempfile::tempdir().expect("tmp");
    let (ca, keystore) = broker_keystore(dir.path());
    let base = common::pick_port(4);
    let (sasl_ssl, ssl) = (base, base + 2);
    let toml = format!(
        r#"listeners = "SASL_SSL://127.0.0.1:{sasl_ssl},SSL://127.0.0.1:{ssl}"
"ssl.keystore.location" = "{}"
"ssl.truststore.location" = "{}"
"ssl.client.auth" = "requested"
"sasl.enabled.mechanisms" = "SCRAM-SHA-256"
"http.ssl.enabled" = "true"
"#,
        keystore.display(),
        ca.pem.display()
    );
    let mut broker = common::Broker::start_configured(2, &toml, &[]);
    broker.port = ssl;
    let props = dir.path().join("ssl.properties");
    std::fs::write(
        &props,
        format!(
            "security.protocol=SSL\nssl.ca.location={}\n",
            ca.pem.display()
        ),
    )
    .expect("props");
    let bootstrap = format!("127.0.0.1:{ssl}");
    let admin = |args: &[&str]| {
        let mut all = vec!["--command-config", props.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        all.extend(["--bootstrap", &bootstrap]);
        common::shardlog(&all)
    };
    admin(&["user", "create", "carol", "--password", "pw-carol"]);
    admin(&["topic", "create", "over-tls"]);
    let http = broker.metrics_addr().expect("HTTP port");
    let curl = |login: Option<&str>, path: &str| {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(&ca.pem);
        if let Some(l) = login {
            c.args(["-u", l]);
        }
        let out = c
            .arg(format!("https://{http}{path}"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        (code.to_string(), body.to_string())
    };
    assert_eq!(curl(None, "/ui").0, "401");
    assert_eq!(curl(Some("carol:wrong"), "/ui").0, "401");
    assert_eq!(curl(Some("carol:wrong"), "/api/topics").0, "401");
    let (code, page) = curl(Some("carol:pw-carol"), "/ui");
    assert_eq!(code, "200", "{page}");
    let (code, topics) = curl(Some("carol:pw-carol"), "/api/topics");
    assert_eq!(code, "200", "{topics}");
    assert!(topics.contains("\"over-tls\""), "{topics}");
}
