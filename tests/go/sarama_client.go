// Debian's sarama (1.22) against shardlog: the older request versions it sends
// (CreateTopics v0 and v1, DescribeConfigs v0, OffsetCommit v1). Used by
// tests/old_clients.rs.
//
//	sarama_client setup BOOTSTRAP TOPIC COUNT   create TOPIC (v1) and TOPIC-v0 (v0),
//	                                            describe TOPIC's configs (v0), produce COUNT
//	sarama_client consume BOOTSTRAP TOPIC GROUP WANT
//	                                            read WANT records in a consumer group,
//	                                            committing (v1); prints how many came
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

func config(v sarama.KafkaVersion) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = v
	c.ClientID = "sarama-test"
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.CommitInterval = 200 * time.Millisecond
	return c
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	os.Exit(1)
}

func setup(bootstrap, topic string, count int) {
	addrs := []string{bootstrap}
	// 0.11 speaks CreateTopics v1; 0.10.2 speaks v0.
	for _, step := range []struct {
		v    sarama.KafkaVersion
		name string
	}{{sarama.V0_11_0_0, topic}, {sarama.V0_10_2_0, topic + "-v0"}} {
		admin, err := sarama.NewClusterAdmin(addrs, config(step.v))
		if err != nil {
			fail("admin", err)
		}
		retention := "3600000"
		err = admin.CreateTopic(step.name, &sarama.TopicDetail{
			NumPartitions:     2,
			ReplicationFactor: 1,
			ConfigEntries:     map[string]*string{"retention.ms": &retention},
		}, false)
		if err != nil {
			fail("create "+step.name, err)
		}
		admin.Close()
	}
	admin, err := sarama.NewClusterAdmin(addrs, config(sarama.V0_11_0_0))
	if err != nil {
		fail("admin", err)
	}
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	if err != nil {
		fail("describe configs", err)
	}
	for _, e := range entries {
		if e.Name == "retention.ms" || e.Name == "cleanup.policy" {
			fmt.Printf("config %s=%s default=%v\n", e.Name, e.Value, e.Default)
		}
	}
	admin.Close()
	p, err := sarama.NewSyncProducer(addrs, config(sarama.V0_11_0_0))
	if err != nil {
		fail("producer", err)
	}
	for i := 0; i < count; i++ {
		msg := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("s%d", i))}
		if _, _, err := p.SendMessage(msg); err != nil {
			fail("produce", err)
		}
	}
	p.Close()
	fmt.Printf("produced %d\n", count)
}

type handler struct {
	mu   sync.Mutex
	seen map[string]int
	want int
	done chan struct{}
	once sync.Once
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
		h.mu.Lock()
		h.seen[string(m.Value)]++
		total := 0
		for _, n := range h.seen {
			total += n
		}
		h.mu.Unlock()
		if total >= h.want {
			h.once.Do(func() { close(h.done) })
		}
	}
	return nil
}

func consume(bootstrap, topic, group string, want int) {
	g, err := sarama.NewConsumerGroup([]string{bootstrap}, group, config(sarama.V0_11_0_0))
	if err != nil {
		fail("consumer group", err)
	}
	h := &handler{seen: map[string]int{}, want: want, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "consume: %v\n", err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	select {
	case <-h.done:
	case <-time.After(60 * time.Second):
	}
	// Records arriving after the count are counted too (none should).
	time.Sleep(2 * time.Second)
	cancel()
	// Close commits what was marked (OffsetCommit v1).
	if err := g.Close(); err != nil {
		fail("close", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	total := 0
	for _, n := range h.seen {
		total += n
	}
	fmt.Printf("consumed %d distinct %d\n", total, len(h.seen))
}

func main() {
	if len(os.Args) < 5 {
		fail("usage", fmt.Errorf("see the comment at the top"))
	}
	switch os.Args[1] {
	case "setup":
		n, _ := strconv.Atoi(os.Args[4])
		setup(os.Args[2], os.Args[3], n)
	case "consume":
		n, _ := strconv.Atoi(os.Args[5])
		consume(os.Args[2], os.Args[3], os.Args[4], n)
	default:
		fail("mode", fmt.Errorf("unknown %s", os.Args[1]))
	}
}
