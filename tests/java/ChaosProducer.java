// Writes numbered values with the Java client's idempotent acks=all producer until its
// standard input closes, printing every acknowledgement as "ack PARTITION OFFSET VALUE" and
// every failed send as "err VALUE EXCEPTION";
// then flushes and prints "done SENT". Used by the replication chaos test.
//
// java ChaosProducer BOOTSTRAP TOPIC PREFIX

import java.io.PrintStream;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class ChaosProducer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], prefix = args[2];
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("acks", "all");
        pp.put("enable.idempotence", "true");
        pp.put("linger.ms", "2");
        pp.put("delivery.timeout.ms", "60000");
        pp.put("request.timeout.ms", "5000");
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        PrintStream out = System.out;
        AtomicBoolean stop = new AtomicBoolean(false);

        Thread watcher = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                }
            } catch (Exception e) {
                // stdin gone: stop as well
            }
            stop.set(true);
        });
        watcher.setDaemon(true);
        watcher.start();
        long sent = 0;
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            final KafkaProducer<String, String> producer = p;
            Thread leaders = new Thread(() -> {
                // Every 2 s: where the client thinks each partition's leader is (printed by
                // the test when sends failed).
                try {
                    while (!stop.get()) {
                        Thread.sleep(2000);
                        String l = "info " + System.currentTimeMillis() + " leaders " + producer.partitionsFor(topic);
                        synchronized (out) {
                            out.println(l.replace('\n', ' '));
                        }
                    }
                } catch (Exception e) {
                    // stop
                }
            });
            leaders.setDaemon(true);
            leaders.start();
            while (!stop.get()) {
                String v = String.format("%s%09d", prefix, sent);
                p.send(new ProducerRecord<>(topic, v, v), (md, e) -> {
                    synchronized (out) {
                        if (e == null) {
                            out.println("ack " + md.partition() + " " + md.offset() + " " + v);
                        } else {
                            out.println("err " + v + " " + e.getClass().getSimpleName() + ": " + e.getMessage());
                        }
                    }
                });
                sent++;
                if (sent % 10 == 0) {
                    Thread.sleep(10);
                }
            }
            p.flush();
        }
        synchronized (out) {
            out.println("done " + sent);
            out.flush();
        }
    }
}
