//! A node cut off by the network (not killed: its process runs on, in a network namespace
//! of its own joined to the others by a veth pair). Cut while it leads a partition, it
//! acknowledges nothing more with acks=all; the majority fences it after the session
//! timeout, elects a leader from the ISR and goes on; healed, the node follows, truncating
//! what it took alone, and every replica ends up the same bytes. Needs root and `ip`
//! (iproute2); the namespace, the veth pair and the routes are removed afterwards.

mod common;

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use common::cluster::{create_replicated, read_all, wait_replicas_identical, Cluster};
use common::Broker;

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?}");
}

/// A network namespace with a veth pair to the host's: `outer` (host side) and `inner`
/// (namespace side) addresses on a /30.
struct Netns {
    name: String,
    veth: String,
    outer: String,
    inner: String,
}

impl Netns {
    fn create() -> Netns {
        let pid = std::process::id();
        let name = format!("sl{pid}");
        let veth = format!("slh{pid}");
        let peer = format!("sln{pid}");
        let (a, b) = (100 + pid % 100, (pid / 100) % 250);
        let (outer, inner) = (format!("10.{a}.{b}.1"), format!("10.{a}.{b}.2"));
        ip(&["netns", "add", &name]);
        let n = Netns {
            name,
            veth,
            outer,
            inner,
        };
        ip(&[
            "link", "add", &n.veth, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &n.name]);
        ip(&["addr", "add", &format!("{}/30", n.outer), "dev", &n.veth]);
        ip(&["link", "set", &n.veth, "up"]);
        let inside = |args: &[&str]| {
            let mut a = vec!["netns", "exec", n.name.as_str(), "ip"];
            a.extend_from_slice(args);
            ip(&a);
        };
        inside(&["addr", "add", &format!("{}/30", n.inner), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        n
    }

    /// Drops every packet between the namespace and the host, both ways (no reset: the
    /// other side just hears nothing).
    fn cut(&self) {
        self.blackholes("add");
    }

    fn heal(&self) {
        self.blackholes("del");
    }

    /// Adds or deletes a blackhole route to the other side, on each side.
    fn blackholes(&self, op: &str) {
        let (inner, outer) = (format!("{}/32", self.inner), format!("{}/32", self.outer));
        ip(&["route", op, "blackhole", &inner]);
        ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "route",
            op,
            "blackhole",
            &outer,
        ]);
    }

    /// Runs `f` on a thread inside the namespace (its sockets are the namespace's).
    fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            // SAFETY: setns on a descriptor this thread owns; it moves only this thread.
            let r =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever is still there (a heal already removed the route).
        for args in [
            vec![
                "route".to_string(),
                "del".into(),
                "blackhole".into(),
                format!("{}/32", self.inner),
            ],
            vec!["link".into(), "del".into(), self.veth.clone()],
            vec!["netns".into(), "del".into(), self.name.clone()],
        ] {
            let _ = Command::new("ip")
                .args(&args)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// (ISR, leader) of each partition of `topic` in a node's view.
fn placement(v: &Value, topic: &str) -> Vec<(Vec<u64>, Option<u64>)> {
    v["image"]["topics"][topic]["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let isr = p["isr"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_u64).collect())
                        .unwrap_or_default();
                    (isr, p["leader"].as_u64())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn produce(c: &mut shardlog::admin::client::Client, p: i32, v: &str) -> i16 {
    common::wire::try_produce(c, "cut", p, common::record_batch(&[v.as_bytes()], 1))
        .map(|(code, _)| code)
        .unwrap_or(-1)
}

#[test]
fn a_leader_cut_off_by_the_network_acknowledges_nothing_and_the_majority_goes_on() {
    let net = Netns::create();
    let ports: Vec<u16> = (0..3).map(|_| common::pick_controller_port()).collect();
    let hosts = [&net.outer, &net.outer, &net.inner];
    let voters = (0..3)
        .map(|i| format!("{}@{}:{}", i + 1, hosts[i], ports[i]))
        .collect::<Vec<_>>()
        .join(",");
    let wrap = ["ip", "netns", "exec", net.name.as_str()];
    let nodes: Vec<Broker> = (0..3)
        .map(|i| {
            let toml = common::node_toml(i as u64 + 1, &voters);
            let w: &[&str] = if i == 2 { &wrap } else { &[] };
            Broker::start_at(hosts[i], w, 1, &toml)
        })
        .collect();
    common::wait_cluster_formed(&nodes);
    let c = Cluster { nodes, voters };
    create_replicated(&c.nodes[0], "cut", 3, 2);
    c.wait_for(&[0, 1, 2], "every ISR whole", |v| {
        v.iter()
            .all(|v| placement(v, "cut").iter().all(|(isr, _)| isr.len() == 3))
    });
    let placed = placement(&c.view(0).expect("view"), "cut");
    let p = placed
        .iter()
        .position(|(_, l)| *l == Some(3))
        .expect("node 3 leads a partition") as i32;

    // Before the cut: acknowledged through node 3, the partition's leader.
    let mut to3 = shardlog::admin::client::Client::connect(&c.nodes[2].bootstrap()).expect("c");
    for i in 0..20 {
        assert_eq!(produce(&mut to3, p, &format!("before{i}")), 0);
    }
    drop(to3);

    net.cut();
    let cut_at = Instant::now();
    // A client on node 3's side of the cut: acks=all is never acknowledged there (its
    // followers cannot fetch and the quorum cannot be reached to shrink the ISR).
    let bootstrap3 = c.nodes[2].bootstrap();
    let inside = net.run_inside(move || {
        let mut c = shardlog::admin::client::Client::connect(&bootstrap3).expect("connect");
        produce(&mut c, p, "alone")
    });
    assert_ne!(
        inside, 0,
        "the cut-off leader acknowledged an acks=all write"
    );

    // The majority fences node 3 after the session timeout, elects from the ISR, goes on.
    c.wait_for(&[0, 1], "a new leader on the majority side", |v| {
        v.iter().all(|v| {
            let (isr, l) = &placement(v, "cut")[p as usize];
            l.is_some_and(|l| l != 3) && !isr.contains(&3)
        })
    });
    eprintln!(
        "cut {:?} ago; the majority has a new leader",
        cut_at.elapsed()
    );
    let leader = placement(&c.view(0).expect("view"), "cut")[p as usize]
        .1
        .expect("leader");
    let mut to_new =
        shardlog::admin::client::Client::connect(&c.nodes[(leader - 1) as usize].bootstrap())
            .expect("connect");
    for i in 0..20 {
        assert_eq!(produce(&mut to_new, p, &format!("after{i}")), 0);
    }

    // Healed: node 3 returns as a follower, drops what it took alone, and catches up.
    net.heal();
    c.wait_for(&[0, 1, 2], "every ISR whole again", |v| {
        v.iter()
            .all(|v| placement(v, "cut").iter().all(|(isr, _)| isr.len() == 3))
    });
    wait_replicas_identical(&c, "cut", 3, "replicas differ after the heal");
    let got = read_all(&c.nodes[0], "cut", 3, 40);
    for i in 0..20 {
        assert!(
            got.contains_key(&format!("before{i}")),
            "before{i}: {got:?}"
        );
        assert!(got.contains_key(&format!("after{i}")), "after{i}: {got:?}");
    }
    assert!(
        !got.keys().any(|k| k.starts_with("alone")),
        "writes the cut-off leader took alone survived: {got:?}"
    );
    assert_eq!(got.len(), 40);
}
