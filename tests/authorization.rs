//! ACL authorization against the real broker: principals authenticated with SASL over a
//! SASL_PLAINTEXT listener, ACLs made with `shardlog acl` over the loopback admin listener
//! (its ANONYMOUS principal a super user). Metadata shows only what a principal may
//! describe; produce, fetch, group and admin requests get Kafka's error codes; a prefixed ACL
//! grants a family of topics; a deny overrides an allow; removing an ACL takes effect on open
//! connections; ACLs survive a restart; kcat (librdkafka) works within its grants.

mod common;

use std::process::Command;

use bytes::Bytes;
use common::wire;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use shardlog::admin::client::Client;

/// A connection authenticated as `user` with SASL/PLAIN.
fn login(addr: &str, user: &str, password: &str) -> Client {
    let mut c = Client::connect(addr).expect("connect");
    let r = c
        .call(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
            1,
        )
        .expect("handshake");
    assert_eq!(r.error_code, 0);
    let token = format!("\0{user}\0{password}");
    let r = c
        .call(
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
            2,
        )
        .expect("authenticate");
    assert_eq!(r.error_code, 0, "{user}: {:?}", r.error_message);
    c
}

fn topics_seen(c: &mut Client) -> Vec<String> {
    let r = c
        .call(&MetadataRequest::default().with_topics(None), 9)
        .expect("metadata");
    let mut v: Vec<String> = r
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    v.sort();
    v
}

fn named_topic_error(c: &mut Client, topic: &str) -> i16 {
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(wire::name(topic)))
    ]);
    let r = c.call(&req, 9).expect("metadata");
    r.topics[0].error_code
}

fn kcat(args: &[&str], input: &str) -> (bool, String, String) {
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "kcat"])
        .args(args)
        .env_remove("LD_LIBRARY_PATH");
    common::run_with_input(cmd, input)
}

#[test]
fn acls_decide_every_request() {
    let (mut b, sasl) = common::start_with_acls(2);
    let admin = b.bootstrap();
    let cli = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--bootstrap", admin.as_str()]);
        common::shardlog(&a)
    };
    for (u, pw) in [("alice", "pw-alice"), ("bob", "pw-bob")] {
        cli(&["user", "create", u, "--password", pw]);
    }
    for t in ["orders-eu", "orders-us", "secret", "public"] {
        cli(&["topic", "create", t, "--partitions", "2"]);
    }
    // alice: write (and so describe) every orders- topic, but never orders-us; read
    // orders-eu in group g1. Everyone: read public.
    cli(&[
        "acl",
        "add",
        "--allow-principal",
        "User:alice",
        "--operation",
        "write",
        "--topic",
        "orders-",
        "--resource-pattern-type",
        "prefixed",
    ]);
    cli(&[
        "acl",
        "add",
        "--deny-principal",
        "User:alice",
        "--operation",
        "write",
        "--topic",
        "orders-us",
    ]);
    cli(&[
        "acl",
        "add",
        "--allow-principal",
        "User:alice",
        "--operation",
        "read",
        "--topic",
        "orders-eu",
    ]);
    cli(&[
        "acl",
        "add",
        "--allow-principal",
        "User:alice",
        "--operation",
        "read",
        "--group",
        "g1",
    ]);
    cli(&[
        "acl",
        "add",
        "--allow-principal",
        "User:*",
        "--operation",
        "read",
        "--topic",
        "public",
    ]);
    let listed = cli(&["acl", "list"]);
    assert!(
        listed.contains("PREFIXED") && listed.contains("DENY") && listed.contains("User:*"),
        "{listed}"
    );

    let addr = format!("127.0.0.1:{sasl}");
    let mut alice = login(&addr, "alice", "pw-alice");
    let mut bob = login(&addr, "bob", "pw-bob");

    // Metadata lists only what each may describe; a named topic it may not is refused.
    assert_eq!(
        topics_seen(&mut alice),
        ["orders-eu", "orders-us", "public"]
    );
    assert_eq!(topics_seen(&mut bob), ["public"]);
    assert_eq!(named_topic_error(&mut bob, "secret"), 29);
    assert_eq!(
        named_topic_error(&mut bob, "no-such-topic"),
        29,
        "existence not revealed"
    );
    assert_eq!(named_topic_error(&mut alice, "orders-eu"), 0);

    // Produce: the prefixed ACL grants the family; the deny wins over it.
    let rec = || common::record_batch(&[b"x"], 0);
    assert_eq!(wire::produce(&mut alice, "orders-eu", 0, rec()).0, 0);
    assert_eq!(
        wire::produce(&mut alice, "orders-new-region", 0, rec()).0,
        3,
        "allowed, unknown"
    );
    assert_eq!(wire::produce(&mut alice, "orders-us", 0, rec()).0, 29);
    assert_eq!(wire::produce(&mut alice, "public", 0, rec()).0, 29);
    assert_eq!(wire::produce(&mut bob, "secret", 0, rec()).0, 29);

    // Fetch: READ per topic.
    assert_eq!(wire::fetch(&mut alice, "orders-eu", 0, 0, 0).0, 0);
    assert_eq!(wire::fetch(&mut bob, "orders-eu", 0, 0, 0).0, 29);
    assert_eq!(wire::fetch(&mut bob, "public", 0, 0, 0).0, 0);
    // A client posing as a follower needs CLUSTER_ACTION.
    {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(7);
        req.max_bytes = 1 << 20;
        req.topics = vec![FetchTopic::default()
            .with_topic(wire::name("public"))
            .with_partitions(vec![
                FetchPartition::default().with_partition_max_bytes(1 << 20)
            ])];
        let r = bob.call(&req, 11).expect("fetch");
        assert_eq!(r.responses[0].partitions[0].error_code, 29);
    }

    // Groups: READ on the group.
    let find = |c: &mut Client, g: &str| {
        let r = c
            .call(
                &FindCoordinatorRequest::default()
                    .with_key_type(0)
                    .with_coordinator_keys(vec![StrBytes::from_string(g.to_string())]),
                4,
            )
            .expect("find");
        r.coordinators[0].error_code
    };
    assert_eq!(find(&mut alice, "g1"), 0);
    assert_eq!(find(&mut bob, "g1"), 30);
    let commit = |c: &mut Client, g: &str, t: &str| {
        use kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(g.to_string())))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(wire::name(t))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(1)])]);
        let r = c.call(&req, 8).expect("commit");
        r.topics[0].partitions[0].error_code
    };
    // The coordinator of g1 may be another shard: only the authorization codes are certain.
    assert_ne!(commit(&mut alice, "g1", "orders-eu"), 30);
    assert_ne!(commit(&mut alice, "g1", "orders-eu"), 29);
    assert_eq!(commit(&mut alice, "g1", "secret"), 29);
    assert_eq!(commit(&mut bob, "g1", "public"), 30);

    // Admin requests: topic creation, deletion, ACLs and users need their grants.
    {
        use kafka_protocol::messages::create_topics_request::CreatableTopic;
        let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(wire::name("bobs"))
            .with_num_partitions(1)
            .with_replication_factor(-1)]);
        let r = bob.call(&req, 5).expect("create");
        assert_eq!(r.topics[0].error_code, 29);
        let req = DeleteTopicsRequest::default().with_topic_names(vec![wire::name("public")]);
        let r = bob.call(&req, 4).expect("delete");
        assert_eq!(r.responses[0].error_code, 29);
        let r = bob
            .call(
                &DescribeAclsRequest::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
                2,
            )
            .expect("describe acls");
        assert_eq!(r.error_code, 31);
        let r = bob
            .call(&DescribeUserScramCredentialsRequest::default(), 0)
            .expect("describe users");
        assert_eq!(r.error_code, 31);
        let r = bob
            .call(
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000),
                4,
            )
            .expect("init");
        assert_eq!(
            r.error_code, 31,
            "no WRITE anywhere: no idempotent producer"
        );
        let r = alice
            .call(
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000),
                4,
            )
            .expect("init");
        assert_eq!(r.error_code, 0, "WRITE on some topic");
    }
    assert!(common::shardlog(&["topic", "list", "--bootstrap", &admin]).contains("public"));

    // kcat as alice: produce to a granted topic and read it back; a denied one fails.
    let sasl_args = |user: &str, pw: &str| -> Vec<String> {
        vec![
            "-b".into(),
            addr.clone(),
            "-X".into(),
            "security.protocol=SASL_PLAINTEXT".into(),
            "-X".into(),
            "sasl.mechanisms=SCRAM-SHA-512".into(),
            "-X".into(),
            format!("sasl.username={user}"),
            "-X".into(),
            format!("sasl.password={pw}"),
        ]
    };
    let args = |base: Vec<String>, more: &[&str]| -> Vec<String> {
        base.into_iter()
            .chain(more.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |a: Vec<String>, input: &str| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        kcat(&refs, input)
    };
    let (ok, _, err) = run(
        args(
            sasl_args("alice", "pw-alice"),
            &["-P", "-t", "orders-eu", "-p", "1"],
        ),
        "via-kcat\n",
    );
    assert!(ok, "{err}");
    let (ok, out, err) = run(
        args(
            sasl_args("alice", "pw-alice"),
            &["-C", "-t", "orders-eu", "-p", "1", "-e", "-q"],
        ),
        "",
    );
    assert!(ok && out.contains("via-kcat"), "{out} {err}");
    let (ok, _, err) = run(
        args(
            sasl_args("bob", "pw-bob"),
            &["-P", "-t", "secret", "-p", "0"],
        ),
        "nope\n",
    );
    assert!(
        !ok || err.contains("authoriz"),
        "bob wrote to secret: {err}"
    );

    // Markers are another node's coordinator's to write (CLUSTER_ACTION): alice's are
    // refused, whatever she may write.
    {
        use kafka_protocol::messages::write_txn_markers_request::*;
        let mut topic = WritableTxnMarkerTopic::default();
        topic.name = common::wire::name("orders-eu");
        topic.partition_indexes = vec![0, 1];
        let mut m = WritableTxnMarker::default();
        m.producer_id = kafka_protocol::messages::ProducerId(1);
        m.transaction_result = true;
        m.topics = vec![topic];
        let mut req = WriteTxnMarkersRequest::default();
        req.markers = vec![m];
        let r = alice.call(&req, 1).expect("write txn markers");
        let codes: Vec<i16> = r.markers[0].topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![31, 31]);
        // DescribeLogDirs needs DESCRIBE on the cluster.
        let mut req = kafka_protocol::messages::DescribeLogDirsRequest::default();
        req.topics = None;
        let r = alice.call(&req, 4).expect("describe log dirs");
        assert_eq!((r.error_code, r.results.len()), (31, 0));
    }

    // Removing the prefixed ACL takes effect on alice's open connection.
    let removed = cli(&[
        "acl",
        "remove",
        "--principal",
        "User:alice",
        "--topic",
        "orders-",
        "--resource-pattern-type",
        "prefixed",
    ]);
    assert!(removed.contains("1 ACL(s) removed"), "{removed}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while wire::produce(&mut alice, "orders-eu", 0, rec()).0 != 29 {
        assert!(
            std::time::Instant::now() < deadline,
            "the removal did not reach every shard"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // ACLs survive a restart.
    b.restart();
    let listed = common::shardlog(&["acl", "list", "--bootstrap", &b.bootstrap()]);
    assert!(
        listed.contains("orders-us") && listed.contains("public") && !listed.contains("PREFIXED"),
        "{listed}"
    );
    let mut alice = login(&addr, "alice", "pw-alice");
    assert_eq!(wire::fetch(&mut alice, "orders-eu", 0, 0, 0).0, 0);
    assert_eq!(wire::produce(&mut alice, "orders-us", 0, rec()).0, 29);
}

#[test]
fn without_an_authorizer_acl_requests_answer_security_disabled() {
    let b = common::Broker::start(1);
    let (ok, _, err) = common::shardlog_try(&["acl", "list", "--bootstrap", &b.bootstrap()]);
    assert!(!ok && err.contains("54"), "{err}");
}

/// In a cluster, users and ACLs are metadata: made through one node, in force on every
/// node; Metadata on the SASL listener names every node's SASL ports; replication (on the
/// PLAINTEXT inter-broker listener, its ANONYMOUS principal a super user) carries on.
#[test]
fn users_and_acls_hold_on_every_node_of_a_cluster() {
    let mut ctl = Vec::new();
    while ctl.len() < 3 {
        let p = common::pick_controller_port();
        if !ctl.contains(&p) {
            ctl.push(p);
        }
    }
    let voters: Vec<String> = ctl
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect();
    let voters = voters.join(",");
    let mut nodes = Vec::new();
    let mut sasl_ports = Vec::new();
    for i in 0..3u64 {
        let base = common::pick_port(2);
        let toml = format!(
            "{}listeners = \"PLAINTEXT://127.0.0.1:{base},SASL_PLAINTEXT://127.0.0.1:{}\"\n\"sasl.enabled.mechanisms\" = \"PLAIN,SCRAM-SHA-256\"\n\"authorizer.class.name\" = \"shardlog\"\n\"super.users\" = \"User:ANONYMOUS\"\n",
            common::node_toml(i + 1, &voters),
            base + 1
        );
        let mut b = common::Broker::start_configured(1, &toml, &[]);
        b.port = base;
        nodes.push(b);
        sasl_ports.push(base + 1);
    }
    common::wait_cluster_formed(&nodes);
    common::shardlog(&[
        "user",
        "create",
        "carol",
        "--password",
        "pw-carol",
        "--mechanism",
        "SCRAM-SHA-256",
        "--bootstrap",
        &nodes[0].bootstrap(),
    ]);
    common::shardlog(&[
        "topic",
        "create",
        "shared",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
        "--bootstrap",
        &nodes[0].bootstrap(),
    ]);
    common::shardlog(&[
        "acl",
        "add",
        "--allow-principal",
        "User:carol",
        "--operation",
        "read,write",
        "--topic",
        "shared",
        "--bootstrap",
        &nodes[1].bootstrap(),
    ]);
    common::shardlog(&[
        "acl",
        "add",
        "--allow-principal",
        "User:carol",
        "--operation",
        "read",
        "--group",
        "carols",
        "--bootstrap",
        &nodes[1].bootstrap(),
    ]);
    // Every node applies them (bounded wait for the slowest).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for port in &sasl_ports {
        loop {
            let addr = format!("127.0.0.1:{port}");
            let ok = std::panic::catch_unwind(|| {
                let mut c = login(&addr, "carol", "pw-carol");
                topics_seen(&mut c) == ["shared"]
            })
            .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node at {port} did not apply the user and ACLs"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    // Metadata on the SASL listener names SASL ports only.
    {
        let mut c = login(&format!("127.0.0.1:{}", sasl_ports[2]), "carol", "pw-carol");
        let r = c
            .call(&MetadataRequest::default().with_topics(None), 9)
            .expect("metadata");
        let mut ports: Vec<u16> = r.brokers.iter().map(|b| b.port as u16).collect();
        ports.sort();
        let mut want = sasl_ports.clone();
        want.sort();
        assert_eq!(ports, want);
    }
    // kcat as carol through node 3: acks=all produce (followers fetch as super users) and
    // a group read back.
    let args = |more: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "-b",
            &format!("127.0.0.1:{}", sasl_ports[2]),
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-256",
            "-X",
            "sasl.username=carol",
            "-X",
            "sasl.password=pw-carol",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    let input: String = (0..30).map(|i| format!("m{i}\n")).collect();
    let a = args(&["-P", "-t", "shared", "-X", "acks=all"]);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let (ok, _, err) = kcat(&refs, &input);
    assert!(ok, "{err}");
    let a = args(&[
        "-C",
        "-t",
        "shared",
        "-e",
        "-q",
        "-X",
        "group.id=carols",
        "-o",
        "beginning",
    ]);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let (ok, out, err) = kcat(&refs, "");
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 30, "{out}");
}

/// Nodes fetch from each other in PLAINTEXT only: a cluster node whose inter-broker listener
/// is secured is refused at startup with the reason, instead of failing to replicate.
#[test]
fn a_secured_inter_broker_listener_is_refused_in_a_cluster() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = common::pick_port(4);
    let ctl = common::pick_controller_port();
    let toml = dir.path().join("node.toml");
    std::fs::write(
        &toml,
        format!(
            "listeners = \"SASL_PLAINTEXT://127.0.0.1:{base},PLAINTEXT://127.0.0.1:{}\"\n\"node.id\" = 1\n\"controller.quorum.voters\" = \"1@127.0.0.1:{ctl}\"\n",
            base + 2
        ),
    )
    .expect("toml");
    let data = dir.path().join("data");
    let (ok, _, err) = common::shardlog_try(&[
        "serve",
        "--config",
        &toml.display().to_string(),
        "--data-dir",
        &data.display().to_string(),
        "--metrics-listen",
        "off",
    ]);
    assert!(!ok && err.contains("PLAINTEXT only"), "{err}");
}
