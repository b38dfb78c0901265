//! Several node processes form one cluster: a metadata quorum (openraft) elects a
//! controller, every node registers and heartbeats, a dead node is fenced and comes back,
//! and a paused controller never leaves two leaders in one term.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{http_get, metric_sample, Broker};

struct Cluster {
    nodes: Vec<Broker>,
}

impl Cluster {
    /// `n` nodes of one shard each, voters all, with a 3 s session timeout.
    fn start(n: usize) -> Cluster {
        let ports: Vec<u16> = (0..n).map(|_| common::pick_port(1)).collect();
        let voters: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
            .collect();
        let nodes = (0..n)
            .map(|i| {
                let toml = format!(
                    "\"node.id\" = {}\n\"controller.quorum.voters\" = \"{}\"\n\"broker.session.timeout.ms\" = 3000\n\"broker.heartbeat.interval.ms\" = 500\n",
                    i + 1,
                    voters.join(",")
                );
                Broker::start_configured(1, &toml, &[])
            })
            .collect();
        Cluster { nodes }
    }

    fn view(&self, i: usize) -> Option<Value> {
        let addr = self.nodes[i].metrics_addr()?;
        let (head, body) = http_get(&addr, "/v1/cluster");
        if !head.contains("200") {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// Waits (bounded) until `ok` holds for the views of the nodes in `which`.
    fn wait_for(&self, which: &[usize], what: &str, ok: impl Fn(&[Value]) -> bool) -> Duration {
        let start = Instant::now();
        // Bounded by the deadline.
        while start.elapsed() < Duration::from_secs(30) {
            let views: Vec<Value> = which.iter().filter_map(|i| self.view(*i)).collect();
            if views.len() == which.len() && ok(&views) {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let views: Vec<Option<Value>> = which.iter().map(|i| self.view(*i)).collect();
        panic!("timed out waiting for {what}: {views:#?}");
    }
}

fn controller(v: &Value) -> Option<u64> {
    v["controller"].as_u64()
}

fn node_states(v: &Value) -> BTreeMap<u64, (bool, u64)> {
    v["image"]["nodes"]
        .as_object()
        .map(|m| {
            m.values()
                .map(|n| {
                    (
                        n["registration"]["id"].as_u64().unwrap_or(0),
                        (
                            n["fenced"].as_bool().unwrap_or(false),
                            n["epoch"].as_u64().unwrap_or(0),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn all_live(views: &[Value], n: usize) -> bool {
    views.iter().all(|v| {
        let s = node_states(v);
        s.len() == n && s.values().all(|(fenced, _)| !fenced)
    })
}

fn agree_on_controller(views: &[Value]) -> Option<u64> {
    let c = controller(views.first()?)?;
    views.iter().all(|v| controller(v) == Some(c)).then_some(c)
}

#[test]
fn three_nodes_elect_a_controller_fence_a_dead_node_and_take_it_back() {
    let mut c = Cluster::start(3);
    let formed = c.wait_for(&[0, 1, 2], "3 live nodes and one controller", |v| {
        all_live(v, 3) && agree_on_controller(v).is_some()
    });
    eprintln!("cluster formed in {formed:?}");
    let views: Vec<Value> = (0..3).filter_map(|i| c.view(i)).collect();
    let old = agree_on_controller(&views).expect("a controller");
    // The quorum's own metrics: every node names the same leader, exactly one is it.
    let leaders: Vec<f64> = (0..3)
        .map(|i| {
            let m = http_get(&c.nodes[i].metrics_addr().expect("metrics"), "/metrics").1;
            assert_eq!(
                metric_sample(&m, "shardlog_quorum_leader"),
                Some(old as f64)
            );
            metric_sample(&m, "shardlog_quorum_is_leader").expect("is_leader")
        })
        .collect();
    assert_eq!(leaders.iter().sum::<f64>(), 1.0, "{leaders:?}");
    let old_epoch = node_states(&views[0])[&old].1;

    // kill -9 the controller: the others elect another and fence it.
    let dead = (old - 1) as usize;
    c.nodes[dead].kill();
    let rest: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let elected = c.wait_for(&rest, "a new controller", |v| {
        agree_on_controller(v).is_some_and(|n| n != old)
    });
    let fenced = c.wait_for(&rest, "the dead node fenced", |v| {
        v.iter()
            .all(|v| node_states(v).get(&old).is_some_and(|(f, _)| *f))
    });
    eprintln!("new controller after {elected:?}; dead node fenced after {fenced:?} more");
    let http = c.nodes[rest[0]].metrics_addr().expect("metrics");
    let info = common::shardlog(&["cluster", "info", "--http", &http]);
    assert!(info.contains("fenced"), "{info}");
    assert!(info.contains("controller"), "{info}");

    // It comes back as a new incarnation: a new epoch, unfenced.
    c.nodes[dead].start_again();
    c.wait_for(&[0, 1, 2], "the node back and live everywhere", |v| {
        all_live(v, 3)
            && v.iter().all(|v| {
                node_states(v)
                    .get(&old)
                    .is_some_and(|(_, e)| *e > old_epoch)
            })
    });
}

#[test]
fn a_paused_controller_never_leaves_two_leaders_in_one_term() {
    let c = Cluster::start(3);
    c.wait_for(&[0, 1, 2], "3 live nodes and one controller", |v| {
        all_live(v, 3) && agree_on_controller(v).is_some()
    });
    let views: Vec<Value> = (0..3).filter_map(|i| c.view(i)).collect();
    let old = agree_on_controller(&views).expect("controller");
    let paused = (old - 1) as usize;
    let pid = c.nodes[paused].pid().expect("pid") as i32;
    // Leaders seen per term, sampled from every node's own view through the pause.
    let mut leaders: BTreeMap<u64, std::collections::BTreeSet<u64>> = BTreeMap::new();
    let mut sample = |c: &Cluster, who: &[usize]| {
        for i in who {
            if let Some(v) = c.view(*i) {
                if v["role"] == "leader" {
                    leaders
                        .entry(v["term"].as_u64().unwrap_or(0))
                        .or_default()
                        .insert(v["node_id"].as_u64().unwrap_or(0));
                }
            }
        }
    };
    sample(&c, &[0, 1, 2]);
    // SAFETY: signalling a child process we started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let rest: Vec<usize> = (0..3).filter(|i| *i != paused).collect();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        sample(&c, &rest);
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        sample(&c, &[0, 1, 2]);
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_for(&[0, 1, 2], "one controller again, all live", |v| {
        all_live(v, 3) && agree_on_controller(v).is_some()
    });
    sample(&c, &[0, 1, 2]);
    let views: Vec<Value> = (0..3).filter_map(|i| c.view(i)).collect();
    let now = agree_on_controller(&views).expect("controller");
    assert_ne!(
        now, old,
        "a new controller was elected while the old one was paused"
    );
    assert!(
        leaders.values().all(|l| l.len() == 1),
        "two leaders in one term: {leaders:?}"
    );
    assert!(leaders.len() >= 2, "terms with a leader: {leaders:?}");
}
