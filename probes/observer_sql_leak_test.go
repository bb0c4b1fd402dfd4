package probes_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
)

// TestSQLNoGoroutineLeak: an SQL observer that queried a real server leaves
// no goroutine of its pool (connections, health checks) behind after Close.
func TestSQLNoGoroutineLeak(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	pgExec(t, dsn, `CREATE TABLE IF NOT EXISTS leak_events (event_id uuid NOT NULL, "timestamp" timestamptz NOT NULL)`)
	ids := newIDs(3)
	insert(t, dsn, "leak_events", time.Now(), ids...)
	// Taken once the server is up: its own goroutines are not the observer's.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s, err := probes.NewSQL(context.Background(), "db", config.SQLObserver{
		DSN: dsn, StatementTimeout: 5 * time.Second, MaxConns: 2,
		Query: `SELECT event_id::text, count(*) FROM leak_events WHERE event_id = ANY($1::uuid[]) AND "timestamp" >= $2 GROUP BY event_id`,
	}, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Two chunks of at most 2 ids: both pool connections may be in use.
	got, err := observe(t, s, probes.Query{Pending: ids, Since: time.Now().Add(-time.Hour)})
	if err != nil || len(got) != len(ids) {
		t.Fatalf("sightings %v, %v; want %d", got, err, len(ids))
	}
}
