"""confluent-kafka's schema-registry serializers against shardlog's registry, for
tests/schemas.rs. Each mode prints one JSON line with what it saw.

  python3 schema_client.py produce REGISTRY BOOTSTRAP TOPIC   # Avro and JSON Schema, with growth and breakage
  python3 schema_client.py consume REGISTRY BOOTSTRAP TOPIC   # reads both topics back with the deserializers
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def avro(fields):
    return json.dumps({"type": "record", "name": "Order", "namespace": "shop", "fields": fields})


AVRO_V1 = avro([{"name": "id", "type": "int"}, {"name": "item", "type": "string"}])
# Growth: an optional field with a default.
AVRO_V2 = avro([
    {"name": "id", "type": "int"},
    {"name": "item", "type": "string"},
    {"name": "note", "type": ["null", "string"], "default": None},
])
# Breakage: `id` changes from int to string.
AVRO_BAD = avro([{"name": "id", "type": "string"}, {"name": "item", "type": "string"}])
# Removing `item` (required by version 1 readers): breakage under FULL.
AVRO_REMOVED = avro([
    {"name": "id", "type": "int"},
    {"name": "note", "type": ["null", "string"], "default": None},
])


def event(props, required):
    return json.dumps({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Event",
        "type": "object",
        "properties": props,
        "required": required,
    })


JSON_V1 = event({"msg_id": {"type": "integer"}, "body": {"type": "string"}}, ["msg_id"])
JSON_V2 = event({
    "msg_id": {"type": "integer"},
    "body": {"type": "string"},
    "tags": {"type": "array", "items": {"type": "string"}},
}, ["msg_id"])
JSON_BAD = event({"msg_id": {"type": "string"}, "body": {"type": "string"}}, ["msg_id"])


def refusal(fn):
    try:
        fn()
    except SchemaRegistryError as e:
        return {"status": e.http_status_code, "code": e.error_code, "message": e.error_message}
    return None


def produce(registry, bootstrap, topic):
    sr = SchemaRegistryClient({"url": registry})
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    out = {}
    avro_ctx = SerializationContext(topic + "-avro", MessageField.VALUE)
    s1 = AvroSerializer(sr, AVRO_V1)
    p.produce(topic + "-avro", value=s1({"id": 1, "item": "apple"}, avro_ctx))
    s2 = AvroSerializer(sr, AVRO_V2)
    p.produce(topic + "-avro", value=s2({"id": 2, "item": "pear", "note": "ripe"}, avro_ctx))
    bad = AvroSerializer(sr, AVRO_BAD)
    out["avro_bad"] = refusal(lambda: bad({"id": "3", "item": "fig"}, avro_ctx))
    subject = topic + "-avro-value"
    out["avro_versions"] = sr.get_versions(subject)
    out["avro_latest_id"] = sr.get_latest_version(subject).schema_id
    out["avro_compatible_bad"] = sr.test_compatibility(subject, Schema(AVRO_BAD, "AVRO"))
    sr.set_compatibility(subject_name=subject, level="FULL")
    out["avro_removed_full"] = refusal(
        lambda: sr.register_schema(subject, Schema(AVRO_REMOVED, "AVRO")))
    out["avro_level"] = sr.get_compatibility(subject)

    json_ctx = SerializationContext(topic + "-json", MessageField.VALUE)
    j1 = JSONSerializer(JSON_V1, sr)
    p.produce(topic + "-json", value=j1({"msg_id": 1, "body": "hello"}, json_ctx))
    j2 = JSONSerializer(JSON_V2, sr)
    p.produce(topic + "-json", value=j2({"msg_id": 2, "body": "again", "tags": ["x"]}, json_ctx))
    jbad = JSONSerializer(JSON_BAD, sr)
    out["json_bad"] = refusal(lambda: jbad({"msg_id": "3", "body": "no"}, json_ctx))
    out["json_versions"] = sr.get_versions(topic + "-json-value")
    p.flush(30)
    print(json.dumps(out))


def consume_topic(bootstrap, topic, deserializer, want):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"schemas-{topic}-{time.time()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append(deserializer(m.value(), SerializationContext(topic, MessageField.VALUE)))
    c.close()
    return got


def consume(registry, bootstrap, topic):
    sr = SchemaRegistryClient({"url": registry})
    out = {
        "avro": consume_topic(bootstrap, topic + "-avro", AvroDeserializer(sr), 2),
        "json": consume_topic(bootstrap, topic + "-json", JSONDeserializer(JSON_V2, schema_registry_client=sr), 2),
    }
    print(json.dumps(out))




def mixed(registry, bootstrap, topic):
    """One batch to partition 0 holding valid and invalid records; prints what the
    producer was told per record."""
    sr = SchemaRegistryClient({"url": registry})
    ctx = SerializationContext(topic, MessageField.VALUE)
    ser = AvroSerializer(sr, AVRO_V1)
    good = [ser({"id": i, "item": f"ok-{i}"}, ctx) for i in range(3)]
    # Not in the wire format; a registered id with a payload that does not decode; an
    # id nobody registered.
    bad = [b"plain text", good[0][:5] + b"\xff", b"\x00\x00\x00\x03\xe7" + good[0][5:]]
    values = [good[0], bad[0], good[1], bad[1], good[2], bad[2]]
    p = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 200,
        "enable.idempotence": True,
    })
    results = [None] * len(values)

    def report(i):
        def cb(err, msg):
            results[i] = {"error": err.name() if err else None, "offset": msg.offset()}
        return cb

    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=0, key=f"k{i}".encode(), on_delivery=report(i))
    p.flush(30)
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    mode, registry, bootstrap, topic = sys.argv[1:5]
    {"produce": produce, "consume": consume, "mixed": mixed}[mode]("http://" + registry, bootstrap, topic)
