// A group member with auto-commit consumes everything, then a second member joins. The Java
// client commits what the first one consumed before it rejoins (onJoinPrepare); a broker
// that refuses that commit makes the group deliver every record again after the rebalance.
//
// Usage: java RebalanceCommit BOOTSTRAP TOPIC GROUP EXPECTED
// Prints: "first=<n> first-after=<n> second=<n>" and exits 0; exits 2 if the first member
// did not get EXPECTED records in time.
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class RebalanceCommit {
    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, String group) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("enable.auto.commit", "true");
        // Only the commit before rejoining can save the first member's progress.
        p.put("auto.commit.interval.ms", "600000");
        p.put("auto.offset.reset", "earliest");
        p.put("partition.assignment.strategy", "org.apache.kafka.clients.consumer.RangeAssignor");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        return new KafkaConsumer<>(p);
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        int expected = Integer.parseInt(args[3]);
        KafkaConsumer<byte[], byte[]> first = consumer(bootstrap, group);
        first.subscribe(List.of(topic));
        int firstCount = 0;
        long deadline = System.currentTimeMillis() + 60_000;
        while (firstCount < expected && System.currentTimeMillis() < deadline) {
            firstCount += first.poll(Duration.ofMillis(200)).count();
        }
        if (firstCount < expected) {
            System.out.println("first=" + firstCount + " (timed out)");
            System.exit(2);
        }
        AtomicInteger secondCount = new AtomicInteger();
        Thread second = new Thread(() -> {
            try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap, group)) {
                c.subscribe(List.of(topic));
                long end = System.currentTimeMillis() + 15_000;
                while (System.currentTimeMillis() < end) {
                    secondCount.addAndGet(c.poll(Duration.ofMillis(200)).count());
                }
            }
        });
        second.start();
        int after = 0;
        long end = System.currentTimeMillis() + 15_000;
        while (System.currentTimeMillis() < end) {
            ConsumerRecords<byte[], byte[]> rs = first.poll(Duration.ofMillis(200));
            after += rs.count();
        }
        second.join();
        first.close();
        System.out.println("first=" + firstCount + " first-after=" + after + " second=" + secondCount.get());
    }
}
