// Produces records through one node of a shardlog cluster with the Java client's default
// (idempotent, acks=all) producer, then reads them as a consumer group through another
// node, committing; prints what it counted.
//
// java ClusterRoundTrip PRODUCE_BOOTSTRAP CONSUME_BOOTSTRAP TOPIC GROUP COUNT

import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class ClusterRoundTrip {
    public static void main(String[] args) throws Exception {
        String produceAt = args[0], consumeAt = args[1], topic = args[2], group = args[3];
        int count = Integer.parseInt(args[4]);

        Properties pp = new Properties();
        pp.put("bootstrap.servers", produceAt);
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        int produced = 0;
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            for (int i = 0; i < count; i++) {
                p.send(new ProducerRecord<>(topic, "k" + i, "v" + i)).get();
                produced++;
            }
        }

        Properties cp = new Properties();
        cp.put("bootstrap.servers", consumeAt);
        cp.put("group.id", group);
        cp.put("auto.offset.reset", "earliest");
        cp.put("enable.auto.commit", "false");
        cp.put("key.deserializer", StringDeserializer.class.getName());
        cp.put("value.deserializer", StringDeserializer.class.getName());
        int consumed = 0;
        Set<String> distinct = new HashSet<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
            c.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (distinct.size() < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    consumed++;
                    distinct.add(r.value());
                }
            }
            c.commitSync();
        }
        System.out.println("produced=" + produced + " consumed=" + consumed + " distinct=" + distinct.size());
    }
}
