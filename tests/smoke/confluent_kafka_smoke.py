"""confluent-kafka (PyPI, bundled librdkafka) against shardlog: create a topic with the
AdminClient, produce with acks=all and zstd, read everything back with a group consumer,
commit, and check a new member of the group resumes after the commits."""
import os
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def start(binary, data):
    for attempt in range(20):
        port = 20000 + (os.getpid() * 7 + attempt * 7919) % 30000
        log = open(os.path.join(data, "broker.log"), "w+")
        proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir",
             os.path.join(data, "data"), "--cores", "2", "--metrics-listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=log)
        for _ in range(100):
            log.seek(0)
            if "listening on" in log.read():
                return proc, f"127.0.0.1:{port}"
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.kill()
        proc.wait()
    sys.exit("broker did not start")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/shardlog"
    with tempfile.TemporaryDirectory() as data:
        proc, bootstrap = start(binary, data)
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for fut in admin.create_topics([NewTopic("py", num_partitions=3, replication_factor=1)]).values():
                fut.result(30)
            delivered = []
            producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                 "compression.type": "zstd", "linger.ms": 5})
            n = 10000
            for i in range(n):
                producer.produce("py", key=f"k{i % 50}", value=f"v{i}",
                                 on_delivery=lambda err, msg: delivered.append(err))
                if i % 1000 == 0:
                    producer.poll(0)
            assert producer.flush(60) == 0, "undelivered messages"
            assert len(delivered) == n and all(e is None for e in delivered), "delivery errors"

            # A group consumer (subscribe, coordinator, rebalance, commits).
            conf = {"bootstrap.servers": bootstrap, "group.id": "py-group",
                    "auto.offset.reset": "earliest", "enable.auto.commit": False,
                    "session.timeout.ms": 6000}
            consumer = Consumer(conf)
            consumer.subscribe(["py"])
            seen = set()
            deadline = time.time() + 60
            while len(seen) < n and time.time() < deadline:
                m = consumer.poll(0.5)
                if m is None:
                    continue
                assert m.error() is None, m.error()
                seen.add(m.value().decode())
            consumer.commit(asynchronous=False)
            consumer.close()
            assert len(seen) == n, f"read {len(seen)} of {n}"
            # The group's commits hold: a new member of the group finds nothing left to read.
            consumer = Consumer(conf)
            consumer.subscribe(["py"])
            extra = 0
            deadline = time.time() + 8
            while time.time() < deadline:
                m = consumer.poll(0.5)
                if m is not None and m.error() is None:
                    extra += 1
            consumer.close()
            assert extra == 0, f"{extra} messages re-read after commit"
            # Topic configs: IncrementalAlterConfigs sets and validates.
            from confluent_kafka.admin import ConfigResource, ConfigEntry, AlterConfigOpType
            ok = ConfigResource("topic", "py", incremental_configs=[
                ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
            for fut in admin.incremental_alter_configs([ok]).values():
                fut.result(30)
            bad = ConfigResource("topic", "py", incremental_configs=[
                ConfigEntry("segment.bytes", "tiny", incremental_operation=AlterConfigOpType.SET)])
            for fut in admin.incremental_alter_configs([bad]).values():
                try:
                    fut.result(30)
                    raise AssertionError("a bad config value was accepted")
                except Exception as e:
                    assert "INVALID_CONFIG" in str(e), e
            described = admin.describe_configs([ConfigResource("topic", "py")])
            for fut in described.values():
                assert fut.result(30)["retention.ms"].value == "3600000"
            del producer, admin
            print(f"confluent-kafka smoke: ok ({n} zstd records, 3 partitions, group consumer + commits, incremental alter configs)")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
