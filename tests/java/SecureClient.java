// Produces COUNT values to TOPIC over a secured listener with the Java client, reads them back
// with a consumer, and prints "ok N" with how many it read back. Used by tests/security.rs.
//
// java SecureClient BOOTSTRAP TOPIC COUNT CA_PEM scram USER PASSWORD
// java SecureClient BOOTSTRAP TOPIC COUNT CA_PEM mtls KEYSTORE_PEM

import java.time.Duration;
import java.util.Collections;
import java.util.HashSet;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class SecureClient {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        int count = Integer.parseInt(args[2]);
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.location", args[3]);
        if (args[4].equals("scram")) {
            p.put("security.protocol", "SASL_SSL");
            p.put("sasl.mechanism", "SCRAM-SHA-512");
            p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                    + args[5] + "\" password=\"" + args[6] + "\";");
        } else {
            p.put("security.protocol", "SSL");
            p.put("ssl.keystore.type", "PEM");
            p.put("ssl.keystore.location", args[5]);
        }
        Properties pp = new Properties();
        pp.putAll(p);
        pp.put("acks", "all");
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        String prefix = "java-" + args[4] + "-";
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(topic, prefix + i)).get();
            }
        }
        Properties cp = new Properties();
        cp.putAll(p);
        cp.put("group.id", "java-" + args[4]);
        cp.put("auto.offset.reset", "earliest");
        cp.put("key.deserializer", StringDeserializer.class.getName());
        cp.put("value.deserializer", StringDeserializer.class.getName());
        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
            consumer.subscribe(Collections.singletonList(topic));
            long deadline = System.currentTimeMillis() + 30000;
            while (seen.size() < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    if (r.value().startsWith(prefix)) {
                        seen.add(r.value());
                    }
                }
            }
            consumer.commitSync();
        }
        System.out.println("ok " + seen.size());
    }
}
