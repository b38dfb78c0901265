"""Transactional produce against plain idempotent produce, same load, side by side.

Usage: python3 benches/txn_cost.py BOOTSTRAP [messages] [per_txn...]
Creates nothing: the topic `txn-bench` (4 partitions) must exist. Prints messages/s and
MB/s for idempotent produce and for transactions committing every N messages.
"""
import sys
import time

from confluent_kafka import Producer

bootstrap = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
sizes = [int(x) for x in sys.argv[3:]] or [100, 1000, 10000]
value = b"x" * 200


def run(label, conf, per_txn):
    # A queue large enough that the client never waits for room (librdkafka's default of
    # 100,000 messages would hold the idempotent run back, not the broker).
    p = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "acks": "all",
        "queue.buffering.max.messages": 1_000_000,
        **conf,
    })
    if per_txn:
        p.init_transactions(30)
    start = time.time()
    sent = 0
    while sent < n:
        if per_txn:
            p.begin_transaction()
        k = per_txn or n
        for i in range(k):
            while True:
                try:
                    p.produce("txn-bench", value, partition=(sent + i) % 4)
                    break
                except BufferError:
                    p.poll(0.001)
        sent += k
        if per_txn:
            p.commit_transaction(30)
    p.flush(60)
    dt = time.time() - start
    print(f"{label:32} {n / dt:10.0f} msg/s {n * len(value) / dt / 1e6:7.1f} MB/s")
    return n / dt


base = run("idempotent", {"enable.idempotence": True}, 0)
for size in sizes:
    r = run(f"transactional, {size}/txn", {"transactional.id": f"bench-{size}-{time.time()}"}, size)
    print(f"{'':32} {r / base:10.2f}x of idempotent")
