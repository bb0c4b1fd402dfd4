package canary_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

// e2e is one reference pipeline (kfake + real PostgreSQL) and the record of
// everything canaries running against it reported.
type e2e struct {
	t    *testing.T
	pipe *testbed.Pipeline
	pg   *testbed.Postgres
	dsn  string

	logs syncBuffer // every canary's log, JSON lines
	// light keeps no per-marker record (sent, results) for long runs: only
	// lost markers are kept.
	light bool

	mu      sync.Mutex
	sent    map[uuid.UUID]canary.Marker
	failed  map[uuid.UUID]error
	results map[string][]stageResult // by stage
	lost    map[string][]canary.Marker
}

type stageResult struct {
	s probes.Sighting
	r canary.Result
}

func newE2E(t *testing.T, pcfg testbed.PipelineConfig) *e2e {
	t.Helper()
	pg := testenv.Postgres(t)
	e := &e2e{t: t, pg: pg, dsn: pg.DSN("postgres"),
		sent: map[uuid.UUID]canary.Marker{}, failed: map[uuid.UUID]error{},
		results: map[string][]stageResult{}, lost: map[string][]canary.Marker{}}
	pcfg.PostgresDSN = e.dsn
	if pcfg.Seed == 0 {
		pcfg.Seed = 42
	}
	if pcfg.Partitions == 0 {
		pcfg.Partitions = 10
	}
	p := testenv.Pipeline(t, pcfg)
	e.pipe = p
	return e
}

// config points a canary at the pipeline: the database stage and the capsule
// topic stage, fast polls, short deadlines.
func (e *e2e) config(mod func(*config.Config)) *config.Config {
	c := config.Defaults()
	c.Kafka.Brokers = e.pipe.Brokers()
	c.Canary.Rate = 2
	c.Canary.ProduceTimeout = 5 * time.Second
	c.Canary.Deadline = 10 * time.Second
	c.Canary.FreshnessBudget = 5 * time.Second
	c.Canary.LateWindow = 30 * time.Second
	c.Canary.ShutdownTimeout = 5 * time.Second
	c.Canary.Recovery.Timeout = 20 * time.Second
	db := c.Observers["database"]
	db.SQL.DSN = e.dsn
	db.PollInterval = 200 * time.Millisecond
	c.Observers["database"] = db
	caps := c.Observers["capsules"]
	caps.Enabled = true
	caps.Deadline = 0
	caps.PollInterval = 200 * time.Millisecond
	c.Observers["capsules"] = caps
	if mod != nil {
		mod(&c)
	}
	if err := c.Validate(); err != nil {
		e.t.Fatalf("test config invalid: %v", err)
	}
	return &c
}

// kafkaClient is a plain client of the pipeline's Kafka, closed with the test.
func (e *e2e) kafkaClient(t *testing.T) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.pipe.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// canaryRun is one running canary process, in-process.
type canaryRun struct {
	svc    *canary.Service
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func (e *e2e) start(cfg *config.Config, maxMarkers int) *canaryRun {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	var w io.Writer = &e.logs
	if testing.Verbose() {
		w = io.MultiWriter(&e.logs, os.Stderr)
	}
	logger := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	svc, err := canary.New(context.Background(), canary.Options{
		Config: cfg, Registerer: reg, Logger: logger, MaxMarkers: maxMarkers,
		Hooks: canary.Hooks{
			Sent: func(m canary.Marker, err error) {
				if e.light {
					return
				}
				e.mu.Lock()
				defer e.mu.Unlock()
				if err != nil {
					e.failed[m.ID] = err
					return
				}
				e.sent[m.ID] = m
			},
			Result: func(stage string, s probes.Sighting, r canary.Result) {
				if e.light {
					return
				}
				e.mu.Lock()
				defer e.mu.Unlock()
				e.results[stage] = append(e.results[stage], stageResult{s, r})
			},
			Lost: func(stage string, m canary.Marker) {
				e.mu.Lock()
				defer e.mu.Unlock()
				e.lost[stage] = append(e.lost[stage], m)
			},
		},
	})
	if err != nil {
		e.t.Fatalf("canary.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cr := &canaryRun{svc: svc, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { cr.done <- svc.Run(ctx) }()
	e.t.Cleanup(cr.stop)
	return cr
}

func (cr *canaryRun) stop() {
	if cr.cancel == nil {
		return
	}
	cr.cancel()
	<-cr.done
	cr.cancel = nil
}

// checkAllObserved fails the test for any marker lost at either stage, or
// acknowledged but never observed there. The caller holds e.mu.
func (e *e2e) checkAllObserved(t *testing.T, during string) {
	t.Helper()
	for _, stage := range []string{"database", "capsules"} {
		if l := e.lost[stage]; len(l) != 0 {
			t.Errorf("%s: %d markers lost %s (first %s, sent %s)", stage, len(l), during, l[0].ID, l[0].SentAt)
		}
		seen := map[uuid.UUID]bool{}
		for _, sr := range e.results[stage] {
			seen[sr.r.Marker.ID] = true
		}
		for id := range e.sent {
			if !seen[id] {
				t.Errorf("%s: acknowledged marker %s never observed %s", stage, id, during)
			}
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the canary's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the decoded log lines whose msg is msg.
func (s *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(s.b.Bytes(), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// waitSettled waits until n markers were sent and none is pending anywhere.
func (e *e2e) waitSettled(cr *canaryRun, n int, timeout time.Duration) {
	e.t.Helper()
	testenv.WaitFor(e.t, timeout, "every marker resolved", func() bool {
		e.mu.Lock()
		sent := len(e.sent) + len(e.failed)
		e.mu.Unlock()
		if sent < n {
			return false
		}
		for _, st := range cr.svc.Summary().Stages {
			if st.Pending > 0 {
				return false
			}
		}
		return true
	})
}

// TestE2EDelayMatchesGroundTruth: with 2 s ± 100 ms injected, every marker's
// measured lag is within poll interval + 50 ms of the pipeline's own record of
// when the marker became visible at that stage.
func TestE2EDelayMatchesGroundTruth(t *testing.T) {
	e := newE2E(t, testbed.PipelineConfig{Faults: testbed.Faults{Delay: 2 * time.Second, Jitter: 100 * time.Millisecond}})
	cfg := e.config(func(c *config.Config) { c.Canary.Rate = 3 })
	const n = 60
	cr := e.start(cfg, n)
	e.waitSettled(cr, n, 60*time.Second)
	// Settled: nothing pending anywhere, all n still held for their late window.
	for _, stage := range []string{"database", "capsules"} {
		if got := testenv.MetricValue(t, cr.reg, "slo_canary_markers_pending", map[string]string{"stage": stage}); got != 0 {
			t.Errorf("%s: markers_pending = %v after every marker was seen, want 0", stage, got)
		}
	}
	if got := testenv.MetricValue(t, cr.reg, "slo_canary_markers_tracked", nil); got != n {
		t.Errorf("markers_tracked = %v, want %d (all within their late window)", got, n)
	}
	if got := testenv.MetricValue(t, cr.reg, "slo_canary_markers_tracked_limit", nil); got != float64(cfg.Canary.MaxTracked) {
		t.Errorf("markers_tracked_limit = %v, want %d", got, cfg.Canary.MaxTracked)
	}
	cr.stop()

	tol := 200*time.Millisecond + 50*time.Millisecond
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, stage := range []string{"database", "capsules"} {
		checked := 0
		for _, sr := range e.results[stage] {
			if sr.r.Outcome != canary.OutcomeObserved {
				t.Errorf("%s: marker %s outcome %v, want observed", stage, sr.r.Marker.ID, sr.r.Outcome)
				continue
			}
			truth, ok := e.pipe.Truth(sr.r.Marker.ID)
			if !ok {
				t.Fatalf("no ground truth for %s", sr.r.Marker.ID)
			}
			visible := truth.DBVisible
			if stage == "capsules" {
				visible = truth.Forwarded
			}
			want := visible.Sub(sr.r.Marker.SentAt)
			if diff := sr.r.Lag - want; diff < -tol || diff > tol {
				t.Errorf("%s: marker %s lag %s, ground truth %s (diff %s, tolerance %s)", stage, sr.r.Marker.ID, sr.r.Lag, want, diff, tol)
			}
			if want < 1900*time.Millisecond || want > 2500*time.Millisecond {
				t.Errorf("%s: ground truth lag %s outside the injected 2s ± 100ms (+ processing)", stage, want)
			}
			checked++
		}
		if checked != n {
			t.Errorf("%s: checked %d markers, want %d", stage, checked, n)
		}
		if len(e.lost[stage]) != 0 {
			t.Errorf("%s: %d markers lost, want 0", stage, len(e.lost[stage]))
		}
	}
	if got := testenv.MetricValue(t, cr.reg, "slo_canary_markers_observed_total", map[string]string{"stage": "database"}); got != n {
		t.Errorf("markers_observed_total{stage=database} = %v, want %d", got, n)
	}
	if got := testenv.MetricValue(t, cr.reg, "slo_canary_freshness_sli_good_total", map[string]string{"stage": "database"}); got != n {
		t.Errorf("freshness_sli_good_total{stage=database} = %v, want %d (all within the 5s budget)", got, n)
	}
	// Exemplars carry marker ids, so a slow bucket leads to a marker.
	mfs, err := cr.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exemplars := 0
	for _, mf := range mfs {
		if mf.GetName() != "slo_canary_marker_lag_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			exs := h.GetExemplars()
			for _, b := range h.GetBucket() {
				if b.GetExemplar() != nil {
					exs = append(exs, b.GetExemplar())
				}
			}
			for _, ex := range exs {
				for _, lp := range ex.GetLabel() {
					if lp.GetName() != "marker_id" {
						continue
					}
					if _, ok := e.sent[uuid.MustParse(lp.GetValue())]; !ok {
						t.Errorf("exemplar names %s, not a marker this canary sent", lp.GetValue())
					}
					exemplars++
				}
			}
		}
	}
	if exemplars == 0 {
		t.Error("marker_lag_seconds carries no exemplar with a marker_id")
	}
	// Every observer read what it should and skipped nothing.
	for _, stage := range []string{"database", "capsules"} {
		if got := testenv.MetricValue(t, cr.reg, "slo_canary_observer_records_total", map[string]string{"stage": stage}); got < n {
			t.Errorf("%s: observer_records_total = %v, want at least %d", stage, got, n)
		}
		for _, kind := range canary.BadInputKinds {
			if got := testenv.MetricValue(t, cr.reg, "slo_canary_observer_bad_input_total", map[string]string{"stage": stage, "kind": kind}); got != 0 {
				t.Errorf("%s: observer_bad_input_total{kind=%s} = %v, want 0", stage, kind, got)
			}
		}
	}
}

// TestE2EDropAndDuplicateExact: the lost count equals exactly the markers the
// pipeline dropped, no other marker is lost, and the duplicate count equals
// exactly the markers it duplicated.
func TestE2EDropAndDuplicateExact(t *testing.T) {
	e := newE2E(t, testbed.PipelineConfig{Faults: testbed.Faults{DropPct: 10, DuplicatePct: 5}, Seed: 7})
	cfg := e.config(func(c *config.Config) {
		c.Canary.Rate = 10
		c.Canary.Deadline = 3 * time.Second
		c.Canary.FreshnessBudget = 2 * time.Second
	})
	const n = 300
	cr := e.start(cfg, n)
	e.waitSettled(cr, n, 90*time.Second)
	cr.stop()

	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.failed) != 0 {
		t.Fatalf("%d markers failed to produce", len(e.failed))
	}
	dropped := map[uuid.UUID]bool{}
	for _, id := range e.pipe.DroppedIDs() {
		if _, ours := e.sent[id]; ours {
			dropped[id] = true
		}
	}
	duplicated := map[uuid.UUID]bool{}
	for _, id := range e.pipe.DuplicatedIDs() {
		if _, ours := e.sent[id]; ours && !dropped[id] {
			duplicated[id] = true
		}
	}
	if len(dropped) == 0 || len(duplicated) == 0 {
		t.Fatalf("fault profile produced %d drops and %d duplicates; the test needs some of each", len(dropped), len(duplicated))
	}
	for _, stage := range []string{"database", "capsules"} {
		lost := map[uuid.UUID]bool{}
		for _, m := range e.lost[stage] {
			if lost[m.ID] {
				t.Errorf("%s: marker %s declared lost twice", stage, m.ID)
			}
			lost[m.ID] = true
			if !dropped[m.ID] {
				t.Errorf("%s: marker %s declared lost but the pipeline did not drop it", stage, m.ID)
			}
		}
		if len(lost) != len(dropped) {
			t.Errorf("%s: %d lost, pipeline dropped %d", stage, len(lost), len(dropped))
		}
		if got := testenv.MetricValue(t, cr.reg, "slo_canary_markers_lost_total", map[string]string{"stage": stage}); int(got) != len(dropped) {
			t.Errorf("%s: markers_lost_total = %v, want %d", stage, got, len(dropped))
		}
	}
	// Duplicates are visible on the capsule topic; the database sink is
	// idempotent (primary key), as SLO-Scout's is.
	dups := testenv.MetricValue(t, cr.reg, "slo_canary_markers_duplicate_total", map[string]string{"stage": "capsules"})
	if int(dups) != len(duplicated) {
		t.Errorf("capsules: markers_duplicate_total = %v, pipeline duplicated %d", dups, len(duplicated))
	}
	if got := testenv.MetricValue(t, cr.reg, "slo_canary_markers_duplicate_total", map[string]string{"stage": "database"}); got != 0 {
		t.Errorf("database: markers_duplicate_total = %v, want 0", got)
	}
	// A log line for every lost marker, with its id, partition and send time.
	lostLines := e.logs.lines(t, "marker lost")
	if want := 2 * len(dropped); len(lostLines) != want {
		t.Errorf("%d 'marker lost' log lines, want %d (one per stage and dropped marker)", len(lostLines), want)
	}
	for _, l := range lostLines {
		id, _ := l["marker_id"].(string)
		if !dropped[uuid.MustParse(id)] || l["partition"] == nil || l["sent_at"] == nil || l["stage"] == nil {
			t.Errorf("lost-marker log line incomplete or wrong: %v", l)
		}
	}
	t.Logf("sent %d, dropped %d, duplicated %d", len(e.sent), len(dropped), len(duplicated))
}
