package testbed_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestPipelineRowsAndCapsules sends canary events through a fault-free
// pipeline and checks every column of every row, every capsule, the ground
// truth and the committed offsets.
func TestPipelineRowsAndCapsules(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDSN(t)
	const parts = 4
	p := startPipeline(t, testbed.PipelineConfig{Partitions: parts, PostgresDSN: dsn})
	events := newEvents(60, parts)
	produce(t, p.Brokers(), canary.EncodingAvro, parts, events)
	waitProcessed(t, p, 60, 60, 60)

	// Rows: every column as the contract maps it.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	type row struct {
		ts                        time.Time
		service, et               string
		sev, msg, tr, sp, rawBlob *string
		attrs                     map[string]string
	}
	got := make(map[string]row)
	rows, err := conn.Query(ctx, `SELECT e.event_id::text, e."timestamp", s.name, e.event_type::text, e.severity::text,
		e.message, e.trace_id, e.span_id, e.attributes, e.raw_blob_s3_key
		FROM telemetry_events e JOIN services s ON s.id = e.service_id`)
	if err != nil {
		t.Fatal(err)
	}
	var (
		id string
		r  row
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &r.ts, &r.service, &r.et, &r.sev, &r.msg, &r.tr, &r.sp, &r.attrs, &r.rawBlob}, func() error {
		got[id] = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(events) {
		t.Fatalf("%d rows, want %d", len(got), len(events))
	}
	wantSev := map[string]string{"DEBUG": "debug", "INFO": "info", "WARN": "warning", "ERROR": "error", "FATAL": "critical"}
	for _, ev := range events {
		r, ok := got[ev.EventID]
		if !ok {
			t.Fatalf("event %s has no row", ev.EventID)
		}
		if !r.ts.Equal(ev.Timestamp) || r.service != ev.ServiceName || r.et != ev.EventType {
			t.Errorf("event %s: row ts=%v service=%q type=%q, want %v %q %q", ev.EventID, r.ts, r.service, r.et, ev.Timestamp, ev.ServiceName, ev.EventType)
		}
		switch {
		case ev.Severity == nil && r.sev != nil:
			t.Errorf("event %s: severity %q, want NULL", ev.EventID, *r.sev)
		case ev.Severity != nil && (r.sev == nil || *r.sev != wantSev[*ev.Severity]):
			t.Errorf("event %s: severity %v, want %q", ev.EventID, r.sev, wantSev[*ev.Severity])
		}
		for name, pair := range map[string][2]*string{"message": {ev.Message, r.msg}, "trace_id": {ev.TraceID, r.tr}, "span_id": {ev.SpanID, r.sp}, "raw_blob_s3_key": {ev.RawBlobS3Key, r.rawBlob}} {
			if (pair[0] == nil) != (pair[1] == nil) || (pair[0] != nil && *pair[0] != *pair[1]) {
				t.Errorf("event %s: %s = %v, want %v", ev.EventID, name, pair[1], pair[0])
			}
		}
		if !maps.Equal(r.attrs, ev.Attributes) {
			t.Errorf("event %s: attributes %v, want %v", ev.EventID, r.attrs, ev.Attributes)
		}
	}

	// Capsules: one per event, sample = the event, same partition, and per
	// partition in the order produced (no faults, no reordering).
	caps := readCapsules(t, p.Brokers(), len(events))
	byID := make(map[string]canary.TelemetryEvent)
	for _, ev := range events {
		byID[ev.EventID] = ev
	}
	order := make(map[int32][]string)
	for _, c := range caps {
		if len(c.Capsule.SampleEventIDs) != 1 || c.Capsule.Count != 1 {
			t.Fatalf("capsule %+v: want one sample and count 1", c.Capsule)
		}
		ev, ok := byID[c.Capsule.SampleEventIDs[0]]
		if !ok {
			t.Fatalf("capsule for unknown event %q", c.Capsule.SampleEventIDs[0])
		}
		sum := sha256.Sum256([]byte(*ev.Message))
		if c.Capsule.FingerprintHash != hex.EncodeToString(sum[:]) || c.Capsule.Template != *ev.Message ||
			c.Capsule.ServiceName != ev.ServiceName || !c.Capsule.FirstSeenAt.Equal(ev.Timestamp) ||
			!c.Capsule.TimeBucket.Equal(ev.Timestamp.Truncate(time.Hour)) {
			t.Errorf("capsule %+v does not match event %+v", c.Capsule, ev)
		}
		order[c.Partition] = append(order[c.Partition], ev.EventID)
	}
	for i, ev := range events {
		part := int32(i) % parts
		if order[part][0] != ev.EventID {
			t.Fatalf("partition %d: capsule order differs from produce order at event %d", part, i)
		}
		order[part] = order[part][1:]
	}

	// Ground truth.
	for _, ev := range events {
		tr, ok := p.Truth(uuid.MustParse(ev.EventID))
		if !ok {
			t.Fatalf("no truth for %s", ev.EventID)
		}
		if tr.Consumed.IsZero() || tr.DBVisible.Before(tr.Consumed) || tr.Forwarded.Before(tr.Consumed) ||
			tr.DBCopies != 1 || tr.ForwardCopies != 1 || tr.Dropped || tr.Duplicated {
			t.Errorf("truth for %s: %+v", ev.EventID, tr)
		}
	}

	// Offsets are committed once both sinks have everything: lag drains to 0.
	adm := kadm.NewClient(newClient(t, p.Brokers()))
	testenv.WaitFor(t, 10*time.Second, "consumer-group lag 0", func() bool {
		lags, err := adm.Lag(ctx, "capsule-ingest-consumer")
		if err != nil {
			return false
		}
		l := lags["capsule-ingest-consumer"]
		return l.Error() == nil && l.Lag.Total() == 0 && len(l.Lag["raw-telemetry"]) == parts
	})
}

func newClient(t testing.TB, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestPipelineDelay checks that both sinks honour the delay: each event is
// visible delay (+-jitter) after it was produced, within scheduling slack.
func TestPipelineDelay(t *testing.T) {
	t.Parallel()
	const delay, jitter, slack = 700 * time.Millisecond, 200 * time.Millisecond, time.Second
	dsn := testenv.PostgresDSN(t)
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn, Seed: 1,
		Faults: testbed.Faults{Delay: delay, Jitter: jitter}})
	events := newEvents(40, 2)
	sent := produce(t, p.Brokers(), canary.EncodingAvro, 2, events)
	waitProcessed(t, p, 40, 40, 40)
	lags := make(map[time.Duration]bool)
	for _, id := range idsOf(events) {
		tr, _ := p.Truth(id)
		own := tr.Consumed.Sub(sent) // transit to the pipeline, not part of the delay
		for stage, at := range map[string]time.Time{"db": tr.DBVisible, "capsule": tr.Forwarded} {
			lag := at.Sub(sent)
			if lag < delay-jitter || lag > delay+jitter+own+slack {
				t.Errorf("event %s %s lag %v, want within [%v, %v]", id, stage, lag, delay-jitter, delay+jitter+own+slack)
			}
		}
		lags[tr.DBVisible.Sub(tr.Consumed).Round(10*time.Millisecond)] = true
	}
	if len(lags) < 5 {
		t.Errorf("jitter produced only %d distinct delays", len(lags))
	}
}

// TestPipelineDrop drops 10%: exactly the recorded ids are missing from both
// sinks, and everything else is in both.
func TestPipelineDrop(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDSN(t)
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 3, PostgresDSN: dsn, Seed: 42, Faults: testbed.Faults{DropPct: 10}})
	events := newEvents(200, 3)
	produce(t, p.Brokers(), canary.EncodingAvro, 3, events)
	testenv.WaitFor(t, 20*time.Second, "all consumed", func() bool { return p.Stats().Consumed == 200 })
	dropped := p.DroppedIDs()
	if len(dropped) < 5 || len(dropped) > 40 {
		t.Fatalf("%d of 200 dropped at 10%%", len(dropped))
	}
	kept := int64(200 - len(dropped))
	s := waitProcessed(t, p, 200, kept, kept)
	if s.Dropped != int64(len(dropped)) {
		t.Errorf("Stats.Dropped = %d, DroppedIDs has %d", s.Dropped, len(dropped))
	}
	isDropped := make(map[uuid.UUID]bool)
	for _, id := range dropped {
		isDropped[id] = true
		if tr, _ := p.Truth(id); !tr.Dropped || !tr.DBVisible.IsZero() || tr.ForwardCopies != 0 {
			t.Errorf("dropped %s has truth %+v", id, tr)
		}
	}
	inDB := dbIDs(t, dsn)
	inTopic := make(map[uuid.UUID]int)
	for _, c := range readCapsules(t, p.Brokers(), int(kept)) {
		inTopic[uuid.MustParse(c.Capsule.SampleEventIDs[0])]++
	}
	for _, id := range idsOf(events) {
		want := 1
		if isDropped[id] {
			want = 0
		}
		if inDB[id] != want || inTopic[id] != want {
			t.Errorf("event %s (dropped %v): %d rows, %d capsules", id, isDropped[id], inDB[id], inTopic[id])
		}
	}
}

// TestPipelineDuplicate duplicates 30%: the capsule topic carries two copies of
// exactly the recorded ids, the idempotent table one row of each.
func TestPipelineDuplicate(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDSN(t)
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 3, PostgresDSN: dsn, Seed: 7, Faults: testbed.Faults{DuplicatePct: 30}})
	events := newEvents(100, 3)
	produce(t, p.Brokers(), canary.EncodingAvro, 3, events)
	testenv.WaitFor(t, 20*time.Second, "all consumed", func() bool { return p.Stats().Consumed == 100 })
	dups := p.DuplicatedIDs()
	if len(dups) < 10 || len(dups) > 60 {
		t.Fatalf("%d of 100 duplicated at 30%%", len(dups))
	}
	s := waitProcessed(t, p, 100, 100, int64(100+len(dups)))
	if s.Duplicated != int64(len(dups)) || s.DBConflicts != int64(len(dups)) {
		t.Errorf("stats %+v, want %d duplicated and as many conflicts", s, len(dups))
	}
	isDup := make(map[uuid.UUID]bool)
	for _, id := range dups {
		isDup[id] = true
	}
	inTopic := make(map[uuid.UUID]int)
	for _, c := range readCapsules(t, p.Brokers(), 100+len(dups)) {
		inTopic[uuid.MustParse(c.Capsule.SampleEventIDs[0])]++
	}
	inDB := dbIDs(t, dsn)
	for _, id := range idsOf(events) {
		tr, _ := p.Truth(id)
		want := 1
		if isDup[id] {
			want = 2
		}
		if inTopic[id] != want || tr.ForwardCopies != want || tr.Duplicated != isDup[id] {
			t.Errorf("event %s: %d capsules, truth %+v, want %d copies", id, inTopic[id], tr, want)
		}
		if inDB[id] != 1 || tr.DBCopies != 1 {
			t.Errorf("event %s: %d rows, truth DBCopies %d, want 1", id, inDB[id], tr.DBCopies)
		}
	}
}

// TestPipelineStallResume: nothing becomes visible during a stall, offsets
// are not committed, and on resume everything is visible after resume + delay.
func TestPipelineStallResume(t *testing.T) {
	t.Parallel()
	const delay = 200 * time.Millisecond
	dsn := testenv.PostgresDSN(t)
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn, Faults: testbed.Faults{Delay: delay}})
	p.Stall()
	events := newEvents(30, 2)
	produce(t, p.Brokers(), canary.EncodingAvro, 2, events)
	// Queued == 30 means the scheduler holds all of them: none was released.
	testenv.WaitFor(t, 10*time.Second, "30 consumed and queued", func() bool {
		s := p.Stats()
		return s.Consumed == 30 && s.Queued == 30
	})
	if s := p.Stats(); s.DBRows != 0 || s.Forwarded != 0 || !s.Stalled {
		t.Fatalf("stalled pipeline delivered: %+v", s)
	}
	if n := len(dbIDs(t, dsn)); n != 0 {
		t.Fatalf("%d rows visible during the stall", n)
	}
	resumed := time.Now()
	p.Resume()
	waitProcessed(t, p, 30, 30, 30)
	for _, id := range idsOf(events) {
		tr, _ := p.Truth(id)
		if tr.Consumed.After(resumed) || tr.DBVisible.Before(resumed.Add(delay)) || tr.Forwarded.Before(resumed.Add(delay)) {
			t.Errorf("event %s: truth %+v, resumed at %v", id, tr, resumed)
		}
	}
}

// TestPipelineReorder: with Reorder the capsule order of a partition differs
// from its produce order (the fault-free order is checked in
// TestPipelineRowsAndCapsules).
func TestPipelineReorder(t *testing.T) {
	t.Parallel()
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 1, Seed: 3,
		Faults: testbed.Faults{Reorder: true, ReorderWindow: 300 * time.Millisecond}})
	events := newEvents(50, 1)
	produce(t, p.Brokers(), canary.EncodingAvro, 1, events)
	waitProcessed(t, p, 50, 0, 50)
	caps := readCapsules(t, p.Brokers(), 50)
	got := make([]string, len(caps))
	for i, c := range caps {
		got[i] = c.Capsule.SampleEventIDs[0]
	}
	want := make([]string, len(events))
	for i, ev := range events {
		want[i] = ev.EventID
	}
	if slices.Equal(got, want) {
		t.Fatal("capsules arrived in produce order despite Reorder")
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatal("reordered capsules are not the produced events")
	}
}

// TestPipelineJSON reads the JSON encoding: the canary's and the one
// SLO-Scout's performance tests send (upper-case event type, free-text
// environment, RFC 3339 timestamp accepted too).
func TestPipelineJSON(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDSN(t)
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn, Encoding: testbed.EncodingJSON})
	events := newEvents(10, 2)
	produce(t, p.Brokers(), canary.EncodingJSON, 2, events)
	perf := uuid.New()
	produceRecords(t, p.Brokers(), []*kgo.Record{{Value: []byte(`{"event_id":"` + perf.String() +
		`","service_name":"perf","environment":"performance-test","event_type":"LOG","timestamp":"2025-01-02T03:04:05.678Z","severity":"WARN","message":"hello","attributes":{}}`)}})
	waitProcessed(t, p, 11, 11, 11)
	in := dbIDs(t, dsn)
	for _, id := range append(idsOf(events), perf) {
		if in[id] != 1 {
			t.Errorf("event %s: %d rows", id, in[id])
		}
	}
}

// TestPipelineDecodeErrors: garbage and contract violations are counted, never
// fatal, and their offsets are committed like any other.
func TestPipelineDecodeErrors(t *testing.T) {
	t.Parallel()
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 1})
	good := newEvents(2, 1)
	bad := newEvents(1, 1)[0]
	bad.EventID = "not-a-uuid"
	v, err := canary.Encode(canary.EncodingAvro, &bad)
	if err != nil {
		t.Fatal(err)
	}
	v0, _ := canary.Encode(canary.EncodingAvro, &good[0])
	v1, _ := canary.Encode(canary.EncodingAvro, &good[1])
	produceRecords(t, p.Brokers(), []*kgo.Record{{Value: v0}, {Value: []byte("\xff\xfe garbage")}, {Value: v}, {Value: nil}, {Value: v1}})
	s := waitProcessed(t, p, 5, 0, 2)
	if s.DecodeErrors != 3 {
		t.Errorf("decode errors = %d, want 3", s.DecodeErrors)
	}
	adm := kadm.NewClient(newClient(t, p.Brokers()))
	testenv.WaitFor(t, 10*time.Second, "offsets committed past the bad records", func() bool {
		offs, err := adm.FetchOffsets(context.Background(), "capsule-ingest-consumer")
		if err != nil {
			return false
		}
		o, ok := offs.Lookup("raw-telemetry", 0)
		return ok && o.At == 5
	})
}

// TestTruthCap: the ground truth keeps the newest TruthCap events only.
func TestTruthCap(t *testing.T) {
	t.Parallel()
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 1, TruthCap: 10, Faults: testbed.Faults{DropPct: 50}, Seed: 9})
	events := newEvents(30, 1)
	produce(t, p.Brokers(), canary.EncodingAvro, 1, events)
	testenv.WaitFor(t, 10*time.Second, "all consumed", func() bool { return p.Stats().Consumed == 30 })
	if s := p.Stats(); s.TruthEvicted != 20 {
		t.Errorf("evicted %d, want 20", s.TruthEvicted)
	}
	ids := idsOf(events)
	for i, id := range ids {
		if _, ok := p.Truth(id); ok != (i >= 20) {
			t.Errorf("event %d: held=%v", i, ok)
		}
	}
	for _, id := range p.DroppedIDs() {
		if !slices.Contains(ids[20:], id) {
			t.Errorf("DroppedIDs holds evicted %s", id)
		}
	}
}

func TestFaultsJSON(t *testing.T) {
	t.Parallel()
	var f testbed.Faults
	if err := json.Unmarshal([]byte(`{"delay":"2s","jitter":"150ms","drop_pct":5.5,"reorder":true}`), &f); err != nil {
		t.Fatal(err)
	}
	want := testbed.Faults{Delay: 2 * time.Second, Jitter: 150 * time.Millisecond, DropPct: 5.5, Reorder: true}
	if f != want {
		t.Fatalf("got %+v, want %+v", f, want)
	}
	// Absent fields keep their value.
	if err := json.Unmarshal([]byte(`{"stalled":true}`), &f); err != nil {
		t.Fatal(err)
	}
	want.Stalled = true
	if f != want {
		t.Fatalf("merge: got %+v, want %+v", f, want)
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back testbed.Faults
	if err := json.Unmarshal(b, &back); err != nil || back != f {
		t.Fatalf("round trip %s: %+v, %v", b, back, err)
	}
	for in, wantErr := range map[string]string{
		`{"delay":"soon"}`:         `faults: delay: time: invalid duration "soon"`,
		`{"delay":2}`:              "faults: json: cannot unmarshal number into Go struct field faultsJSON.delay of type string",
		`{"drop_pct":101}`:         "faults: drop_pct 101 is not within [0, 100]",
		`{"duplicate_pct":-1}`:     "faults: duplicate_pct -1 is not within [0, 100]",
		`{"jitter":"-1s"}`:         "faults: jitter -1s is negative",
		`{"reorder_window":"-1s"}`: "faults: reorder_window -1s is negative",
	} {
		var f testbed.Faults
		err := json.Unmarshal([]byte(in), &f)
		if err == nil {
			err = f.Validate()
		}
		if err == nil || err.Error() != wantErr {
			t.Errorf("%s: error %v, want %q", in, err, wantErr)
		}
	}
}

func TestSeverity(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"DEBUG": "debug", "INFO": "info", "WARN": "warning", "ERROR": "error", "FATAL": "critical", "warn": "warning"} {
		got, err := testbed.Severity(&in)
		if err != nil || got == nil || *got != want {
			t.Errorf("Severity(%q) = %v, %v; want %q", in, got, err, want)
		}
	}
	if got, err := testbed.Severity(nil); got != nil || err != nil {
		t.Errorf("Severity(nil) = %v, %v", got, err)
	}
	bad := "LOUD"
	if _, err := testbed.Severity(&bad); err == nil {
		t.Error("Severity(LOUD) accepted")
	}
}
