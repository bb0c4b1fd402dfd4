package queries

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

// accuracyProfile: SLIs take 200 ms +/- 20 ms, evidence adds 300 ms +/- 20 ms.
var accuracyProfile = testbed.APIProfile{
	SLI:      testbed.Latency{Base: 200 * time.Millisecond, Jitter: 20 * time.Millisecond},
	Evidence: testbed.Latency{Base: 300 * time.Millisecond, Jitter: 20 * time.Millisecond},
}

// TestContinuousAccuracy runs the continuous SLI probes, with and without
// evidence, against the reference API and compares what they measured with
// the server's own handling times, request by request: p50 and p95 within
// 5 ms. The evidence overhead they export is the ground truth's, within 10 ms.
// Each probe runs in three copies (name, name_b, name_c), pooled, so that ten
// seconds give enough requests for a p95 that is not just the maximum.
//
// Not parallel: the package's other tests would take the CPU its 5 ms need.
func TestContinuousAccuracy(t *testing.T) {
	api, base := refAPI(t, accuracyProfile)
	c := configFor(api, base)
	// Intervals beyond the slowest answer (jitter included), so that every
	// request starts on time and its latency is the server's plus the client's.
	setProbe(c, "sli", func(p *config.QueryProbe) { p.Enabled, p.Interval = true, 300*time.Millisecond })
	setProbe(c, "sli_evidence", func(p *config.QueryProbe) { p.Enabled, p.Interval = true, 620*time.Millisecond })
	for _, name := range []string{"sli", "sli_evidence"} {
		c.Queries.Probes[name+"_b"] = c.Queries.Probes[name]
		c.Queries.Probes[name+"_c"] = c.Queries.Probes[name]
	}
	group := func(probe string) string { return strings.TrimSuffix(strings.TrimSuffix(probe, "_b"), "_c") }
	reg := prometheus.NewRegistry()
	s, err := New(context.Background(), Options{Config: c, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]map[string]time.Duration{} // probe group -> request id -> latency
	for _, p := range s.probes {
		got[group(p.name)] = map[string]time.Duration{}
		p.trace = func(r probes.QueryResult, lat time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if r.Outcome != probes.OutcomeSuccess {
				t.Errorf("%s: %s %v", p.name, r.Outcome, r.Err)
			}
			got[group(p.name)][r.RequestID] = lat
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	noise := testenv.SchedulerNoise()
	go func() { done <- s.Run(ctx) }()
	testenv.WaitFor(t, 30*time.Second, "45 requests with evidence", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["sli_evidence"]) >= 45
	})
	woke := noise() // what a busy machine adds to each latency: see TestConcurrencyAccuracy
	t.Logf("wake-up delay p99 during the run: %s", woke)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready after requests: %v", err)
	}

	var ids []string
	for _, byID := range got {
		for id := range byID {
			ids = append(ids, id)
		}
	}
	truth := truthByID(t, api, ids)
	var truthP50 [2]float64
	for i, name := range []string{"sli", "sli_evidence"} {
		var m matched
		for id, lat := range got[name] {
			m.add(lat, truth[id])
		}
		m.compare(t, "continuous "+name, 5*time.Millisecond+2*woke)
		truthP50[i] = percentiles(slices.Clone(m.truth)).P50
	}

	// The overhead is computed from the same windows, over successes.
	o, ok := s.overhead(s.byName["sli_evidence"], s.byName["sli"], time.Now())
	if !ok {
		t.Fatalf("no overhead: %+v", o)
	}
	// The service's window and the matched sets above need not hold exactly
	// the same requests (the window keeps whatever completed in it), so the
	// two p50 differences carry the sampling noise of a few dozen requests
	// with ±20 ms of jitter each: 25 ms still pins the 300 ms overhead.
	want := truthP50[1] - truthP50[0]
	if d := o.P50 - want; d < -0.025 || d > 0.025 {
		t.Errorf("evidence overhead p50 %.1fms, ground truth %.1fms", 1e3*o.P50, 1e3*want)
	}
	if !o.WithinBudget || o.P95 < 0.2 || o.P95 > 0.4 {
		t.Errorf("overhead %+v: about 300ms, within the 1s budget", o)
	}
	// The SLI counters: every request counted, all good within their budgets.
	for _, name := range []string{"sli", "sli_evidence"} {
		var total, good, ok float64
		for _, cp := range []string{name, name + "_b", name + "_c"} {
			total += testutil.ToFloat64(s.metrics.SLITotal.WithLabelValues(cp))
			good += testutil.ToFloat64(s.metrics.SLIGood.WithLabelValues(cp))
			ok += testutil.ToFloat64(s.metrics.Requests.WithLabelValues(cp, probes.OutcomeSuccess))
		}
		if total != float64(len(got[name])) || good != total || ok != total {
			t.Errorf("%s: total %v good %v success %v, traced %d", name, total, good, ok, len(got[name]))
		}
	}
}

// TestConcurrencyAccuracy: 200-way concurrency, open-loop: 200 requests/s
// against answers of 1 s +/- 20 ms keep about 200 requests in flight, over
// 240 clients (at exactly 200, any jitter would make requests wait for a free
// client, and that wait counts, by design). Measured p50 and p95 are within
// 5 ms of the server's handling times, request by request. A long answer
// rather than a high rate gives the concurrency: under -race on two shared
// cores, a high rate would measure the race detector. Not parallel, as above.
func TestConcurrencyAccuracy(t *testing.T) {
	api, base := refAPI(t, testbed.APIProfile{SLI: testbed.Latency{Base: time.Second, Jitter: 20 * time.Millisecond}})
	c := configFor(api, base)
	p := newProbe(t, c, "sli", 240)
	var log sampleLog
	l := Load{Clients: 240, Rate: 200, Duration: 2 * time.Second, MaxWait: 10 * time.Second, WarmUp: true}
	noise := testenv.SchedulerNoise()
	err := RunLoad(context.Background(), p, l, log.observe)
	// How late this process woke up during the run: what a busy machine adds
	// to every send and every measured latency, whatever the code does.
	woke := noise()
	if err != nil {
		t.Fatal(err)
	}
	if len(log.samples) != l.Requests() {
		t.Fatalf("%d samples, want %d", len(log.samples), l.Requests())
	}
	var ids []string
	for _, s := range log.samples {
		ids = append(ids, s.Result.RequestID)
	}
	truth := truthByID(t, api, ids)
	var m matched
	late := 0
	for _, s := range log.samples {
		if s.Result.Outcome != probes.OutcomeSuccess {
			t.Fatalf("request %d: %s %v", s.Seq, s.Result.Outcome, s.Result.Err)
		}
		if s.Start.Equal(s.Due) && s.Result.Sent.Sub(s.Due) > time.Millisecond+woke {
			late++ // waited for a client: the wait counts, and is not the server's
		}
		m.add(s.Latency(), truth[s.Result.RequestID])
	}
	// A request can be sent over a millisecond late because the CPU was busy,
	// not only because every client was: allow a few.
	if late > len(log.samples)/100 {
		t.Errorf("%d requests sent late: 240 clients should carry 200/s at 1s", late)
	}
	if n := maxInFlight(log.samples); n < 190 {
		t.Errorf("at most %d requests in flight, want about 200", n)
	}
	// 5 ms on a quiet machine; on a loaded one, plus twice the wake-up delay
	// measured beside the run (each latency has two wake-ups: send, answer).
	t.Logf("wake-up delay p99 during the run: %s", woke)
	m.compare(t, "200 in flight", 5*time.Millisecond+2*woke)
}

// maxInFlight is the largest number of requests sent and not yet answered at
// any one time.
func maxInFlight(samples []Sample) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, s := range samples {
		edges = append(edges, edge{s.Result.Sent, 1}, edge{s.Result.Done, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int { return a.at.Compare(b.at) })
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// TestOpenLoopShowsStall: the server stalls for 2 s in the middle of a run.
// The open-loop latency, from when each request was due, shows it at p99:
// requests due during the stall waited for it. The closed-loop view of the
// same run, from when each request was sent, hides it: only the few requests
// in flight when it began saw it, under 1%.
func TestOpenLoopShowsStall(t *testing.T) {
	api, base := refAPI(t, testbed.APIProfile{SLI: testbed.Latency{Base: 5 * time.Millisecond, Jitter: time.Millisecond}})
	c := configFor(api, base)
	p := newProbe(t, c, "sli", 4)
	var log sampleLog
	var once sync.Once
	stalled := make(chan struct{})
	observe := func(s Sample) {
		log.observe(s)
		if s.Seq == 200 { // a second in
			once.Do(func() {
				api.Stall()
				close(stalled)
				time.AfterFunc(2*time.Second, api.Resume)
			})
		}
	}
	l := Load{Clients: 4, Rate: 200, Duration: 5 * time.Second, MaxWait: 10 * time.Second}
	if err := RunLoad(context.Background(), p, l, observe); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stalled:
	default:
		t.Fatal("the stall never happened")
	}
	col := newCollector(len(log.samples))
	for _, s := range log.samples {
		col.observe(s)
	}
	r := col.result(Budget{P99: 1})
	t.Logf("open-loop p50 %.1fms p99 %.1fms max %.1fms; closed-loop p50 %.1fms p99 %.1fms max %.1fms",
		1e3*r.Latency.P50, 1e3*r.Latency.P99, 1e3*r.Latency.Max, 1e3*r.ServiceTime.P50, 1e3*r.ServiceTime.P99, 1e3*r.ServiceTime.Max)
	if r.Requests != 1000 || r.SuccessRatio != 1 {
		t.Fatalf("%d requests, success %v", r.Requests, r.SuccessRatio)
	}
	if r.Latency.P99 < 1.5 {
		t.Errorf("open-loop p99 %.3fs does not show the 2s stall", r.Latency.P99)
	}
	if r.ServiceTime.Max < 1.5 {
		t.Errorf("closed-loop max %.3fs: the requests in flight should have seen the stall", r.ServiceTime.Max)
	}
	if r.ServiceTime.P99 > 0.5 {
		t.Errorf("closed-loop p99 %.3fs: expected it to hide the 2s stall (coordinated omission)", r.ServiceTime.P99)
	}
	if r.Verdict != VerdictFail || len(r.Breaches) != 1 {
		t.Errorf("verdict %s %q, want a p99 breach", r.Verdict, r.Breaches)
	}
}
