package probes_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
)

const topic = "capsule-events"

func newCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, _ := testenv.Kafka(t, kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	return c
}

// produce writes records synchronously; a record's Partition is honoured.
func produce(t *testing.T, c *kfake.Cluster, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startKafka builds an observer, runs it until the test ends and waits until
// it is consuming.
func startKafka(t *testing.T, c *kfake.Cluster, cfg config.KafkaObserver, deps probes.Deps) *probes.Kafka {
	t.Helper()
	k := runKafka(t, append(deps.KafkaOpts, kgo.SeedBrokers(c.ListenAddrs()...)), cfg, deps)
	testenv.WaitFor(t, 10*time.Second, "the observer ready", k.Ready)
	return k
}

func runKafka(t *testing.T, opts []kgo.Opt, cfg config.KafkaObserver, deps probes.Deps) *probes.Kafka {
	t.Helper()
	if cfg.Topic == "" {
		cfg.Topic = topic
	}
	deps.KafkaOpts = opts
	if deps.Start.IsZero() {
		deps.Start = time.Now()
	}
	deps.Logger = testLogger(t)
	k, err := probes.NewKafka("capsules", cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
		k.Close()
	})
	return k
}

// collectUntil drains the observer until it has seen id, and returns every
// sighting up to then. Records are produced to one partition, so once the
// last one is seen, nothing before it is still on its way.
func collectUntil(t *testing.T, k *probes.Kafka, id uuid.UUID) []probes.Sighting {
	t.Helper()
	var all []probes.Sighting
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := k.Observe(ctx, probes.Query{})
		cancel()
		if err != nil {
			t.Fatalf("Observe: %v", err)
		}
		all = append(all, got...)
		if slices.ContainsFunc(all, func(s probes.Sighting) bool { return s.ID == id }) {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not seen in 10s; saw %d sightings, stats %+v", id, len(all), k.Stats())
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not synchronisation
	}
}

func waitStats(t *testing.T, k *probes.Kafka, what string, ok func(probes.ObserverStats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(k.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 10s, stats %+v", what, k.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func jsonRec(v string) *kgo.Record { return &kgo.Record{Value: []byte(v)} }

func avroRec(t *testing.T, id uuid.UUID, marker bool) *kgo.Record {
	t.Helper()
	ev := canary.Marker{ID: id, Instance: "test", Run: "r", Seq: 1, SentAt: time.Now()}.Event(
		canary.EventOptions{ServiceName: "svc", Environment: "prod", EventType: "log", Severity: "INFO"})
	if !marker {
		ev.Attributes = map[string]string{"k": "v"}
	}
	b, err := canary.Encode(canary.EncodingAvro, &ev)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Value: b}
}

func headerRec(key string, value []byte) *kgo.Record {
	return &kgo.Record{Value: []byte("payload"), Headers: []kgo.RecordHeader{{Key: key, Value: value}}}
}

// sentinel is a record the observer's extractor reads as id.
func sentinel(t *testing.T, cfg config.KafkaObserver, id uuid.UUID) *kgo.Record {
	switch cfg.Extract {
	case "avro":
		return avroRec(t, id, true)
	case "header":
		return headerRec(cfg.Field, []byte(id.String()))
	default:
		v := fmt.Sprintf("%q", id.String())
		path := strings.Split(cfg.Field, ".")
		for i := len(path) - 1; i >= 0; i-- {
			v = fmt.Sprintf(`{%q:%s}`, path[i], v)
		}
		return jsonRec(v)
	}
}

func TestKafkaExtract(t *testing.T) {
	t.Parallel()
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	jsonEv, err := canary.Encode(canary.EncodingJSON, &canary.TelemetryEvent{EventID: a.String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		cfg        config.KafkaObserver
		recs       []*kgo.Record
		want       []uuid.UUID
		decodeErrs uint64
	}{{
		name: "json array field",
		cfg:  config.KafkaObserver{Extract: "json", Field: "sample_event_ids"},
		recs: []*kgo.Record{
			jsonRec(fmt.Sprintf(`{"fingerprint_hash":"h","count":2,"sample_event_ids":[%q,%q]}`, a, b)),
			jsonRec(`{"fingerprint_hash":"h2","count":3}`),
			jsonRec(fmt.Sprintf(`{"sample_event_ids":[%q, 42, "nope"]}`, c)), // c found, the record counted
			jsonRec(`{"sample_event_ids":[]}`),
		},
		want:       []uuid.UUID{a, b, c},
		decodeErrs: 1,
	}, {
		name: "json string field",
		cfg:  config.KafkaObserver{Extract: "json", Field: "event_id"},
		recs: []*kgo.Record{
			jsonRec(string(jsonEv)),
			jsonRec(`{"event_id":null}`),
			jsonRec(`{"event_id": "`),                     // invalid JSON
			jsonRec(`[{"event_id":"x"}]`),                 // valid JSON, not an object: not ours
			jsonRec(`{"event_id":"not-a-uuid"}`),          // an id that is not a UUID
			jsonRec(`{"event_id":{"nested":"object"}}`),   // neither string nor array
			jsonRec(`{"message":"about event_id stuff"}`), // the name appears, the field does not
		},
		want:       []uuid.UUID{a},
		decodeErrs: 3,
	}, {
		name: "json dotted path",
		cfg:  config.KafkaObserver{Extract: "json", Field: "capsule.samples.ids"},
		recs: []*kgo.Record{
			jsonRec(fmt.Sprintf(`{"capsule":{"samples":{"ids":%q}}}`, a)),
			jsonRec(`{"capsule":{"samples":"ids"}}`),
			jsonRec(fmt.Sprintf(`{"capsule":{"samples":{"ids":[%q]}},"ids":[%q]}`, b, c)),
		},
		want: []uuid.UUID{a, b},
	}, {
		name: "avro",
		cfg:  config.KafkaObserver{Extract: "avro"},
		recs: []*kgo.Record{
			avroRec(t, a, true),
			avroRec(t, b, false), // not a marker: its id is reported, the tracker ignores it
			{Value: []byte{0xff, 0xff}},
			{Value: jsonEv},
		},
		want:       []uuid.UUID{a, b},
		decodeErrs: 2,
	}, {
		name: "header",
		cfg:  config.KafkaObserver{Extract: "header", Field: "marker-id"},
		recs: []*kgo.Record{
			headerRec("marker-id", []byte(a.String())),
			headerRec("marker-id", b[:]),
			headerRec("other", []byte(c.String())),
			headerRec("marker-id", []byte("zzz")),
			{Value: []byte("no headers")},
		},
		want:       []uuid.UUID{a, b},
		decodeErrs: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t)
			k := startKafka(t, cl, tc.cfg, probes.Deps{})
			end := uuid.New()
			produce(t, cl, append(tc.recs, sentinel(t, tc.cfg, end))...)
			got := collectUntil(t, k, end)
			want := append(slices.Clone(tc.want), end)
			if !slices.Equal(idsOf(got), want) {
				t.Fatalf("ids %v, want %v", idsOf(got), want)
			}
			for _, s := range got {
				if s.Copies != 1 || s.Backlog || s.At.IsZero() || s.SourceTime.IsZero() {
					t.Errorf("sighting %+v: want Copies 1, not Backlog, At and SourceTime set", s)
				}
			}
			st := k.Stats()
			if st.Records != uint64(len(tc.recs)+1) || st.Matched != uint64(len(want)) || st.DecodeErrors != tc.decodeErrs {
				t.Errorf("stats %+v, want Records %d Matched %d DecodeErrors %d", st, len(tc.recs)+1, len(want), tc.decodeErrs)
			}
		})
	}
}

func idsOf(ss []probes.Sighting) []uuid.UUID {
	out := make([]uuid.UUID, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

func TestKafkaOversized(t *testing.T) {
	t.Parallel()
	cl := newCluster(t)
	cfg := config.KafkaObserver{Extract: "json", Field: "event_id", MaxRecordBytes: 300}
	k := startKafka(t, cl, cfg, probes.Deps{})
	big, end := uuid.New(), uuid.New()
	produce(t, cl,
		jsonRec(fmt.Sprintf(`{"event_id":%q,"pad":%q}`, big, strings.Repeat("x", 1000))),
		sentinel(t, cfg, end))
	got := collectUntil(t, k, end)
	if !slices.Equal(idsOf(got), []uuid.UUID{end}) {
		t.Fatalf("ids %v, want only %s", idsOf(got), end)
	}
	if st := k.Stats(); st.Oversized != 1 || st.Records != 2 {
		t.Fatalf("stats %+v, want 1 oversized of 2", st)
	}
}

func TestKafkaBufferOverflow(t *testing.T) {
	t.Parallel()
	cl := newCluster(t)
	cfg := config.KafkaObserver{Extract: "header", Field: "id", BufferSize: 5}
	k := startKafka(t, cl, cfg, probes.Deps{})
	var recs []*kgo.Record
	ids := newIDs(8)
	for _, id := range ids {
		recs = append(recs, sentinel(t, cfg, id))
	}
	produce(t, cl, recs...)
	waitStats(t, k, "8 matched", func(s probes.ObserverStats) bool { return s.Matched == 8 })
	got, err := k.Observe(context.Background(), probes.Query{})
	if err != nil || !slices.Equal(idsOf(got), ids[:5]) {
		t.Fatalf("got %v, %v; want the first 5", idsOf(got), err)
	}
	if d := k.Stats().BufferDropped; d != 3 {
		t.Fatalf("dropped %d, want 3", d)
	}
	// Draining makes room again.
	end := uuid.New()
	produce(t, cl, sentinel(t, cfg, end))
	if got := collectUntil(t, k, end); len(got) != 1 {
		t.Fatalf("after drain: %v", idsOf(got))
	}
}

// TestKafkaKeep: with Deps.Keep, ids that are not of interest (load events'
// ids in capsules during a burst) are not buffered, so a buffer of 5 holds
// the 3 wanted among 200 records with nothing dropped; records and matched
// still count everything read.
func TestKafkaKeep(t *testing.T) {
	t.Parallel()
	cl := newCluster(t)
	cfg := config.KafkaObserver{Extract: "json", Field: "sample_event_ids", BufferSize: 5}
	wanted := newIDs(3)
	keep := map[uuid.UUID]bool{}
	for _, id := range wanted {
		keep[id] = true
	}
	var calls atomic.Int64
	k := startKafka(t, cl, cfg, probes.Deps{Keep: func(id uuid.UUID) bool { calls.Add(1); return keep[id] }})
	at := map[int]uuid.UUID{50: wanted[0], 120: wanted[1], 199: wanted[2]} // record number: its wanted id
	var recs []*kgo.Record
	for i := range 200 {
		other := uuid.New()
		if id, ok := at[i]; ok { // a wanted id beside another in one record
			recs = append(recs, jsonRec(fmt.Sprintf(`{"sample_event_ids":[%q,%q]}`, other, id)))
		} else {
			recs = append(recs, jsonRec(fmt.Sprintf(`{"sample_event_ids":[%q]}`, other)))
		}
	}
	produce(t, cl, recs...)
	waitStats(t, k, "203 matched", func(s probes.ObserverStats) bool { return s.Matched == 203 })
	got, err := k.Observe(context.Background(), probes.Query{})
	if err != nil || !slices.Equal(idsOf(got), wanted) {
		t.Fatalf("got %v, %v; want %v", idsOf(got), err, wanted)
	}
	if st := k.Stats(); st.BufferDropped != 0 || st.Records != 200 {
		t.Fatalf("stats %+v, want 200 records and nothing dropped", st)
	}
	if calls.Load() != 203 {
		t.Errorf("keep asked %d times, want once per id (203)", calls.Load())
	}
}

func TestKafkaBacklogAndStartOffset(t *testing.T) {
	t.Parallel()
	cl := newCluster(t)
	cfg := config.KafkaObserver{Extract: "json", Field: "event_id"}
	start := time.Now().Truncate(time.Millisecond)
	old, recent, justBefore := uuid.New(), uuid.New(), uuid.New()
	rec := func(id uuid.UUID, ts time.Time) *kgo.Record {
		r := sentinel(t, cfg, id)
		r.Timestamp = ts
		return r
	}
	// Already in the topic when the observer starts. Only what is younger
	// than start-lookback is read.
	produce(t, cl,
		rec(old, start.Add(-2*time.Hour)),
		rec(recent, start.Add(-10*time.Minute)),
		rec(justBefore, time.Now()))

	k := startKafka(t, cl, cfg, probes.Deps{Start: start, Lookback: time.Hour})
	// Written after the observer started, one with a timestamp from a clock
	// that is behind (or event time, as a windowed aggregation stamps):
	// still new, because it was not in the topic before.
	lateStamped, fresh := uuid.New(), uuid.New()
	produce(t, cl, rec(lateStamped, start.Add(-30*time.Minute)), rec(fresh, time.Now()))

	got := collectUntil(t, k, fresh)
	if !slices.Equal(idsOf(got), []uuid.UUID{recent, justBefore, lateStamped, fresh}) {
		t.Fatalf("ids %v, want recent, justBefore, lateStamped, fresh (old is before start-lookback)", idsOf(got))
	}
	wantBacklog := map[uuid.UUID]bool{recent: true, justBefore: true, lateStamped: false, fresh: false}
	for _, s := range got {
		if s.Backlog != wantBacklog[s.ID] {
			t.Errorf("%s: Backlog %v, want %v", s.ID, s.Backlog, wantBacklog[s.ID])
		}
	}
	if got[0].SourceTime != start.Add(-10*time.Minute) {
		t.Errorf("SourceTime %v, want the record timestamp %v", got[0].SourceTime, start.Add(-10*time.Minute))
	}
}

// TestKafkaFetchError makes the broker refuse fetches with a non-retriable
// error: it is counted and reported by Observe, and consuming resumes once
// the broker relents.
func TestKafkaFetchError(t *testing.T) {
	t.Parallel()
	cl := newCluster(t)
	cfg := config.KafkaObserver{Extract: "header", Field: "id"}
	var refuse atomic.Bool
	refuse.Store(true)
	cl.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		cl.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		req := kreq.(*kmsg.FetchRequest)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	k := startKafka(t, cl, cfg, probes.Deps{})
	waitStats(t, k, "a fetch error", func(s probes.ObserverStats) bool { return s.FetchErrors > 0 })
	_, err := k.Observe(context.Background(), probes.Query{})
	wantReason(t, err, "auth")

	refuse.Store(false)
	id := uuid.New()
	produce(t, cl, sentinel(t, cfg, id))
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := k.Observe(context.Background(), probes.Query{})
		if slices.ContainsFunc(got, func(s probes.Sighting) bool { return s.ID == id }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered: stats %+v", k.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKafkaUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	k := runKafka(t, []kgo.Opt{kgo.SeedBrokers(addr), kgo.RetryTimeout(100 * time.Millisecond)},
		config.KafkaObserver{Extract: "avro"}, probes.Deps{})
	// Not consuming: Observe must fail (so no marker is declared lost), and
	// once a listing attempt has failed, say why.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := k.Observe(ctx, probes.Query{})
		cancel()
		var pe *probes.Error
		if !errors.As(err, &pe) {
			t.Fatalf("Observe: %v, want a *probes.Error", err)
		}
		if pe.Reason == "connect" {
			break
		}
		if pe.Reason != "timeout" || time.Now().After(deadline) {
			t.Fatalf("Observe: %v, want timeout until a connect error", err)
		}
	}
	if k.Ready() {
		t.Fatal("Ready with no cluster")
	}
}

func TestKafkaRunOnceAndClose(t *testing.T) {
	cl := newCluster(t)
	k, err := probes.NewKafka("x", config.KafkaObserver{Topic: topic, Extract: "avro"},
		probes.Deps{KafkaOpts: []kgo.Opt{kgo.SeedBrokers(cl.ListenAddrs()...)}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- k.Run(context.Background()) }()
	deadline := time.Now().Add(10 * time.Second)
	for !k.Ready() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := k.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
	k.Close() // Run must return without its context being cancelled
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Close")
	}
}

func TestKafkaConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  config.KafkaObserver
		want string
	}{
		{config.KafkaObserver{Extract: "avro"}, "no topic"},
		{config.KafkaObserver{Topic: topic, Extract: "xml"}, `unknown extract "xml"`},
		{config.KafkaObserver{Topic: topic, Extract: "json"}, "needs a field"},
		{config.KafkaObserver{Topic: topic, Extract: "json", Field: "a..b"}, "empty path element"},
		{config.KafkaObserver{Topic: topic, Extract: "header"}, "needs a field"},
	} {
		_, err := probes.NewKafka("x", tc.cfg, probes.Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// refJSON is a second, plainer reading of the JSON extractor's rules, for the
// fuzzer to compare against.
func refJSON(data []byte, path []string) (ids []uuid.UUID, bad bool) {
	if !bytes.Contains(data, []byte(`"`+path[len(path)-1]+`"`)) {
		return nil, false
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, true
	}
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	switch x := v.(type) {
	case nil:
		return nil, false
	case string:
		id, err := uuid.Parse(x)
		if err != nil {
			return nil, true
		}
		return []uuid.UUID{id}, false
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				bad = true
				continue
			}
			id, err := uuid.Parse(s)
			if err != nil {
				bad = true
				continue
			}
			ids = append(ids, id)
		}
		return ids, bad
	default:
		return nil, true
	}
}

func FuzzExtractJSON(f *testing.F) {
	id := uuid.New().String()
	f.Add([]byte(fmt.Sprintf(`{"sample_event_ids":[%q,%q]}`, id, uuid.New())), "sample_event_ids")
	f.Add([]byte(fmt.Sprintf(`{"event_id":%q,"service_name":"s"}`, id)), "event_id")
	f.Add([]byte(fmt.Sprintf(`{"a":{"b":{"c":%q}}}`, id)), "a.b.c")
	f.Add([]byte(`{"a":{"b":"c"}}`), "a.b.c")
	f.Add([]byte(`{"event_id":`), "event_id")
	f.Add([]byte(`{"event_id":[1,null,"x"]}`), "event_id")
	f.Add([]byte(`["event_id"]`), "event_id")
	f.Add([]byte(`{"event_id":"{`+id+`}"}`), "event_id")
	f.Fuzz(func(t *testing.T, data []byte, field string) {
		path := strings.Split(field, ".")
		if slices.Contains(path, "") {
			return
		}
		got, err := probes.ExtractJSON(data, path, nil)
		want, bad := refJSON(data, path)
		if !slices.Equal(got, want) || (err != nil) != bad {
			t.Fatalf("ExtractJSON(%q, %q) = %v, %v; reference %v, bad %v", data, field, got, err, want, bad)
		}
	})
}

func FuzzExtractAvro(f *testing.F) {
	ev := canary.Marker{ID: uuid.New(), Instance: "i", Run: "r", Seq: 7, SentAt: time.Now()}.Event(
		canary.EventOptions{ServiceName: "svc", Environment: "prod", EventType: "log"})
	good, err := canary.Encode(canary.EncodingAvro, &ev)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:10])
	f.Add([]byte{})
	f.Add([]byte{0x48, 'n', 'o', 't', '-', 'a', '-', 'u', 'u', 'i', 'd'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := probes.ExtractAvro(data, nil)
		if err == nil && len(got) != 1 {
			t.Fatalf("no error and %d ids", len(got))
		}
		// Wherever the full decoder reads a UUID event_id, so must we.
		if ev, derr := canary.Decode(canary.EncodingAvro, data); derr == nil {
			if id, perr := uuid.Parse(ev.EventID); perr == nil && (err != nil || got[0] != id) {
				t.Fatalf("full decode finds %s; ExtractAvro %v, %v", id, got, err)
			}
		}
	})
}

func FuzzExtractHeader(f *testing.F) {
	id := uuid.New()
	f.Add([]byte(id.String()))
	f.Add(id[:])
	f.Add([]byte("urn:uuid:" + id.String()))
	f.Add([]byte("zz"))
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := probes.ExtractHeader([]kgo.RecordHeader{{Key: "k", Value: v}, {Key: "other", Value: v}}, "k", nil)
		if (err == nil) != (len(got) == 1) || len(got) > 1 {
			t.Fatalf("%q: %v, %v", v, got, err)
		}
	})
}

// TestKafkaCatchingUp: while the observer reads the records that were in the
// topic at its start it reports CatchingUp, and once it stops, every one of
// them has been delivered, so the runner may declare missing markers lost.
func TestKafkaCatchingUp(t *testing.T) {
	t.Parallel()
	cl := newCluster(t)
	cfg := config.KafkaObserver{Extract: "json", Field: "event_id"}
	start := time.Now()
	var backlog []*kgo.Record
	for range 300 {
		r := sentinel(t, cfg, uuid.New())
		r.Timestamp = start.Add(-time.Minute)
		backlog = append(backlog, r)
	}
	produce(t, cl, backlog...)

	k := startKafka(t, cl, cfg, probes.Deps{Start: start, Lookback: time.Hour})
	var seen int
	deadline := time.Now().Add(30 * time.Second)
	for k.CatchingUp() {
		if time.Now().After(deadline) {
			t.Fatal("still catching up after 30s")
		}
		got, _ := k.Observe(context.Background(), probes.Query{})
		seen += len(got)
		time.Sleep(10 * time.Millisecond)
	}
	got, err := k.Observe(context.Background(), probes.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if seen += len(got); seen != len(backlog) {
		t.Fatalf("caught up after %d of the %d backlog records", seen, len(backlog))
	}

	// An observer of an empty topic has nothing to catch up on.
	empty := startKafka(t, newCluster(t), cfg, probes.Deps{Start: time.Now(), Lookback: time.Hour})
	waitFor := time.Now().Add(10 * time.Second)
	for empty.CatchingUp() {
		if time.Now().After(waitFor) {
			t.Fatal("an observer of an empty topic never stopped catching up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
