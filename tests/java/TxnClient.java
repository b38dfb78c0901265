// The Java client's transactions against shardlog: commits and aborts over every
// partition of TOPIC, what read_committed and read_uncommitted consumers see, a zombie
// fenced by a second instance with the same transactional id, and a
// consume-transform-produce pass with sendOffsetsToTransaction (KIP-447 group metadata)
// copying TOPIC to TOPIC-out. Prints one line of counts for tests/transactions.rs.
//
// java TxnClient BOOTSTRAP TOPIC PARTITIONS

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnClient {
    static String bootstrap;

    static KafkaProducer<String, String> producer(String txnId) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("transactional.id", txnId);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    static Properties consumerProps(String group, String isolation) {
        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        if (group != null) {
            c.put("group.id", group);
        }
        c.put("isolation.level", isolation);
        c.put("auto.offset.reset", "earliest");
        c.put("enable.auto.commit", "false");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        return c;
    }

    static List<TopicPartition> partitions(String topic, int n) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            tps.add(new TopicPartition(topic, i));
        }
        return tps;
    }

    /** Reads every partition from the start until `want` values, then 2 s more. */
    static List<String> readAll(String topic, int n, String isolation, int want) {
        List<String> got = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null, isolation))) {
            c.assign(partitions(topic, n));
            c.seekToBeginning(partitions(topic, n));
            long deadline = System.currentTimeMillis() + 30_000;
            long quietUntil = Long.MAX_VALUE;
            while (System.currentTimeMillis() < Math.min(deadline, quietUntil)) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    got.add(r.value());
                }
                if (got.size() >= want && quietUntil == Long.MAX_VALUE) {
                    quietUntil = System.currentTimeMillis() + 2000;
                }
            }
        }
        return got;
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        String topic = args[1];
        int n = Integer.parseInt(args[2]);

        KafkaProducer<String, String> first = producer("java-txn");
        first.initTransactions();
        String[] labels = {"c1", "a1", "c2"};
        for (String label : labels) {
            first.beginTransaction();
            for (int i = 0; i < 20; i++) {
                first.send(new ProducerRecord<>(topic, i % n, "k" + i, label + "-" + i));
            }
            if (label.startsWith("c")) {
                first.commitTransaction();
            } else {
                first.flush();
                first.abortTransaction();
            }
        }
        List<String> committed = readAll(topic, n, "read_committed", 40);
        List<String> uncommitted = readAll(topic, n, "read_uncommitted", 60);
        long abortedSeen = committed.stream().filter(v -> v.startsWith("a1-")).count();

        // A second instance fences the first, whose open transaction is aborted.
        first.beginTransaction();
        first.send(new ProducerRecord<>(topic, 0, "z", "zombie-0"));
        first.flush();
        KafkaProducer<String, String> second = producer("java-txn");
        second.initTransactions();
        String fenced = "none";
        try {
            first.send(new ProducerRecord<>(topic, 1, "z", "zombie-1"));
            first.commitTransaction();
        } catch (ProducerFencedException e) {
            fenced = "ProducerFenced";
        } catch (KafkaException e) {
            fenced = e.getClass().getSimpleName();
        }
        first.close(Duration.ofSeconds(5));
        second.beginTransaction();
        second.send(new ProducerRecord<>(topic, 0, "k", "c3-0"));
        second.commitTransaction();

        // Consume-transform-produce: the group's offsets commit with the output.
        String out = topic + "-out";
        int copied = 0;
        Map<TopicPartition, OffsetAndMetadata> last = new HashMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps("java-ctp", "read_committed"))) {
            c.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (copied < 41 && System.currentTimeMillis() < deadline) {
                var records = c.poll(Duration.ofMillis(200));
                if (records.isEmpty()) {
                    continue;
                }
                second.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    second.send(new ProducerRecord<>(out, r.partition(), r.key(), "out-" + r.value()));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    copied++;
                }
                second.sendOffsetsToTransaction(offsets, c.groupMetadata());
                second.commitTransaction();
                last.putAll(offsets);
            }
        }
        second.close(Duration.ofSeconds(5));
        List<String> output = readAll(out, n, "read_committed", copied);
        // The group's committed offsets are where the transactions left them.
        boolean offsetsKept;
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps("java-ctp", "read_committed"))) {
            Map<TopicPartition, OffsetAndMetadata> now = c.committed(new java.util.HashSet<>(partitions(topic, n)));
            offsetsKept = !last.isEmpty();
            for (var e : last.entrySet()) {
                OffsetAndMetadata o = now.get(e.getKey());
                offsetsKept &= o != null && o.offset() == e.getValue().offset();
            }
        }
        System.out.println("committed=" + committed.size() + " aborted-seen=" + abortedSeen
                + " uncommitted=" + uncommitted.size() + " fenced=" + fenced + " copied=" + copied
                + " output=" + output.size() + " offsets-kept=" + offsetsKept);
    }
}
