package testbed_test

import (
	"context"
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
	testenv.WaitFor(t, 20*time.Second, "forwards done and a database error", func() bool {
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
