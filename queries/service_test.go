package queries

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/sched"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// TestErrorClassesCounted runs one continuous probe per error class against
// the reference API (a fault forced per probe) and a closed port, and checks
// each request lands in its outcome, in the SLI total and, only for
// successes within budget, in the SLI good count.
func TestErrorClassesCounted(t *testing.T) {
	t.Parallel()
	api, base := refAPI(t, testbed.APIProfile{})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String() + "/health"
	closed.Close()

	c := configFor(api, base)
	c.Queries.Evidence = config.Evidence{}
	want := map[string]string{}
	add := func(name, outcome string, f func(p *config.QueryProbe)) {
		p := c.Queries.Probes["sli"]
		p.Enabled, p.Interval, p.Timeout = true, 50*time.Millisecond, 2*time.Second
		f(&p)
		c.Queries.Probes[name] = p
		want[name] = outcome
	}
	fault := func(f string) func(p *config.QueryProbe) {
		return func(p *config.QueryProbe) { p.Headers = []string{testbed.FaultHeader + ": " + f} }
	}
	add("ok", probes.OutcomeSuccess, func(*config.QueryProbe) {})
	add("slow", probes.OutcomeSuccess, func(p *config.QueryProbe) { p.Budget = time.Nanosecond }) // succeeds, over budget
	add("e5xx", probes.OutcomeHTTP5xx, fault(testbed.FaultError))
	add("e4xx", probes.OutcomeHTTP4xx, func(p *config.QueryProbe) { p.Path = "/api/v1/nope" })
	add("etimeout", probes.OutcomeTimeout, func(p *config.QueryProbe) {
		fault(testbed.FaultTimeout)(p)
		p.Timeout = 100 * time.Millisecond
		p.Interval = 200 * time.Millisecond
	})
	add("malformed", probes.OutcomeBadBody, fault(testbed.FaultMalformed))
	add("empty", probes.OutcomeBadBody, fault(testbed.FaultEmpty))
	add("refused", probes.OutcomeConnect, func(p *config.QueryProbe) { p.Path, p.Params = closedURL, nil })
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	s, err := New(context.Background(), Options{Config: c, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	m := s.metrics
	testenv.WaitFor(t, 20*time.Second, "3 requests per probe", func() bool {
		for name := range want {
			if testutil.ToFloat64(m.SLITotal.WithLabelValues(name)) < 3 {
				return false
			}
		}
		return true
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for name, outcome := range want {
		total := testutil.ToFloat64(m.SLITotal.WithLabelValues(name))
		for _, o := range probes.QueryOutcomes {
			n := testutil.ToFloat64(m.Requests.WithLabelValues(name, o))
			if o == outcome && n != total || o != outcome && n != 0 {
				t.Errorf("%s: %v requests %s of %v; want every one %s", name, n, o, total, outcome)
			}
		}
		good := testutil.ToFloat64(m.SLIGood.WithLabelValues(name))
		if wantGood := total * float64(boolInt(name == "ok")); good != wantGood {
			t.Errorf("%s: %v good of %v, want %v", name, good, total, wantGood)
		}
		if n := testutil.CollectAndCount(m.Latency.WithLabelValues(name).(prometheus.Histogram)); n != 1 {
			t.Errorf("%s: latency histogram missing", name)
		}
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	// Exemplars carry the request id, and the journey for rotated probes.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "slo_canary_query_latency_seconds" {
			continue
		}
		for _, met := range mf.GetMetric() {
			for _, b := range met.GetHistogram().GetBucket() {
				if ex := b.GetExemplar(); ex != nil {
					labels := map[string]string{}
					for _, l := range ex.GetLabel() {
						labels[l.GetName()] = l.GetValue()
					}
					if strings.HasPrefix(labels["request_id"], "ok-") && slices.Contains(api.JourneyIDs(), labels["journey_id"]) {
						found = true
					}
				}
			}
		}
	}
	if !found {
		t.Error("no exemplar with a request id and a journey on the ok probe")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestOverheadVerdict judges the overhead from windows filled by hand.
func TestOverheadVerdict(t *testing.T) {
	now := time.Now()
	q := config.Defaults().Queries
	s := &Service{cfg: q}
	fill := func(base, step time.Duration, n int, failEvery int) *continuous {
		c := &continuous{window: newWindow(100)}
		for i := range n {
			c.window.add(now.Add(-time.Duration(i)*time.Second), base+time.Duration(i)*step, failEvery == 0 || i%failEvery != 0)
		}
		// One success outside the window, which must not count.
		c.window.add(now.Add(-2*q.Evidence.Window), time.Hour, true)
		return c
	}
	without := fill(100*time.Millisecond, time.Millisecond, 20, 0)
	for _, tc := range []struct {
		name   string
		with   *continuous
		p50    float64
		within bool
		ok     bool
	}{
		{"fast", fill(400*time.Millisecond, time.Millisecond, 20, 0), 0.3, true, true},
		{"slow", fill(1200*time.Millisecond, time.Millisecond, 20, 0), 1.1, false, true},
		{"failures left out", fill(400*time.Millisecond, time.Millisecond, 20, 2), 0.301, true, true},
		{"too few", fill(400*time.Millisecond, time.Millisecond, 4, 0), 0, false, false},
	} {
		o, ok := s.overhead(tc.with, without, now)
		if ok != tc.ok || ok && (o.P50 < tc.p50-0.0015 || o.P50 > tc.p50+0.0015 || o.WithinBudget != tc.within) {
			t.Errorf("%s: %+v ok %v; want p50 %v within %v ok %v", tc.name, o, ok, tc.p50, tc.within, tc.ok)
		}
	}
}

// TestRunOnce runs concurrency runs once against the reference API: one
// within its budgets, one that breaches them, and names that do not exist.
func TestRunOnce(t *testing.T) {
	t.Parallel()
	api, base := refAPI(t, testbed.APIProfile{SLI: testbed.Latency{Base: 20 * time.Millisecond, Jitter: 2 * time.Millisecond}})
	c := configFor(api, base)
	run := func(name string, f func(r *config.ConcurrencyRun)) {
		r := config.ConcurrencyRunDefaults()
		r.Clients, r.Rate, r.Duration = 10, 100, 500*time.Millisecond
		f(&r)
		c.Queries.Concurrency[name] = r
	}
	run("fast", func(r *config.ConcurrencyRun) { r.BudgetP95 = time.Second })
	run("strict", func(r *config.ConcurrencyRun) { r.BudgetP95, r.BudgetP99 = 0, 10*time.Millisecond })
	run("off", func(r *config.ConcurrencyRun) { r.Enabled = false })
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	rep, err := RunOnce(context.Background(), c, OnceOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed() || len(rep.Runs) != 2 || rep.Runs[0].Run != "fast" || rep.Runs[1].Run != "strict" {
		t.Fatalf("report %+v", rep)
	}
	fast, strict := rep.Runs[0], rep.Runs[1]
	if fast.Verdict != VerdictPass || fast.Requests != 50 || fast.SuccessRatio != 1 || fast.Outcomes["success"] != 50 ||
		fast.Latency.P50 < 0.018 || fast.Latency.P50 > 0.1 || fast.Latency.Max < fast.Latency.P99 {
		t.Errorf("fast: %+v", fast)
	}
	if strict.Verdict != VerdictFail || len(strict.Breaches) != 1 || !strings.HasPrefix(strict.Breaches[0], "p99 ") {
		t.Errorf("strict: %+v", strict)
	}
	for run, v := range map[string]float64{"fast": 1, "strict": 0} {
		if got := testenv.MetricValue(t, reg, "slo_canary_concurrency_last_verdict", map[string]string{"run": run}); got != v {
			t.Errorf("%s: last_verdict %v", run, got)
		}
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"verdict":"fail"`, `"latency_seconds":{"p50":`, `"success_ratio":1`, `"outcomes":{"bad_body":0,`} {
		if !bytes.Contains(js, []byte(key)) {
			t.Errorf("JSON report lacks %s: %s", key, js)
		}
	}
	if !strings.Contains(fast.String(), "fast: PASS") || !strings.Contains(strict.String(), "breached: p99") {
		t.Errorf("lines:\n%s\n%s", fast, strict)
	}

	rep, err = RunOnce(context.Background(), c, OnceOptions{Runs: []string{"off"}})
	if err != nil || len(rep.Runs) != 1 || !rep.Passed() {
		t.Errorf("a disabled run named explicitly: %+v %v", rep, err)
	}
	if _, err := RunOnce(context.Background(), c, OnceOptions{Runs: []string{"nope"}}); !IsNoRun(err) {
		t.Errorf("unknown run: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunOnce(ctx, c, OnceOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestRunsNeverOverlap: a run asked for while another runs is refused by the
// scheduler's group, and scheduled runs are registered as jobs.
func TestRunsNeverOverlap(t *testing.T) {
	t.Parallel()
	api, base := refAPI(t, testbed.APIProfile{SLI: testbed.Latency{Base: 10 * time.Millisecond}})
	c := configFor(api, base)
	for _, name := range []string{"c100", "c200"} {
		r := c.Queries.Concurrency[name]
		r.Enabled, r.Clients, r.Rate, r.Duration = true, 2, 20, time.Second
		c.Queries.Concurrency[name] = r
	}
	r := c.Queries.Concurrency["c200"]
	r.Schedule = "@every 1h"
	c.Queries.Concurrency["c200"] = r
	reg := prometheus.NewRegistry()
	sc := sched.New(reg, slog.New(slog.DiscardHandler))
	s, err := New(context.Background(), Options{Config: c, Registerer: reg, Scheduler: sc})
	if err != nil {
		t.Fatal(err)
	}
	// The scheduled run is a job: its counters exist.
	if n := testenv.MetricValue(t, reg, "slo_canary_scheduled_runs_total", map[string]string{"task": "query_c200", "result": "skipped"}); n != 0 {
		t.Errorf("skipped %v", n)
	}
	var wg sync.WaitGroup
	var first RunResult
	var firstErr error
	wg.Go(func() { first, _, firstErr = s.RunNow(context.Background(), "c100") })
	testenv.WaitFor(t, 10*time.Second, "the first run's requests", func() bool { return api.Stats().Requests > 0 })
	_, ran, err := s.RunNow(context.Background(), "c200")
	if ran || err != nil {
		t.Errorf("second run while the first runs: ran %v err %v", ran, err)
	}
	wg.Wait()
	if firstErr != nil || first.Verdict != VerdictPass || first.Requests != 20 {
		t.Errorf("first run: %+v %v", first, firstErr)
	}
	if n := testenv.MetricValue(t, reg, "slo_canary_scheduled_runs_total", map[string]string{"task": "query_c200", "result": "skipped"}); n != 1 {
		t.Errorf("skipped runs %v, want 1", n)
	}
	if n := testutil.ToFloat64(s.metrics.Runs.WithLabelValues("c100", VerdictPass)); n != 1 {
		t.Errorf("runs_total{c100,pass} %v", n)
	}
	if _, _, err := s.RunNow(context.Background(), "nope"); !IsNoRun(err) {
		t.Errorf("unknown run: %v", err)
	}
}

// exercised registers the query metrics with every series present: a probe,
// an overhead, a finished run.
func exercised(reg prometheus.Registerer) *Metrics {
	m := NewMetrics(reg, map[string]time.Duration{"sli": time.Second}, []string{"c100"})
	newDiscoveryMetrics(reg, []string{"sli"}) // a probe discovers its journeys
	m.Latency.WithLabelValues("sli").Observe(0.2)
	m.Overhead.WithLabelValues("0.95").Set(0.3)
	m.OverheadBudget.Set(1)
	m.OverheadOK.WithLabelValues().Set(1)
	col := newCollector(1)
	col.observe(Sample{Result: probes.QueryResult{Outcome: probes.OutcomeSuccess}})
	r := col.result(Budget{P95: 2})
	r.Run = "c100"
	m.exportRun(r)
	return m
}

// TestMetricNamesGolden keeps the query metric names, which alert rules and
// dashboards use, under review.
func TestMetricNamesGolden(t *testing.T) {
	reg := prometheus.NewRegistry()
	exercised(reg)
	testenv.MetricNamesGolden(t, reg, "testdata/metrics.golden", *updateGolden)

	// Counters start at zero for every probe, outcome, run and verdict.
	m := NewMetrics(prometheus.NewRegistry(), map[string]time.Duration{"sli": time.Second}, []string{"c100"})
	if n := testutil.CollectAndCount(m.Requests); n != len(probes.QueryOutcomes) {
		t.Errorf("%d request series at start, want %d", n, len(probes.QueryOutcomes))
	}
	if n := testutil.CollectAndCount(m.Runs); n != 2 {
		t.Errorf("%d run series at start, want 2", n)
	}
}

// TestPromtoolCheckMetrics runs the real promtool linter over the exposition:
// no finding is accepted.
func TestPromtoolCheckMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	exercised(reg)
	testenv.PromtoolCheckMetrics(t, reg, nil)
}

// TestStalledServerBoundsRun: against a server that never answers, requests
// that waited longer than MaxWait for a free client are counted as timeouts
// without being sent, so the run ends about when its schedule does, not
// after its whole backlog times the timeout.
func TestStalledServerBoundsRun(t *testing.T) {
	t.Parallel()
	api, base := refAPI(t, testbed.APIProfile{Stalled: true})
	c := configFor(api, base)
	setProbe(c, "sli", func(p *config.QueryProbe) { p.Timeout = 300 * time.Millisecond })
	p := newProbe(t, c, "sli", 2)
	var log sampleLog
	start := time.Now()
	l := Load{Clients: 2, Rate: 100, Duration: 500 * time.Millisecond, MaxWait: 300 * time.Millisecond}
	if err := RunLoad(context.Background(), p, l, log.observe); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	unsent := 0
	for _, s := range log.samples {
		if s.Result.Outcome != probes.OutcomeTimeout {
			t.Errorf("request %d: %s, want timeout", s.Seq, s.Result.Outcome)
		}
		if s.Unsent {
			unsent++
			if s.Latency() < l.MaxWait {
				t.Errorf("unsent request %d counted %s, under MaxWait", s.Seq, s.Latency())
			}
		}
	}
	if len(log.samples) != 50 || unsent < 40 || elapsed > 3*time.Second {
		t.Errorf("%d requests, %d unsent, in %s; want 50, most unsent, about 1s", len(log.samples), unsent, elapsed)
	}
	api.Resume()
}
