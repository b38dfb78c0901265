// kafkajs transactions against shardlog: commits and aborts over every partition of TOPIC,
// what read_committed and read_uncommitted consumers see, a zombie fenced by a second
// producer with the same transactional id, and a transaction that copies TOPIC to
// TOPIC-out with its offsets sent to group js-ctp (sendOffsets). Prints one JSON line
// for tests/transactions.rs.
//
// node txn_client.js BOOTSTRAP TOPIC PARTITIONS
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic, partitionsArg] = process.argv.slice(2);
const n = Number(partitionsArg);
const kafka = new Kafka({
  clientId: "kafkajs-txn",
  brokers: bootstrap.split(","),
  logLevel: logLevel.NOTHING,
  retry: { retries: 8 },
});

function producer() {
  return kafka.producer({
    transactionalId: "js-txn",
    idempotent: true,
    maxInFlightRequests: 1,
  });
}

// Reads `t` from the start until `want` values, then 2 s more (bounded by 30 s).
async function readAll(t, readUncommitted, want) {
  const consumer = kafka.consumer({
    groupId: `js-reader-${readUncommitted}-${t}-${Date.now()}`,
    readUncommitted,
  });
  await consumer.connect();
  await consumer.subscribe({ topic: t, fromBeginning: true });
  const got = [];
  await new Promise((resolve) => {
    const deadline = setTimeout(resolve, 30000);
    let quiet = null;
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        got.push({ partition, offset: Number(message.offset), value: message.value.toString() });
        if (got.length >= want && quiet === null) {
          quiet = setTimeout(() => {
            clearTimeout(deadline);
            resolve();
          }, 2000);
        }
      },
    });
  });
  await consumer.disconnect();
  return got;
}

async function main() {
  const first = producer();
  await first.connect();
  for (const [label, commit] of [["c1", true], ["a1", false], ["c2", true]]) {
    const txn = await first.transaction();
    const messages = [];
    for (let i = 0; i < 20; i++) messages.push({ value: `${label}-${i}`, partition: i % n });
    await txn.send({ topic, messages });
    if (commit) await txn.commit();
    else await txn.abort();
  }
  const committed = await readAll(topic, false, 40);
  const uncommitted = await readAll(topic, true, 60);

  // A second producer with the same id fences the first, whose open transaction aborts.
  const zombie = await first.transaction();
  await zombie.send({ topic, messages: [{ value: "zombie-0", partition: 0 }] });
  const second = producer();
  await second.connect();
  // kafkajs takes its producer id (InitProducerId) when its first transaction begins.
  const txn = await second.transaction();
  let fenced = "none";
  try {
    await zombie.send({ topic, messages: [{ value: "zombie-1", partition: 1 }] });
    await zombie.commit();
  } catch (e) {
    fenced = e.type || e.name;
  }
  await first.disconnect();

  // Copy what read_committed sees to TOPIC-out in one transaction, with the offsets.
  const out = `${topic}-out`;
  await txn.send({
    topic: out,
    messages: committed.map((m) => ({ value: `out-${m.value}`, partition: m.partition })),
  });
  const next = new Map();
  for (const m of committed) {
    next.set(m.partition, Math.max(next.get(m.partition) || 0, m.offset + 1));
  }
  await txn.sendOffsets({
    consumerGroupId: "js-ctp",
    topics: [{ topic, partitions: [...next].map(([partition, o]) => ({ partition, offset: String(o) })) }],
  });
  await txn.commit();
  await second.disconnect();
  const output = await readAll(out, false, committed.length);

  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchOffsets({ groupId: "js-ctp", topics: [topic] });
  await admin.disconnect();
  let offsetsKept = next.size > 0;
  for (const [partition, o] of next) {
    const got = offsets[0].partitions.find((p) => p.partition === partition);
    offsetsKept = offsetsKept && got !== undefined && Number(got.offset) === o;
  }
  console.log(
    JSON.stringify({
      committed: committed.map((m) => m.value),
      uncommitted: uncommitted.length,
      fenced,
      output: output.length,
      offsetsKept,
      offsets: offsets[0].partitions,
    }),
  );
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
