"""Broker CPU per GB with schema validation off, `id` and `full`, side by side.

Usage: python3 benches/schema_cost.py BOOTSTRAP REGISTRY BROKER_PID [messages] [rounds]
Creates topics `sv-none`, `sv-id`, `sv-full` (4 partitions) with the shardlog CLI on PATH
(or $SHARDLOG_BIN), registers one Avro schema under each topic's value subject, then
produces the same framed Avro records to each topic in turn, reading the broker's CPU time
(user + system, /proc/PID/stat) before and after. Prints CPU seconds per GB of values and
the ratio to no validation. COMPRESSION=lz4 (or gzip, snappy, zstd) compresses the batches.
"""
import json
import os
import struct
import subprocess
import sys
import time
import urllib.request

from confluent_kafka import Producer

bootstrap, registry, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 1_000_000
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 2
shardlog = os.environ.get("SHARDLOG_BIN", "shardlog")
ticks = os.sysconf("SC_CLK_TCK")

SCHEMA = {
    "type": "record", "name": "Reading", "namespace": "bench",
    "fields": [
        {"name": "sensor", "type": "string"},
        {"name": "at", "type": "long"},
        {"name": "value", "type": "double"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}


def zigzag(v):
    v = (v << 1) ^ (v >> 63)
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def avro_string(s):
    b = s.encode()
    return zigzag(len(b)) + b


def payload(i):
    tags = [f"site-{i % 7}", "calibrated", "rack-12"]
    body = avro_string(f"sensor-{i % 1000:04d}") + zigzag(1_700_000_000_000 + i)
    body += struct.pack("<d", i * 0.5)
    body += zigzag(len(tags)) + b"".join(avro_string(t) for t in tags) + b"\x00"
    return body


def cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "sensor": {"type": "string"}, "at": {"type": "integer"}, "value": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["sensor", "at", "value"],
}


def json_payload(i):
    return json.dumps({"sensor": f"sensor-{i % 1000:04d}", "at": 1_700_000_000_000 + i,
                       "value": i * 0.5, "tags": [f"site-{i % 7}", "calibrated", "rack-12"]},
                      separators=(",", ":")).encode()


def register(subject, schema=SCHEMA, kind=None):
    doc = {"schema": json.dumps(schema)}
    if kind:
        doc["schemaType"] = kind
    body = json.dumps(doc).encode()
    req = urllib.request.Request(
        f"http://{registry}/subjects/{subject}/versions", data=body, method="POST",
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    return json.load(urllib.request.urlopen(req))["id"]


def run(topic, values):
    p = Producer({
        "bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
        "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000,
        "compression.type": os.environ.get("COMPRESSION", "none"),
    })
    before, start = cpu(), time.time()
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, v, partition=i % 4)
                break
            except BufferError:
                p.poll(0.001)
    p.flush(120)
    return cpu() - before, time.time() - start


def topic(name, mode):
    subprocess.run([shardlog, "topic", "create", name, "--partitions", "4",
                    "--config", f"schema.validation={mode}", "--bootstrap", bootstrap],
                   capture_output=True)


def compare(label, runs):
    """runs: (mode, topic, values); prints CPU s/GB of each beside the first."""
    gb = sum(len(v) for v in runs[0][2]) / 1e9
    print(f"{label}: {n} records, {gb * 1e3:.0f} MB of values, {len(runs[0][2][0])} bytes each")
    results = {m: [] for m, _, _ in runs}
    for r in range(rounds):
        for m, t, values in runs:
            secs, wall = run(t, values)
            results[m].append(secs / gb)
            print(f"round {r + 1} {m:5} {secs:6.2f} CPU s  {secs / gb:6.2f} CPU s/GB  {n / wall:9.0f} msg/s")
    base = min(results[runs[0][0]])
    for m, _, _ in runs:
        best = min(results[m])
        print(f"{label} {m:5} best {best:6.2f} CPU s/GB  {best / base:5.2f}x of none")


for m in ["none", "id", "full"]:
    topic(f"sv-{m}", m)
    register(f"sv-{m}-value")
avro_id = register("sv-full-value")
values = [b"\x00" + struct.pack(">I", avro_id) + payload(i) for i in range(n)]
compare("Avro", [(m, f"sv-{m}", values) for m in ["none", "id", "full"]])
del values
topic("sv-json-none", "none")
topic("sv-json-full", "full")
json_id = register("sv-json-full-value", JSON_SCHEMA, "JSON")
values = [b"\x00" + struct.pack(">I", json_id) + json_payload(i) for i in range(n)]
compare("JSON", [("none", "sv-json-none", values), ("full", "sv-json-full", values)])
