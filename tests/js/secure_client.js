// Produces COUNT values to TOPIC with kafkajs over SASL_SSL (SCRAM-SHA-512), reads them back
// in a consumer group, and prints "ok N" with how many it read back. Used by tests/security.rs.
//
// node secure_client.js BOOTSTRAP TOPIC COUNT CA_PEM scram USER PASSWORD
// node secure_client.js BOOTSTRAP TOPIC COUNT CA_PEM mtls CERT_PEM KEY_PEM
const fs = require("fs");
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, topic, countArg, ca, mode, a, b] = process.argv.slice(2);
  const count = Number(countArg);
  const ssl = { ca: [fs.readFileSync(ca, "utf-8")] };
  let sasl;
  if (mode === "scram") {
    sasl = { mechanism: "scram-sha-512", username: a, password: b };
  } else {
    ssl.cert = fs.readFileSync(a, "utf-8");
    ssl.key = fs.readFileSync(b, "utf-8");
  }
  const kafka = new Kafka({
    clientId: "kafkajs-secure",
    brokers: [bootstrap],
    ssl,
    sasl,
    logLevel: logLevel.NOTHING,
  });
  const prefix = `js-${mode}-`;
  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) messages.push({ value: `${prefix}${i}` });
  await producer.send({ topic, messages });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `kafkajs-${mode}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        const v = message.value.toString();
        if (v.startsWith(prefix)) seen.add(v);
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
