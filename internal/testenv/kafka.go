package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka starts an in-process Kafka cluster (kfake) configured by opts, closed
// when the test ends, and returns it with its brokers' addresses. The options
// are kfake's own: kfake.SeedTopics(partitions, topics...) for topics that
// exist from the start, kfake.NumBrokers (three unless set),
// kfake.DefaultNumPartitions, kfake.TLS, kfake.EnableSASL with
// kfake.Superuser, and so on. Faults go through the returned cluster
// (ControlKey, MoveTopicPartition).
func Kafka(tb testing.TB, opts ...kfake.Opt) (*kfake.Cluster, []string) {
	tb.Helper()
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		tb.Fatalf("start kfake cluster: %v", err)
	}
	tb.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// KafkaClient returns a franz-go client seeded with addrs and configured by
// opts, closed when the test ends.
func KafkaClient(tb testing.TB, addrs []string, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		tb.Fatalf("kafka client: %v", err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

// Produce writes recs through cl and waits until every one is acknowledged,
// failing the test on the first error or after 30 s.
func Produce(tb testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		tb.Fatalf("produce: %v", err)
	}
}
