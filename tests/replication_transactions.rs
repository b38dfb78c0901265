//! Transactions in a cluster of three node processes (confluent-kafka through
//! tests/py/txn_client.py): `__transaction_state` is a replicated topic placed by the
//! quorum, markers reach partitions other nodes lead (WriteTxnMarkers), and a
//! consume-transform-produce loop stays exactly once while the node coordinating its
//! transactional id is killed (kill -9) and restarted, again and again.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::{create_replicated, leaders, Cluster};
use common::txn::{assert_transformed_exactly_once, by_partition, fill_inputs, py, py_cmd};
use serde_json::Value;

fn bootstrap(c: &Cluster) -> String {
    c.nodes
        .iter()
        .map(|n| n.bootstrap())
        .collect::<Vec<_>>()
        .join(",")
}

/// The node (id) leading `__transaction_state` partition `p` in a node's view.
fn txn_leader(v: &Value, p: i32) -> Option<u64> {
    v["image"]["topics"]["__transaction_state"]["partitions"][p as usize]["leader"].as_u64()
}

#[test]
fn transactions_commit_and_abort_across_partitions_led_by_every_node() {
    let c = Cluster::start(3);
    create_replicated(&c.nodes[0], "ctx", 6, 2);
    let nodes: BTreeSet<i32> = leaders(&c.nodes[0].bootstrap(), "ctx")
        .iter()
        .map(|(_, l)| l / 1024)
        .collect();
    assert_eq!(nodes.len(), 3, "partitions led by every node: {nodes:?}");

    let r = py(&["commit_abort", &bootstrap(&c), "ctx", "6"]);
    let committed = by_partition(&r["committed"]);
    let uncommitted = by_partition(&r["uncommitted"]);
    let after = by_partition(&r["after"]);
    let vals = |m: &std::collections::BTreeMap<i64, Vec<(i64, String)>>| -> Vec<String> {
        let mut v: Vec<String> = m.values().flatten().map(|(_, v)| v.clone()).collect();
        v.sort();
        v
    };
    let mut want: Vec<String> = (0..20)
        .flat_map(|i| [format!("c1-{i}"), format!("c2-{i}")])
        .collect();
    want.sort();
    assert_eq!(
        vals(&committed),
        want,
        "read_committed: the two commits only"
    );
    assert_eq!(vals(&uncommitted).len(), 64, "read_uncommitted: everything");
    assert_eq!(
        vals(&after).len(),
        44,
        "the open transaction, once committed"
    );
    for (p, recs) in committed.iter().chain(&uncommitted) {
        assert!(
            recs.windows(2).all(|w| w[0].0 < w[1].0),
            "partition {p} in offset order"
        );
    }

    // The coordinator's state is replicated: three replicas per partition.
    let v = c.view(0).expect("view");
    let part = &v["image"]["topics"]["__transaction_state"]["partitions"][0];
    assert_eq!(part["replicas"].as_array().map(Vec::len), Some(3), "{part}");
}

#[test]
fn consume_transform_produce_stays_exactly_once_while_the_coordinators_node_is_killed() {
    const N: usize = 1500;
    const TXN: &str = "txn-ctp-cluster";
    let mut c = Cluster::start(3);
    create_replicated(&c.nodes[0], "cin", 2, 2);
    create_replicated(&c.nodes[0], "cout", 2, 2);
    let all = bootstrap(&c);
    fill_inputs(&all, "cin", N);
    let args = [
        "transform",
        all.as_str(),
        "cin",
        "cout",
        "ctp-cluster-group",
        TXN,
        &N.to_string(),
    ]
    .map(str::to_string);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = shardlog::txn::txn_partition(TXN);

    // Three rounds: while the client transforms, the node leading the transactional id's
    // state partition is killed, a new leader takes over, and the node comes back.
    let mut child = py_cmd(&refs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let placed_by = Instant::now() + Duration::from_secs(60);
    let mut round = 0u64;
    // Bounded: three kills, and the placement's deadline.
    while round < 3 {
        let v = c.view(0).or_else(|| c.view(1)).expect("a view");
        let Some(leader) = txn_leader(&v, p) else {
            // Not placed yet: the client's first lookup has the quorum create it.
            assert!(
                Instant::now() < placed_by,
                "__transaction_state never placed"
            );
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        std::thread::sleep(Duration::from_millis(1000 + 700 * round));
        let i = (leader - 1) as usize;
        eprintln!("round {round}: killing node {leader}, the coordinator");
        c.nodes[i].kill();
        let others: Vec<usize> = (0..3).filter(|j| *j != i).collect();
        c.wait_for(&others[..1], "a new coordinator", |v| {
            txn_leader(&v[0], p).is_some_and(|l| l != leader)
        });
        std::thread::sleep(Duration::from_millis(1500));
        c.nodes[i].start_again();
        c.wait_for(&[0, 1, 2], "all nodes back", |v| {
            common::cluster::all_live(v, 3)
        });
        if let Ok(Some(_)) = child.try_wait() {
            // It gave up (an error it does not retry): run it again, as its operator would.
            child = py_cmd(&refs)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3");
        }
        round += 1;
    }
    // Then to the end (bounded: the client exits once the group committed everything, or
    // with an error after which it is run again).
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let st = child.wait().expect("wait");
        if st.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the transform never finished");
        child = py_cmd(&refs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
    }
    assert_transformed_exactly_once(&all, "cout", N);
}
