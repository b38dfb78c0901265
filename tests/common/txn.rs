//! The Python transactional clients (tests/py/txn_client.py) as the transaction tests run
//! them, and what they print.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/txn_client.py")
}

pub fn py_cmd(args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg(script()).args(args).env_remove("LD_LIBRARY_PATH");
    c
}

/// Runs a mode to its end and returns its JSON line.
pub fn py(args: &[&str]) -> Value {
    let out = py_cmd(args).output().expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

pub fn values(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// (partition, offset, value) triples → values per partition in offset order.
pub fn by_partition(v: &Value) -> BTreeMap<i64, Vec<(i64, String)>> {
    let mut out: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    for x in v.as_array().into_iter().flatten() {
        let p = x[0].as_i64().unwrap_or(-1);
        let o = x[1].as_i64().unwrap_or(-1);
        out.entry(p)
            .or_default()
            .push((o, x[2].as_str().unwrap_or_default().to_string()));
    }
    out
}

/// Reads `topic` read_committed through `bootstrap` and asserts it holds "out-v{i}" for
/// every i < n, each exactly once (what the transform mode writes).
pub fn assert_transformed_exactly_once(bootstrap: &str, topic: &str, n: usize) {
    let r = py(&["read", bootstrap, topic, "read_committed", &n.to_string()]);
    let got = values(&r["values"]);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &got {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        dups.is_empty(),
        "written more than once: {:?}",
        &dups[..dups.len().min(10)]
    );
    assert_eq!(counts.len(), n, "every input transformed");
    assert!((0..n).all(|i| counts.contains_key(format!("out-v{i}").as_str())));
}

/// Writes "v{i}" for i < n to partitions 0 and 1 of `topic` alternately (an idempotent
/// producer): the transform mode's input.
pub fn fill_inputs(bootstrap: &str, topic: &str, n: usize) {
    let fill = format!(
        "from confluent_kafka import Producer\n\
         p = Producer({{'bootstrap.servers': '{bootstrap}', 'enable.idempotence': True}})\n\
         for i in range({n}):\n    p.produce('{topic}', f'v{{i}}'.encode(), partition=i % 2)\n\
         assert p.flush(30) == 0\n"
    );
    let st = Command::new("python3")
        .args(["-c", &fill])
        .env_remove("LD_LIBRARY_PATH")
        .status()
        .expect("python3");
    assert!(st.success(), "inputs not written");
}
