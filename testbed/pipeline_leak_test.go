package testbed_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestPipelineNoGoroutineLeak: Close leaves no goroutine of the pipeline,
// its clients, its pool or its Kafka cluster behind.
func TestPipelineNoGoroutineLeak(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	// Taken once the server is up: its goroutines are not the pipeline's.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p, err := testbed.NewPipeline(context.Background(), testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	produce(t, p.Brokers(), canary.EncodingAvro, 2, newEvents(10, 2))
	waitProcessed(t, p, 10, 10, 10)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
