package queries

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestPromtoolCleanWhenMeasured runs the service against the reference API
// until it has measured the evidence overhead and finished a concurrency run,
// and lints the exposition with promtool before and after: it must be clean
// at every moment, with no finding forgiven. The within-budget verdict is
// absent until measured: a 0 would read as "over budget".
func TestPromtoolCleanWhenMeasured(t *testing.T) {
	t.Parallel()
	api, base := refAPI(t, testbed.APIProfile{
		SLI:      testbed.Latency{Base: 2 * time.Millisecond},
		Evidence: testbed.Latency{Base: 5 * time.Millisecond},
	})
	c := configFor(api, base)
	for _, name := range []string{"sli", "sli_evidence"} {
		setProbe(c, name, func(p *config.QueryProbe) { p.Enabled, p.Interval = true, 20*time.Millisecond })
	}
	r := c.Queries.Concurrency["c100"]
	r.Enabled, r.Clients, r.Rate, r.Duration = true, 2, 40, 250*time.Millisecond
	c.Queries.Concurrency["c100"] = r
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	s, err := New(context.Background(), Options{Config: c, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	series := func(name string) []map[string]string {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]string
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				lv := map[string]string{}
				for _, l := range m.GetLabel() {
					lv[l.GetName()] = l.GetValue()
				}
				out = append(out, lv)
			}
		}
		return out
	}
	if got := series("slo_canary_evidence_overhead_within_budget"); len(got) != 0 {
		t.Errorf("evidence_overhead_within_budget before any measurement: %v, want absent", got)
	}
	if got := series("slo_canary_evidence_overhead_budget_seconds"); len(got) != 1 {
		t.Errorf("evidence_overhead_budget_seconds: %v, want it from the start", got)
	}
	testenv.PromtoolCheckMetrics(t, reg, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testenv.WaitFor(t, 30*time.Second, "the evidence overhead", func() bool {
		return len(series("slo_canary_evidence_overhead_within_budget")) == 1
	})
	if _, ran, err := s.RunNow(ctx, "c100"); err != nil || !ran {
		t.Fatalf("RunNow: ran %v, %v", ran, err)
	}
	testenv.PromtoolCheckMetrics(t, reg, nil)

	for name, want := range map[string][]string{
		"slo_canary_evidence_overhead_seconds":        {"0.5", "0.95", "0.99"},
		"slo_canary_concurrency_last_latency_seconds": {"0.5", "0.95", "0.99", "1"},
	} {
		got := map[string]bool{}
		for _, lv := range series(name) {
			got[lv["percentile"]] = true
		}
		for _, p := range want {
			if !got[p] {
				t.Errorf("%s{percentile=%q} missing; have %v", name, p, series(name))
			}
		}
	}
}
