package canary

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

func TestInjectorIntervalHonoursRateCap(t *testing.T) {
	cases := []struct {
		rate, maxRate float64
		parts         int
		want          time.Duration
	}{
		{1, 100, 10, time.Second},         // a round a second, 10/s in all
		{1, 5, 10, 2 * time.Second},       // capped at 5/s in all
		{2, 0, 3, 500 * time.Millisecond}, // no cap
		{1, 100, 0, 0},                    // no partitions yet
		{100, 50, 1000, 20 * time.Second}, // a huge topic cannot make the canary the load
	}
	for _, c := range cases {
		in := &Injector{cfg: InjectorConfig{Rate: c.rate, MaxRate: c.maxRate}}
		if got := in.interval(c.parts); got != c.want {
			t.Errorf("rate %v cap %v over %d partitions: interval %v, want %v", c.rate, c.maxRate, c.parts, got, c.want)
		}
	}
}

// TestInjectorFollowsPartitions: markers go to every partition the metadata
// names, and to new ones once the topic grows.
func TestInjectorFollowsPartitions(t *testing.T) {
	_, addrs := testenv.Kafka(t, kfake.SeedTopics(2, "raw-telemetry"))
	cl := testenv.KafkaClient(t, addrs, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic("raw-telemetry"))
	tr, err := NewTracker(TrackerConfig{Stages: []StageConfig{{Name: "s", Deadline: time.Minute}}, Budget: time.Second, MaxTracked: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	perPartition := map[int32]int{}
	m := NewMetrics(prometheus.NewRegistry(), []string{"s"})
	in, err := NewInjector(InjectorConfig{
		Client: cl, Topic: "raw-telemetry", Instance: "i", Run: "r", Encoding: EncodingAvro,
		Event: EventOptions{ServiceName: "slo-canary", Environment: "prod", EventType: "log"},
		Rate:  50, MaxRate: 1000, MetadataRefresh: 100 * time.Millisecond,
		Tracker: tr, Metrics: m, Logger: slog.New(slog.DiscardHandler),
		Sent: func(mk Marker, err error) {
			if err != nil {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, kgo.ErrClientClosed) {
					t.Errorf("produce to partition %d: %v", mk.Partition, err)
				}
				return
			}
			mu.Lock()
			perPartition[mk.Partition]++
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- in.Run(ctx) }()
	defer func() { cancel(); <-done }()

	count := func(p int32) int { mu.Lock(); defer mu.Unlock(); return perPartition[p] }
	testenv.WaitFor(t, 20*time.Second, "markers on both partitions", func() bool { return count(0) > 3 && count(1) > 3 })
	if _, err := kadm.NewClient(cl).CreatePartitions(ctx, 2, "raw-telemetry"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "markers on the new partitions", func() bool { return count(2) > 3 && count(3) > 3 })
	if got := testutil.ToFloat64(m.Partitions); got != 4 {
		t.Errorf("ingest_partitions = %v, want 4", got)
	}
	// Sequence numbers are per partition and start at 1.
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, i := range tr.ord {
		e := tr.slot(i)
		if e.seq == 0 {
			t.Fatalf("marker with seq 0 on partition %d", e.partition)
		}
	}
}
