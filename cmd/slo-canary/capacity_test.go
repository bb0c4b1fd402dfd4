package main

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestTestbedCapacityFlag: a --capacity that is not a rate is a usage error
// naming the flag, before anything starts.
func TestTestbedCapacityFlag(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"fast", "-5/s", "8000"} {
		code, _, errs := runCLI(t, "testbed", "--no-postgres", "--capacity", bad)
		if code != exitConfig || !strings.Contains(errs, "--capacity") {
			t.Errorf("testbed --capacity %s: exit %d, stderr %q; want 2 naming --capacity", bad, code, errs)
		}
	}
}

// TestCapacityOnce runs `slo-canary capacity --once` against the reference
// pipeline with a capacity of 1,100 events/s: 500/s and 1,000/s pass, 2,000/s
// fails, and with --min-rate 1500/s the exit is 1 with both reports written.
// `gate --search` with the contract at 400/s has headroom 2.5 (at least
// max, 1,000/s) and passes --min-headroom 2. Bad flags exit 2.
func TestCapacityOnce(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 3, PostgresDSN: dsn, CommitInterval: 100 * time.Millisecond,
		Faults: testbed.Faults{Capacity: 1100}})
	cfg := writeConfig(t, fmt.Sprintf(`kafka:
  brokers: [%q]
canary:
  rate: 2
  recovery:
    enabled: false
observers:
  database:
    poll_interval: 100ms
    sql:
      dsn: %q
consumer_lag:
  groups: [capsule-ingest-consumer]
queries:
  enabled: false
bursts:
  marker_share: 0.01
  contract_rate: 400/s
  guard:
    interval: 500ms
  budgets:
    rate_tolerance: 0.1
    lag_p50: 3s
    lag_p95: 4s
    lag_p99: 5s
`, p.Brokers()[0], dsn))
	dir := t.TempDir()
	report, junitPath := filepath.Join(dir, "c.json"), filepath.Join(dir, "c.xml")
	code, out, errs := runCLI(t, "capacity", "--once", "--config", cfg, "--start", "500/s", "--max", "4000/s", "--step-duration", "2s",
		"--precision", "0.5", "--min-rate", "1500/s", "--report", report, "--junit", junitPath)
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	var rep map[string]any
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sustainable_rate_per_second", "first_failing_rate_per_second", "failed_check", "steps", "aborted", "abort_reason"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	// 1,000/s passes; the figure is its rate, or a little less if noise made
	// its markers' lag grow measurably (docs/bursts.md).
	if s, _ := rep["sustainable_rate_per_second"].(float64); s < 950 || s > 1000 || rep["first_failing_rate_per_second"] != 2000.0 || rep["aborted"] != false {
		t.Errorf("report %s", data)
	}
	steps, _ := rep["steps"].([]any)
	if len(steps) != 3 {
		t.Errorf("%d steps, want 3", len(steps))
	}
	for _, s := range steps {
		for _, k := range []string{"target_rate_per_second", "achieved_rate_per_second", "lag_p95_seconds", "passed"} {
			if _, ok := s.(map[string]any)[k]; !ok {
				t.Errorf("step lacks %q: %v", k, s)
			}
		}
	}
	if !strings.Contains(out, "step 3: 2000/s") || !strings.Contains(out, "below the minimum") {
		t.Errorf("stdout:\n%s", out)
	}
	var doc junitDoc
	if data, err := os.ReadFile(junitPath); err != nil || xml.Unmarshal(data, &doc) != nil || doc.Failures != 1 {
		t.Errorf("junit %+v, %v", doc, err)
	}

	code, out, errs = runCLI(t, "gate", "--search", "--config", cfg, "--start", "500/s", "--max", "1000/s", "--step-duration", "2s",
		"--report", filepath.Join(dir, "g.json"), "--junit", filepath.Join(dir, "g.xml"))
	if code != 0 || !strings.Contains(out, "at least 1000/s") || !strings.Contains(out, "gate: PASS") {
		t.Errorf("gate --search: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"without --once", []string{"capacity"}, "--once"},
		{"bad max", []string{"capacity", "--once", "--max", "fast"}, "--max"},
		{"max over cap", []string{"capacity", "--once", "--max", "20000/s"}, "above bursts.max_rate"},
		{"bad min rate", []string{"capacity", "--once", "--min-rate", "x"}, "--min-rate"},
		{"start over max", []string{"capacity", "--once", "--start", "2000/s", "--max", "1000/s"}, "above max"},
		{"gate negative headroom", []string{"gate", "--search", "--min-headroom", "-1"}, "--min-headroom"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := runCLI(t, append(c.args, "--config", cfg)...)
			if code != 2 || !strings.Contains(errs, c.want) {
				t.Errorf("exit %d, stderr %q; want 2 naming %q", code, errs, c.want)
			}
		})
	}
}
