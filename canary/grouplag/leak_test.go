package grouplag_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary/grouplag"
	"github.com/slo-scout/slo-canary/internal/testenv"
)

// TestGroupLagNoGoroutineLeak: a lag watcher that refreshed against a real
// (in-process) cluster leaves no goroutine of its own or of its Kafka client
// behind once Run has returned and Close was called.
func TestGroupLagNoGoroutineLeak(t *testing.T) {
	testenv.VerifyNoLeaks(t)
	_, addrs := testenv.Kafka(t, kfake.SeedTopics(2, "raw-telemetry"))
	// A group behind on a partition, so that refreshes also fetch the first
	// uncommitted record for its age.
	cl := testenv.KafkaClient(t, addrs, kgo.DefaultProduceTopic("raw-telemetry"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	testenv.Produce(t, cl, &kgo.Record{Value: []byte("a")}, &kgo.Record{Value: []byte("b")})
	func() {
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer pcancel()
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: "raw-telemetry", Partition: 0, At: 1})
		if err := kadm.NewClient(cl).CommitAllOffsets(pctx, "capsule-ingest-consumer", offs); err != nil {
			t.Fatal(err)
		}
	}()
	gl, err := grouplag.New(grouplag.Config{
		KafkaOpts: []kgo.Opt{kgo.SeedBrokers(addrs...)}, Groups: []string{"capsule-ingest-consumer"},
		Interval: 50 * time.Millisecond, Timeout: 5 * time.Second,
		Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gl.Run(ctx) }()
	first := time.Time{}
	testenv.WaitFor(t, 10*time.Second, "two refreshes that saw the lag", func() bool {
		snap := gl.Latest()
		if n, _ := snap.MaxRecords(); n != 1 {
			return false
		}
		at := snap.At
		if first.IsZero() {
			first = at
			return false
		}
		return at.After(first)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
