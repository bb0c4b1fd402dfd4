package canary_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
)

// TestServiceNoGoroutineLeak: a service that ran (injector, recovery, a Kafka
// observer, the checkpoint loop) leaves no goroutine behind once Run returns.
func TestServiceNoGoroutineLeak(t *testing.T) {
	testenv.VerifyNoLeaks(t)
	_, addrs := testenv.Kafka(t, kfake.SeedTopics(3, "raw-telemetry"))

	c := config.Defaults()
	c.Kafka.Brokers = addrs
	c.Canary.Rate = 5
	c.Canary.StateFile = filepath.Join(t.TempDir(), "state")
	c.Canary.CheckpointInterval = 200 * time.Millisecond
	c.Canary.ShutdownTimeout = 2 * time.Second
	rt := config.ObserverDefaults()
	rt.Type, rt.PollInterval = "kafka", 100*time.Millisecond
	rt.Kafka.Topic, rt.Kafka.Extract = "raw-telemetry", "avro"
	c.Observers = map[string]config.Observer{"roundtrip": rt}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	svc, err := canary.New(context.Background(), canary.Options{Config: &c, Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	testenv.WaitFor(t, 30*time.Second, "markers observed on the round trip", func() bool {
		return svc.Summary().Stages[0].Observed >= 10
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
