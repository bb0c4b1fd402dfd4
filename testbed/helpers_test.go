package testbed_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestMain starts one PostgreSQL server for the whole package and points
// testenv at it, so each test gets a fresh database without paying for an
// initdb of its own. An explicit SLO_CANARY_TEST_POSTGRES_DSN wins; without
// initdb the tests themselves skip (or fail under CI) through testenv.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv(testenv.PostgresDSNEnv) == "" && testbed.PostgresAvailable() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		pg, err := testbed.StartPostgres(ctx)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "shared postgres: %v (tests start their own)\n", err)
		} else {
			defer pg.Close()
			os.Setenv(testenv.PostgresDSNEnv, pg.DSN("postgres"))
			defer os.Unsetenv(testenv.PostgresDSNEnv)
		}
	}
	return m.Run()
}

// startPipeline creates and runs a pipeline until the test ends.
func startPipeline(t testing.TB, cfg testbed.PipelineConfig) *testbed.Pipeline {
	t.Helper()
	return testenv.Pipeline(t, cfg)
}

// newEvents builds n canary marker events, spread over partitions, with the
// optional fields filled in varying ways.
func newEvents(n int, partitions int32) []canary.TelemetryEvent {
	sev := []string{"DEBUG", "INFO", "WARN", "ERROR", "FATAL", ""}
	out := make([]canary.TelemetryEvent, n)
	for i := range out {
		m := canary.Marker{
			ID: uuid.New(), Instance: "testbed-test", Run: "run-1",
			Partition: int32(i) % partitions, Seq: uint64(i/int(partitions)) + 1, SentAt: time.Now(),
		}
		ev := m.Event(canary.EventOptions{ServiceName: fmt.Sprintf("svc-%d", i%3), Environment: "prod", EventType: "log", Severity: sev[i%len(sev)]})
		if i%2 == 0 {
			tr, sp, raw := fmt.Sprintf("trace-%d", i), fmt.Sprintf("span-%d", i), fmt.Sprintf("s3://blobs/%d", i)
			ev.TraceID, ev.SpanID, ev.RawBlobS3Key = &tr, &sp, &raw
			ev.EventType = "trace"
		}
		out[i] = ev
	}
	return out
}

// produce sends the events, event i to partition i%partitions, keyed by id.
// It returns the time just before the first send: every event was produced
// after it.
func produce(t testing.TB, brokers []string, enc canary.Encoding, partitions int32, events []canary.TelemetryEvent) time.Time {
	t.Helper()
	recs := make([]*kgo.Record, len(events))
	for i := range events {
		v, err := canary.Encode(enc, &events[i])
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		recs[i] = &kgo.Record{Key: []byte(events[i].EventID), Value: v, Partition: int32(i) % partitions}
	}
	return produceRecords(t, brokers, recs)
}

func produceRecords(t testing.TB, brokers []string, recs []*kgo.Record) time.Time {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("raw-telemetry"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer cl.Close()
	start := time.Now()
	testenv.Produce(t, cl, recs...)
	return start
}

// waitProcessed waits until every consumed event has reached its sinks.
func waitProcessed(t testing.TB, p *testbed.Pipeline, consumed, dbRows, forwarded int64) testbed.Stats {
	t.Helper()
	var s testbed.Stats
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("consumed=%d db_rows=%d forwarded=%d", consumed, dbRows, forwarded), func() bool {
		s = p.Stats()
		return s.Consumed == consumed && s.DBRows == dbRows && s.Forwarded == forwarded
	})
	return s
}

type capsuleRecord struct {
	Partition int32
	Offset    int64
	Capsule   testbed.CapsuleEvent
}

// readCapsules reads n records from the start of the capsule topic.
func readCapsules(t testing.TB, brokers []string, n int) []capsuleRecord {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("capsule-events"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []capsuleRecord
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d capsules: %v", len(out), n, ctx.Err())
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch capsules: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			var c testbed.CapsuleEvent
			if err := json.Unmarshal(r.Value, &c); err != nil {
				t.Fatalf("capsule at %d/%d: %v", r.Partition, r.Offset, err)
			}
			out = append(out, capsuleRecord{Partition: r.Partition, Offset: r.Offset, Capsule: c})
		})
	}
	if len(out) != n {
		t.Fatalf("read %d capsules, want %d", len(out), n)
	}
	return out
}

// dbIDs returns how many rows each event id has in telemetry_events.
func dbIDs(t testing.TB, dsn string) map[uuid.UUID]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT event_id, count(*) FROM telemetry_events GROUP BY event_id`)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	out := make(map[uuid.UUID]int)
	var (
		id uuid.UUID
		n  int
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil }); err != nil {
		t.Fatalf("query: %v", err)
	}
	return out
}

func idsOf(events []canary.TelemetryEvent) []uuid.UUID {
	out := make([]uuid.UUID, len(events))
	for i := range events {
		out[i] = uuid.MustParse(events[i].EventID)
	}
	return out
}
