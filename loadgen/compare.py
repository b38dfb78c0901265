#!/usr/bin/env python3
"""Runs the same workloads against two Kafka-API brokers, one after the other, and prints
each figure side by side with the ratio A/B.

    python3 loadgen/compare.py 127.0.0.1:9092 127.0.0.1:19092 [--duration 10] [--loadgen PATH]

Workloads (each on a fresh topic per broker, so neither inherits the other's data):
  1. closed loop, 1 KiB, acks=1: the most each broker acknowledges (shardlog-loadgen);
  2. closed loop, 1 KiB, acks=all;
  3. open loop at half of the smaller closed-loop maximum of (1), so both get the same offered
     load: produce-ack p50/p99/p99.9;
  4. if RDKAFKA_PERFORMANCE names librdkafka's rdkafka_performance binary: its producer,
     1 KiB x --rdkafka-messages, linger.ms=5, and its consumer reading them back.

The two brokers share this machine's cores with the client: run them one at a time (start A,
run with --only a, stop it, start B, --only b, both with the same --open-rate) when both
cannot stay up without disturbing each other; a run with --only writes its half to --save,
and once both halves are there the table is printed.
Every figure comes from a tool's own output; nothing here is asserted.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time


def loadgen(path, bootstrap, topic, duration, extra):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [path, "--bootstrap", bootstrap, "--topic", topic, "--size", "1024",
           "--duration", str(duration), "--consumers", "0", "--quiet", "--json", out] + extra
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration * 4 + 120)
    if r.returncode != 0:
        raise SystemExit(f"loadgen against {bootstrap} failed: {r.stderr.strip()[-500:]}")
    with open(out) as f:
        run = json.load(f)["run"]
    os.unlink(out)
    lat = run["ack_latency_ms"]
    return {"msgs_per_sec": run["acked_msgs_per_sec"], "mb_per_sec": run["acked_mb_per_sec"],
            "p50_ms": lat["p50"], "p99_ms": lat["p99"], "p999_ms": lat["p999"],
            "failed": run["failed"]}


def rdkafka_performance(binary, bootstrap, topic, messages):
    """Producer then consumer figures from rdkafka_performance's summary lines."""
    out = {}
    for mode, args in (("produce", ["-P", "-s", "1024", "-c", str(messages),
                                    "-X", "linger.ms=5", "-X", "batch.size=1000000"]),
                       ("consume", ["-C", "-o", "beginning", "-c", str(messages), "-p", "0"])):
        r = subprocess.run([binary, "-t", topic, "-b", bootstrap, "-q"] + args,
                           capture_output=True, text=True, timeout=600)
        text = r.stdout + r.stderr
        rates = re.findall(r"(\d+) msgs/s and ([\d.]+) MB/s", text)
        if rates:
            msgs, mb = rates[-1]
            out[f"rdkafka {mode} msgs/s"] = float(msgs)
            out[f"rdkafka {mode} MB/s"] = float(mb)
    return out


def closed(args, bootstrap, side):
    res = {}
    stamp = f"{side}-{int(time.time())}"
    for name, acks in (("closed acks=1", "1"), ("closed acks=all", "all")):
        r = loadgen(args.loadgen, bootstrap, f"cmp-{stamp}-acks{acks}", args.duration,
                    ["--acks", acks])
        res[f"{name} msgs/s"] = r["msgs_per_sec"]
        res[f"{name} MB/s"] = r["mb_per_sec"]
        res[f"{name} p99 ms"] = r["p99_ms"]
    return res


def opened(args, bootstrap, side, rate):
    r = loadgen(args.loadgen, bootstrap, f"cmp-{side}-{int(time.time())}-open", args.duration,
                ["--acks", "1", "--rate", str(rate)])
    res = {"open loop offered msgs/s": rate, "open loop acked msgs/s": r["msgs_per_sec"]}
    for q in ("p50", "p99", "p999"):
        res[f"open loop {q} ms"] = r[f"{q}_ms"]
    perf = os.environ.get("RDKAFKA_PERFORMANCE")
    if perf:
        res.update(rdkafka_performance(perf, bootstrap, f"cmp-{side}-{int(time.time())}-rdk",
                                       args.rdkafka_messages))
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", help="broker A bootstrap address")
    p.add_argument("b", help="broker B bootstrap address")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per loadgen run")
    p.add_argument("--loadgen", default="./target/release/shardlog-loadgen")
    p.add_argument("--rdkafka-messages", type=int, default=1_000_000)
    p.add_argument("--open-rate", type=float, default=0,
                   help="open-loop rate for (3); default: half the smaller closed-loop maximum")
    p.add_argument("--only", choices=["a", "b"], help="measure one broker and --save its half")
    p.add_argument("--save", default="compare-results.json")
    args = p.parse_args()
    addr = {"a": args.a, "b": args.b}
    saved = {}
    if args.only and os.path.exists(args.save):
        with open(args.save) as f:
            saved = json.load(f)
    sides = [args.only] if args.only else ["a", "b"]
    results = {k: v["figures"] for k, v in saved.items()}
    for side in sides:
        print(f"measuring {side} = {addr[side]}: closed loop", file=sys.stderr)
        results[side] = closed(args, addr[side], side)
    # The same offered load for both: half of the smaller maximum known.
    rate = args.open_rate or 0.5 * min(r["closed acks=1 msgs/s"] for r in results.values())
    for side in sides:
        print(f"measuring {side} = {addr[side]}: open loop at {rate:.0f} msg/s", file=sys.stderr)
        results[side].update(opened(args, addr[side], side, rate))
    if args.only:
        saved[args.only] = {"address": addr[args.only], "figures": results[args.only]}
        with open(args.save, "w") as f:
            json.dump(saved, f, indent=2)
        print(f"saved {args.only} to {args.save}", file=sys.stderr)
        if not all(k in saved for k in ("a", "b")):
            return
    keys = [k for k in results["a"] if k in results["b"]]
    print(f"{'figure':<30}{'A':>14}{'B':>14}{'A/B':>9}")
    for k in keys:
        a, b = results["a"][k], results["b"][k]
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"{k:<30}{a:>14.2f}{b:>14.2f}{ratio:>9}")


if __name__ == "__main__":
    main()
