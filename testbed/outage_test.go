package testbed_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestPipelineDatabaseOutage: while PostgreSQL is down the capsule stage goes
// on, the database writes are retried, and nothing is lost once it is back.
func TestPipelineDatabaseOutage(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: pg.DSN("postgres")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	events := newEvents(20, 2)
	produce(t, p.Brokers(), canary.EncodingAvro, 2, events)
	waitFor(t, 20*time.Second, "forwards done and a database error", func() bool {
		s := p.Stats()
		return s.Forwarded == 20 && s.DBErrors > 0
	})
	if s := p.Stats(); s.DBRows != 0 {
		t.Fatalf("rows written with the database down: %+v", s)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitProcessed(t, p, 20, 20, 20)
	for _, id := range idsOf(events) {
		if tr, _ := p.Truth(id); tr.DBVisible.IsZero() || tr.DBCopies != 1 {
			t.Errorf("event %s: truth %+v", id, tr)
		}
	}
}

// TestPipelineNoGoroutineLeak: Close leaves no goroutine of the pipeline,
// its clients, its pool or its Kafka cluster behind.
func TestPipelineNoGoroutineLeak(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	before := runtime.NumGoroutine()
	p, err := testbed.NewPipeline(context.Background(), testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	produce(t, p.Brokers(), canary.EncodingAvro, 2, newEvents(10, 2))
	waitProcessed(t, p, 10, 10, 10)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.Close()
	waitFor(t, 10*time.Second, "goroutines back to the count before NewPipeline", func() bool {
		return runtime.NumGoroutine() <= before
	})
}
