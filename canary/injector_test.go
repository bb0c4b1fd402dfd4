package canary

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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
// names, and to new ones once the topic grows, without a failed produce: the
// injector's metadata (kadm's) learns of new partitions before the producing
// client's own does, and a record for a partition the client does not know
// fails at once ("invalid record partitioning choice of 2 from 2
// available"). The test holds the client's view stale, deterministically:
// the injector reads metadata through a client of its own, and the
// producing client's metadata requests (the only ones that allow topic
// auto-creation) get the response from before the topic grew.
func TestInjectorFollowsPartitions(t *testing.T) {
	c, addrs := testenv.Kafka(t, kfake.SeedTopics(2, "raw-telemetry"))
	cl := testenv.KafkaClient(t, addrs, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic("raw-telemetry"),
		kgo.AllowAutoTopicCreation())
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
	in.adm = kadm.NewClient(testenv.KafkaClient(t, addrs))

	// The topic's metadata as it is before it grows, from another client.
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("raw-telemetry")}}
	stale, err := req.RequestWith(context.Background(), testenv.KafkaClient(t, addrs))
	if err != nil {
		t.Fatal(err)
	}
	// While held, the producing client's metadata requests get that answer.
	var held atomic.Bool
	var staleServed atomic.Int64
	c.ControlKey(int16(kmsg.Metadata), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.MetadataRequest)
		if !held.Load() || !req.AllowAutoTopicCreation {
			return nil, nil, false
		}
		resp := *stale
		resp.Version = req.Version
		staleServed.Add(1)
		return &resp, nil, true
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- in.Run(ctx) }()
	defer func() { cancel(); <-done }()

	count := func(p int32) int { mu.Lock(); defer mu.Unlock(); return perPartition[p] }
	testenv.WaitFor(t, 20*time.Second, "markers on both partitions", func() bool { return count(0) > 3 && count(1) > 3 })
	held.Store(true)
	if _, err := kadm.NewClient(testenv.KafkaClient(t, addrs)).CreatePartitions(ctx, 2, "raw-telemetry"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "the injector to see 4 partitions", func() bool { return len(in.Partitions()) == 4 })
	// Rounds go out while the producing client still knows 2 partitions.
	testenv.WaitFor(t, 20*time.Second, "the producing client's metadata answered stale", func() bool { return staleServed.Load() > 0 })
	c0 := count(0)
	testenv.WaitFor(t, 20*time.Second, "rounds after the topic grew", func() bool { return count(0) > c0+5 })
	if n := count(2) + count(3); n != 0 {
		t.Errorf("%d markers acknowledged on partitions the producing client does not know", n)
	}
	held.Store(false)
	testenv.WaitFor(t, 20*time.Second, "markers on the new partitions", func() bool { return count(2) > 3 && count(3) > 3 })
	if got := testutil.ToFloat64(m.Partitions); got != 4 {
		t.Errorf("ingest_partitions = %v, want 4", got)
	}
	for _, reason := range ProduceFailureReasons {
		if got := testutil.ToFloat64(m.ProduceFailures.WithLabelValues(reason)); got != 0 {
			t.Errorf("produce_failures_total{reason=%q} = %v, want 0", reason, got)
		}
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
