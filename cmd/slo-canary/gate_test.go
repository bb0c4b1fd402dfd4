package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

type junitDoc struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Skipped  int `xml:"skipped,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Failure *struct{} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestGate runs `slo-canary gate` against the reference pipeline: a short
// burst passes (exit 0) with both reports written; the same burst judged
// against an impossible budget fails (exit 1) and the JUnit report names the
// breached check; bad usage exits 2 before anything starts.
func TestGate(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 3, PostgresDSN: dsn})
	base := fmt.Sprintf(`kafka:
  brokers: [%q]
canary:
  rate: 2
  recovery:
    enabled: false
observers:
  database:
    poll_interval: 200ms
    sql:
      dsn: %q
consumer_lag:
  groups: [capsule-ingest-consumer]
queries:
  enabled: false
`, p.Brokers()[0], dsn)
	// Bursts of a few seconds: the pacer's own lateness at the end, tens of
	// milliseconds on a busy machine, is a percent of them. Rate accuracy is
	// canary's TestBurstCleanMatchesGroundTruth's business.
	t.Setenv("SLO_CANARY_BURSTS_BUDGETS_RATE_TOLERANCE", "0.1")
	dir := t.TempDir()
	run := func(name, extra string, args ...string) (int, string, string, oneShotReport, junitDoc) {
		t.Helper()
		cfg := writeConfig(t, base+extra)
		report, junitPath := filepath.Join(dir, name+".json"), filepath.Join(dir, name+".xml")
		code, out, errs := runCLI(t, append([]string{"gate", "--config", cfg, "--report", report, "--junit", junitPath}, args...)...)
		var rep oneShotReport
		var doc junitDoc
		if data, err := os.ReadFile(report); err == nil {
			if err := json.Unmarshal(data, &rep); err != nil {
				t.Fatalf("%s: %v", report, err)
			}
		}
		if data, err := os.ReadFile(junitPath); err == nil {
			if err := xml.Unmarshal(data, &doc); err != nil {
				t.Fatalf("%s: %v", junitPath, err)
			}
		}
		return code, out, errs, rep, doc
	}

	code, out, errs, rep, doc := run("pass", "", "--rate", "600/s", "--duration", "3s")
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if rep.Verdict != "pass" || rep.Burst == nil || rep.Burst.Events.Acked != 1800 || rep.Burst.Markers.Seen == 0 {
		t.Errorf("report %+v", rep)
	}
	if !strings.Contains(out, "burst adhoc: PASS") || !strings.Contains(out, "gate: PASS") {
		t.Errorf("stdout:\n%s", out)
	}
	if doc.Tests == 0 || doc.Failures != 0 || doc.Skipped != 1 || doc.Suites[0].Name != "burst adhoc" {
		t.Errorf("junit %+v", doc)
	}

	code, out, errs, rep, doc = run("fail", "bursts:\n  budgets:\n    lag_p50: 1ms\n", "--rate", "600/s", "--duration", "2s")
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if rep.Verdict != "fail" || rep.Burst.Verdict != "fail" {
		t.Errorf("report verdicts %s/%s", rep.Verdict, rep.Burst.Verdict)
	}
	failed := ""
	for _, c := range doc.Suites[0].Cases {
		if c.Failure != nil {
			failed += c.Name + " "
		}
	}
	if failed != "lag_p50 " {
		t.Errorf("failed cases %q, want lag_p50", failed)
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"bad rate", []string{"gate", "--rate", "fast", "--duration", "1s"}, "--rate"},
		{"rate over cap", []string{"gate", "--rate", "20000/s", "--duration", "1s"}, "above bursts.max_rate"},
		{"rate without duration", []string{"gate", "--rate", "10/s"}, "--duration"},
		{"burst without --once", []string{"burst"}, "--once"},
		{"unknown profile", []string{"burst", "--once", "--profile", "nope"}, `no burst profile "nope"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := runCLI(t, append(c.args, "--config", writeConfig(t, base))...)
			if code != 2 || !strings.Contains(errs, c.want) {
				t.Errorf("exit %d, stderr %q; want 2 naming %q", code, errs, c.want)
			}
		})
	}
}

// TestDaemonSchedulesBursts: with bursts.enabled the daemon schedules each
// profile, exports its verdicts, and watches the pipeline's consumer group.
func TestDaemonSchedulesBursts(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn})
	c := pipelineConfig(t, p, dsn, 200*time.Millisecond, func(c *config.Config) {
		c.Bursts.Enabled = true
		c.Bursts.Profiles = map[string]config.BurstProfile{"tiny": {Schedule: "@every 2s", Steps: []string{"500/s for 1s"}}}
		c.Bursts.Budgets.RateTolerance = 0.1 // see TestGate
		c.ConsumerLag.Groups = []string{"capsule-ingest-consumer", "fingerprinting-job"}
		c.ConsumerLag.Interval = 500 * time.Millisecond
	})
	url := startDaemon(t, daemonOpts{cfg: c}).url() + "/metrics"
	want := []string{
		`slo_canary_bursts_total{profile="tiny",verdict="pass"} 1`,
		`slo_canary_scheduled_runs_total{result="success",task="burst_tiny"} 1`,
		`slo_canary_consumer_group_up{group="capsule-ingest-consumer"} 1`,
		`slo_canary_consumer_group_up{group="fingerprinting-job"} 0`,
		`slo_canary_consumer_group_state{group="fingerprinting-job",state="Dead"} 1`,
	}
	var missing []string
	testenv.WaitFor(t, 60*time.Second, "/metrics to show every series wanted", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		var now []string
		for _, w := range want {
			if !strings.Contains(b.String(), w) {
				now = append(now, w)
			}
		}
		if !slices.Equal(now, missing) {
			t.Logf("/metrics lacks %q", now)
			missing = now
		}
		return len(now) == 0
	})
}

// TestGateWithQueries: the gate runs the burst, then the query concurrency
// runs against the testbed's reference API, and reports both.
func TestGateWithQueries(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "canary.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan testbed.ServeInfo, 1)
	done := make(chan error, 1)
	go func() {
		done <- testbed.Serve(ctx, testbed.ServeOptions{
			Pipeline:    testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn},
			WriteConfig: path,
			Ready:       func(i testbed.ServeInfo) { ready <- i },
		})
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("testbed: %v", err)
	}
	t.Setenv("SLO_CANARY_CANARY_RECOVERY_ENABLED", "false")
	t.Setenv("SLO_CANARY_BURSTS_BUDGETS_RATE_TOLERANCE", "0.1") // see TestGate
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_POLL_INTERVAL", "200ms")
	t.Setenv("SLO_CANARY_QUERIES_CONCURRENCY_C100_DURATION", "2s")
	t.Setenv("SLO_CANARY_QUERIES_CONCURRENCY_C100_RATE", "20")
	t.Setenv("SLO_CANARY_QUERIES_CONCURRENCY_C100_CLIENTS", "10")
	t.Setenv("SLO_CANARY_QUERIES_CONCURRENCY_C200_ENABLED", "false")
	report, junitPath := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.xml")
	code, out, errs := runCLI(t, "gate", "--config", path, "--rate", "300/s", "--duration", "2s", "--report", report, "--junit", junitPath)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	var rep oneShotReport
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != "pass" || rep.Queries == nil || len(rep.Queries.Report.Runs) != 1 || rep.Queries.Report.Runs[0].Run != "c100" ||
		rep.Queries.Report.Runs[0].Requests != 40 {
		t.Errorf("report %+v", rep.Queries)
	}
	var doc junitDoc
	data, err = os.ReadFile(junitPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Suites) != 2 || doc.Suites[1].Name != "queries" || len(doc.Suites[1].Cases) != 1 || doc.Failures != 0 || doc.Skipped != 0 {
		t.Errorf("junit %+v", doc)
	}
}
