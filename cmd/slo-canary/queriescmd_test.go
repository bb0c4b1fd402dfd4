package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/sched"
	"github.com/slo-scout/slo-canary/queries"
	"github.com/slo-scout/slo-canary/testbed"
)

// queriesAPI serves the reference API and returns a config file body aimed
// at it, with the continuous probes off and one fast concurrency run, "smoke".
func queriesAPI(t *testing.T, p testbed.APIProfile, p95 string) string {
	t.Helper()
	api, err := testbed.NewAPI(testbed.APIOptions{Profile: p})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return fmt.Sprintf(`queries:
  base_url: %q
  probes:
    sli:
      rotate:
        journey_ids: [%q]
  concurrency:
    c100:
      enabled: false
    c200:
      enabled: false
    smoke:
      clients: 5
      rate: 50
      duration: 400ms
      budget_p95: %s
`, srv.URL, api.JourneyIDs()[0], p95)
}

// TestQueriesOnce: `slo-canary queries --once` exits 0 when the runs pass, 1
// when a budget is breached, 2 on a bad config or an unknown run, and prints
// one line per run, or JSON.
func TestQueriesOnce(t *testing.T) {
	t.Parallel()
	fast := testbed.APIProfile{SLI: testbed.Latency{Base: 5 * time.Millisecond}}
	pass := writeConfig(t, queriesAPI(t, fast, "1s"))
	code, out, errs := runCLI(t, "queries", "--once", "--config", pass)
	if code != 0 || !strings.Contains(out, "smoke: PASS  probe sli, 5 clients, 50/s for 400ms, 20 requests  p50 ") {
		t.Errorf("passing run: exit %d\n%s%s", code, out, errs)
	}

	fail := writeConfig(t, queriesAPI(t, fast, "1ms"))
	code, out, errs = runCLI(t, "queries", "--once", "--config", fail, "--json")
	var rep queries.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if code != 1 || rep.Passed() || len(rep.Runs) != 1 || rep.Runs[0].Verdict != "fail" || rep.Runs[0].Latency.P95 < 0.005 ||
		!strings.Contains(errs, "budget breached by smoke") {
		t.Errorf("breached run: exit %d %+v\n%s", code, rep, errs)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no --once", []string{"queries", "--config", pass}, "give --once"},
		{"unknown run", []string{"queries", "--once", "--config", pass, "--run", "nope"}, `no such concurrency run "nope"`},
		{"bad probe", []string{"queries", "--once", "--config", writeConfig(t, "queries:\n  probes:\n    sli:\n      method: FETCH\n")},
			`queries.probes.sli.method: unknown method "FETCH"`},
		{"bad schedule", []string{"queries", "--once", "--config", writeConfig(t, "queries:\n  concurrency:\n    c100:\n      schedule: nightly\n")},
			"queries.concurrency.c100.schedule"},
	} {
		code, _, errs := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 naming %q", tc.name, code, errs, tc.want)
		}
	}
}

// TestQueryPart runs the daemon's query part against the reference API: it
// turns ready once every probe has answered, exports the query series into
// the daemon's registry, and schedules its runs on the daemon's scheduler.
func TestQueryPart(t *testing.T) {
	t.Parallel()
	api, err := testbed.NewAPI(testbed.APIOptions{Profile: testbed.APIProfile{SLI: testbed.Latency{Base: time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	c := config.Defaults()
	demoQueries(&c, testbed.ServeInfo{API: api, APIURL: srv.URL})
	for name, p := range c.Queries.Probes {
		p.Interval = 100 * time.Millisecond
		c.Queries.Probes[name] = p
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.DiscardHandler)
	sc := sched.New(reg, logger)
	qs, parts, err := queryParts(context.Background(), daemonDeps{cfg: &c, reg: reg, logger: logger, scheduler: sc})
	if err != nil || len(parts) != 1 {
		t.Fatalf("parts %v, err %v", parts, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- parts[0].run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for parts[0].ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", parts[0].ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	succeeded := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "slo_canary_query_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			lv := map[string]string{}
			for _, l := range m.GetLabel() {
				lv[l.GetName()] = l.GetValue()
			}
			if lv["outcome"] == "success" && m.GetCounter().GetValue() > 0 {
				succeeded[lv["probe"]] = true
			}
		}
	}
	for _, probe := range []string{"sli", "sli_evidence", "journeys", "health"} {
		if !succeeded[probe] {
			t.Errorf("probe %s: no success in slo_canary_query_requests_total", probe)
		}
	}
	if n, _ := testutil.GatherAndCount(reg, "slo_canary_scheduled_runs_total"); n != 8 {
		t.Errorf("%d scheduled-run series, want 4 results for each of c100 and c200", n)
	}
	if got := qs; got == nil || !strings.HasPrefix(got.Summary(), "queries: health p95 ") {
		t.Errorf("summary for the demo: %v", got)
	}

	c.Queries.Enabled = false
	if _, parts, err := queryParts(context.Background(), daemonDeps{cfg: &c, reg: prometheus.NewRegistry(), logger: logger}); err != nil || len(parts) != 0 {
		t.Errorf("disabled: %v %v", parts, err)
	}
}
