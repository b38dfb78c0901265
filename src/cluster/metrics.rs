//! The quorum's and the cluster's figures in Prometheus text, for the node's `/metrics`.

/// The metadata quorum's and cluster's figures as this node sees them (nothing for a single
/// node without a quorum).
pub fn render(v: &super::View) -> String {
    if v.voters.is_empty() {
        return String::new();
    }
    let mut o = String::new();
    let mut gauge = |name: &str, help: &str, samples: Vec<(String, i64)>| {
        o.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, value) in samples {
            o.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    gauge(
        "shardlog_quorum_leader",
        "Node id of the metadata quorum's leader (the controller) as this node knows it; -1 if none.",
        vec![(String::new(), v.controller.map_or(-1, |l| l as i64))],
    );
    gauge(
        "shardlog_quorum_is_leader",
        "1 if this node leads the metadata quorum.",
        vec![(String::new(), i64::from(v.role == "leader"))],
    );
    gauge(
        "shardlog_quorum_term",
        "Raft term of this node.",
        vec![(String::new(), v.term as i64)],
    );
    gauge(
        "shardlog_quorum_last_log_index",
        "Last entry in this node's copy of the metadata log.",
        vec![(String::new(), v.last_log_index as i64)],
    );
    gauge(
        "shardlog_quorum_applied_index",
        "Last metadata log entry this node applied.",
        vec![(String::new(), v.applied_index as i64)],
    );
    gauge(
        "shardlog_quorum_voter_lag",
        "On the leader: metadata log entries each voter is behind.",
        v.voter_lag
            .iter()
            .map(|(id, lag)| (format!("{{voter=\"{id}\"}}"), *lag as i64))
            .collect(),
    );
    let fenced = v.image.nodes.values().filter(|n| n.fenced).count() as i64;
    gauge(
        "shardlog_cluster_nodes",
        "Registered nodes, live or fenced (missed their session timeout).",
        vec![
            (
                "{state=\"live\"}".into(),
                v.image.nodes.len() as i64 - fenced,
            ),
            ("{state=\"fenced\"}".into(), fenced),
        ],
    );
    // Partitions from the image: cluster-wide offline ones, and those this node leads
    // whose ISR is short of all replicas or of min.insync.replicas.
    let (mut offline, mut led, mut under, mut under_min) = (0i64, 0i64, 0i64, 0i64);
    for t in v.image.topics.values() {
        let min_isr = t
            .configs
            .get("min.insync.replicas")
            .and_then(|m| m.parse::<usize>().ok())
            .unwrap_or(1);
        for p in &t.partitions {
            match p.leader {
                None => offline += 1,
                Some(l) if l == v.node_id => {
                    led += 1;
                    under += i64::from(p.isr.len() < p.replicas.len());
                    under_min += i64::from(p.isr.len() < min_isr.min(p.replicas.len()));
                }
                Some(_) => {}
            }
        }
    }
    gauge(
        "shardlog_offline_partitions",
        "Partitions in the cluster with no leader (no in-sync replica is live).",
        vec![(String::new(), offline)],
    );
    gauge(
        "shardlog_leader_partitions",
        "Partitions this node leads.",
        vec![(String::new(), led)],
    );
    gauge(
        "shardlog_under_replicated_partitions",
        "Partitions this node leads whose ISR lacks some replica.",
        vec![(String::new(), under)],
    );
    gauge(
        "shardlog_under_min_isr_partitions",
        "Partitions this node leads whose ISR is smaller than min.insync.replicas (acks=all refused).",
        vec![(String::new(), under_min)],
    );
    o
}
