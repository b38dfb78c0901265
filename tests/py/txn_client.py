"""confluent-kafka (librdkafka) transactional clients for tests/transactions.rs.

Each mode prints one JSON line with what it saw; the Rust test asserts on it.
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def producer(bootstrap, txn_id, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
    }
    conf.update(extra)
    return Producer(conf)


def consume_all(bootstrap, topic, isolation, expect_at_least, timeout=20.0, group=None):
    """Reads `topic` from the start until `expect_at_least` values or quiet after that."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group or f"reader-{isolation}-{time.time()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    quiet_until = None
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            if len(got) >= expect_at_least:
                if quiet_until is None:
                    quiet_until = time.time() + 2
                elif time.time() > quiet_until:
                    break
            continue
        if m.error():
            continue
        got.append([m.partition(), m.offset(), m.value().decode()])
    c.close()
    return got


def commit_abort(bootstrap, topic, partitions):
    p = producer(bootstrap, "txn-commit-abort")
    p.init_transactions(30)
    for label, commit in (("c1", True), ("a1", False), ("c2", True)):
        p.begin_transaction()
        for i in range(20):
            p.produce(topic, f"{label}-{i}".encode(), partition=i % partitions)
        # Written before the end (an abort would otherwise drop what is still queued).
        p.flush(10)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    # An open transaction holds read_committed readers back at its first offset.
    p.begin_transaction()
    for i in range(4):
        p.produce(topic, f"open-{i}".encode(), partition=i % partitions)
    p.flush(10)
    committed = consume_all(bootstrap, topic, "read_committed", 40)
    uncommitted = consume_all(bootstrap, topic, "read_uncommitted", 64)
    p.commit_transaction(30)
    after = consume_all(bootstrap, topic, "read_committed", 44)
    print(json.dumps({"committed": committed, "uncommitted": uncommitted, "after": after}))


def fenced(bootstrap, topic):
    """A second instance with the same transactional id fences the first."""
    a = producer(bootstrap, "txn-zombie")
    a.init_transactions(30)
    a.begin_transaction()
    a.produce(topic, b"zombie-0", partition=0)
    a.flush(10)
    b = producer(bootstrap, "txn-zombie")
    b.init_transactions(30)
    b.begin_transaction()
    b.produce(topic, b"new-0", partition=0)
    b.commit_transaction(30)
    err = ""
    try:
        a.produce(topic, b"zombie-1", partition=1)
        a.commit_transaction(10)
    except KafkaException as e:
        err = e.args[0].name() if e.args else str(e)
    except Exception as e:  # noqa: BLE001 - the test prints whatever the client raised
        err = str(e)
    got = consume_all(bootstrap, topic, "read_committed", 1)
    print(json.dumps({"zombie_error": err, "committed": [v for _, _, v in got]}))


def abandon(bootstrap, topic):
    """Starts a transaction with a short timeout and exits without ending it."""
    p = producer(bootstrap, "txn-abandoned", **{"transaction.timeout.ms": 3000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, f"abandoned-{i}".encode(), partition=0)
    p.flush(10)
    print(json.dumps({"ok": True}))


def produce_committed(bootstrap, topic, txn_id, label, n):
    p = producer(bootstrap, txn_id)
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(n):
        p.produce(topic, f"{label}-{i}".encode(), partition=0)
    p.commit_transaction(30)
    print(json.dumps({"ok": True}))


def begin_only(bootstrap, topic, txn_id, label, n):
    """Leaves a transaction open (flushed, not ended) and sleeps: the test kills it."""
    p = producer(bootstrap, txn_id)
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(n):
        p.produce(topic, f"{label}-{i}".encode(), partition=0)
    p.flush(10)
    print(json.dumps({"ok": True}), flush=True)
    time.sleep(600)


def transform(bootstrap, src, dst, group, txn_id, total):
    """Consume-transform-produce, exactly once: each input value v becomes "out-v" in `dst`,
    with the consumer's offsets committed in the same transaction. Exits 0 once the group's
    committed offsets cover `total` inputs; any error exits non-zero (the test restarts it)."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    c.subscribe([src])
    p = producer(bootstrap, txn_id)
    p.init_transactions(30)
    done = 0
    idle_since = time.time()
    while True:
        msgs = c.consume(20, 1.0)
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            committed = c.committed([TopicPartition(src, i) for i in range(2)], 10)
            if sum(max(tp.offset, 0) for tp in committed) >= total:
                print(json.dumps({"ok": True, "done": done}), flush=True)
                return
            if time.time() - idle_since > 60:
                sys.exit(4)
            continue
        idle_since = time.time()
        p.begin_transaction()
        for m in msgs:
            p.produce(dst, b"out-" + m.value(), partition=m.partition())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
        p.commit_transaction(30)
        done += len(msgs)


def read(bootstrap, topic, isolation, n):
    got = consume_all(bootstrap, topic, isolation, int(n))
    print(json.dumps({"values": [v for _, _, v in got]}))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {
        "commit_abort": lambda: commit_abort(args[0], args[1], int(args[2])),
        "fenced": lambda: fenced(args[0], args[1]),
        "abandon": lambda: abandon(args[0], args[1]),
        "produce_committed": lambda: produce_committed(args[0], args[1], args[2], args[3], int(args[4])),
        "begin_only": lambda: begin_only(args[0], args[1], args[2], args[3], int(args[4])),
        "read": lambda: read(args[0], args[1], args[2], args[3]),
        "transform": lambda: transform(args[0], args[1], args[2], args[3], args[4], int(args[5])),
    }[mode]()
