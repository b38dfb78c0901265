#!/usr/bin/env python3
"""What TLS and authorization cost the broker: CPU-seconds per GB produced and fetched, side
by side in one run, with confluent-kafka (librdkafka) as the client.

    cargo build --release --bins
    python3 benches/security_cost.py target/release/shardlog [MESSAGES] [ROUNDS]

Each mode starts the release broker (2 shards, fresh data directory), makes a topic of 8
partitions (and, where the mode needs them, a SCRAM user and ACLs) over the loopback
PLAINTEXT admin listener, produces MESSAGES records of 1 KiB (default 400,000; linger 5 ms,
1 MB batches, acks=1), then consumes them all back, reading the broker's CPU time (user +
system, /proc/PID/stat) around each phase. Modes:

- plaintext: PLAINTEXT listener.
- sasl: SASL_PLAINTEXT (SCRAM-SHA-512), no authorizer.
- authz: the same with the authorizer on and 1,000 unrelated ACLs
  beside the user's grants, so every produce and fetch is checked (per-connection cache).
- tls: SASL_SSL (SCRAM-SHA-512, TLS 1.3, rustls), no authorizer.

The client runs on the same machine: wall-clock rates are the pair's, CPU per GB is the
broker's own.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition

BIN = os.path.abspath(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 400_000
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
PAYLOAD = b"x" * 1024
TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port(n):
    for base in range(31000, 40000, 10):
        ok = True
        for i in range(n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", base + i))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return base
    raise SystemExit("no free ports")


def certs(d):
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench-ca")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "b.key", "-out", "b.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "b.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "b.pem", "-days", "2", "-extfile", "san.cnf")
    with open(os.path.join(d, "keystore.pem"), "w") as f:
        f.write(open(os.path.join(d, "b.pem")).read() + open(os.path.join(d, "b.key")).read())


def cli(*args):
    subprocess.run([BIN, *args], check=True, capture_output=True)


def mode_run(mode, d):
    base = free_port(4)
    admin, sec = base, base + 2
    data = tempfile.mkdtemp(dir=d)
    toml = os.path.join(data, "b.toml")
    proto = {"plaintext": "PLAINTEXT", "sasl": "SASL_PLAINTEXT", "authz": "SASL_PLAINTEXT", "tls": "SASL_SSL"}[mode]
    lines = [f'listeners = "PLAINTEXT://127.0.0.1:{admin}' + (f',{proto}://127.0.0.1:{sec}"' if mode != "plaintext" else '"')]
    if mode == "tls":
        lines.append(f'"ssl.keystore.location" = "{d}/keystore.pem"')
    if mode == "authz":
        lines.append('"authorizer.class.name" = "shardlog"')
        lines.append('"super.users" = "User:ANONYMOUS"')
    open(toml, "w").write("\n".join(lines) + "\n")
    broker = subprocess.Popen([BIN, "serve", "--config", toml, "--data-dir", os.path.join(data, "d"), "--cores", "2", "--metrics-listen", "off"], stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        boot = f"127.0.0.1:{admin}"
        cli("topic", "create", "bench", "--partitions", "8", "--bootstrap", boot)
        conf = {"bootstrap.servers": boot}
        if mode != "plaintext":
            cli("user", "create", "alice", "--password", "pw", "--mechanism", "SCRAM-SHA-512", "--bootstrap", boot)
            conf = {"bootstrap.servers": f"127.0.0.1:{sec}", "security.protocol": proto, "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": "pw"}
            if mode == "tls":
                conf["ssl.ca.location"] = f"{d}/ca.pem"
        if mode == "authz":
            # 1,000 unrelated ACLs (one request), then alice's grants.
            others = []
            for i in range(1000):
                others += ["--allow-principal", f"User:u{i}"]
            cli("acl", "add", *others, "--operation", "read", "--topic", "other", "--bootstrap", boot)
            cli("acl", "add", "--allow-principal", "User:alice", "--operation", "write,read", "--topic", "bench", "--bootstrap", boot)
            cli("acl", "add", "--allow-principal", "User:alice", "--operation", "read", "--group", "bench", "--bootstrap", boot)
        p = Producer({**conf, "linger.ms": 5, "batch.size": 1_000_000, "acks": 1, "queue.buffering.max.messages": 1_000_000})
        c0, t0 = cpu(broker.pid), time.time()
        for i in range(N):
            while True:
                try:
                    p.produce("bench", PAYLOAD, partition=i % 8)
                    break
                except BufferError:
                    p.poll(0.01)
        assert p.flush(120) == 0
        c1, t1 = cpu(broker.pid), time.time()
        cons = Consumer({**conf, "group.id": "bench", "enable.auto.commit": False, "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
        cons.assign([TopicPartition("bench", i, 0) for i in range(8)])
        got = 0
        t2 = time.time()
        while got < N and time.time() - t2 < 120:
            for m in cons.consume(10000, 1.0):
                if m.error() is None:
                    got += 1
        c2, t3 = cpu(broker.pid), time.time()
        cons.close()
        gb = N * len(PAYLOAD) / 1e9
        return {
            "produce_mbs": gb * 1000 / (t1 - t0), "produce_cpu_gb": (c1 - c0) / gb,
            "fetch_mbs": gb * 1000 / (t3 - t2), "fetch_cpu_gb": (c2 - c1) / gb, "got": got,
        }
    finally:
        broker.terminate()
        broker.wait()


def main():
    with tempfile.TemporaryDirectory() as d:
        certs(d)
        rows = []
        for r in range(ROUNDS):
            order = ["plaintext", "sasl", "authz", "tls"]
            if r % 2:
                order.reverse()
            for m in order:
                res = mode_run(m, d)
                rows.append((m, res))
                print(f"{m:<10} produce {res['produce_mbs']:7.1f} MB/s  broker {res['produce_cpu_gb']:.2f} CPU-s/GB | fetch {res['fetch_mbs']:7.1f} MB/s  broker {res['fetch_cpu_gb']:.2f} CPU-s/GB  ({res['got']} read)", flush=True)


main()
