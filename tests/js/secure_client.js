// Produces COUNT values to TOPIC with kafkajs over SASL_SSL (SCRAM-SHA-512), reads them back
// in a consumer group, and prints "ok N" with how many it read back. Used by tests/security.rs.
//
// node secure_client.js BOOTSTRAP TOPIC COUNT CA_PEM USER PASSWORD
const fs = require("fs");
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, topic, countArg, ca, username, password] = process.argv.slice(2);
  const count = Number(countArg);
  const kafka = new Kafka({
    clientId: "kafkajs-secure",
    brokers: [bootstrap],
    ssl: { ca: [fs.readFileSync(ca, "utf-8")] },
    sasl: { mechanism: "scram-sha-512", username, password },
    logLevel: logLevel.NOTHING,
  });
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) messages.push({ value: `js-${i}` });
  await producer.send({ topic, messages });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: "kafkajs-secure" });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        const v = message.value.toString();
        if (v.startsWith("js-")) seen.add(v);
        if (seen.size >= count) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  console.log(`ok ${seen.size}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
