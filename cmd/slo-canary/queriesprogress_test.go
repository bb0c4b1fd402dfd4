package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/testbed"
)

// slowRunConfig is a config file body with one concurrency run, "long",
// that lasts 6 s against the reference API: long enough for a progress line.
func slowRunConfig(t *testing.T) string {
	t.Helper()
	api, err := testbed.NewAPI(testbed.APIOptions{Profile: testbed.APIProfile{SLI: testbed.Latency{Base: time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return writeConfig(t, fmt.Sprintf(`queries:
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
    long:
      clients: 2
      rate: 10
      duration: 6s
      budget_p95: 5s
`, srv.URL, api.JourneyIDs()[0]))
}

// progressLine is the plain progress line of a query run, printed every 5 s
// when the output is not a terminal.
var progressLine = regexp.MustCompile(`(?m)^\[long\] run 1/1, probe sli: \d+/60 requests done, \d+ failed, p95 \S+, (\d+s left|waiting for the last answers)$`)

// TestQueriesProgress: `queries --once` and the gate's query runs show
// progress while a run runs (every 5 s off a terminal, as bursts do), not
// only the result at its end; with --json the progress goes to stderr and
// stdout stays one JSON document.
func TestQueriesProgress(t *testing.T) {
	t.Parallel()
	t.Run("queries --once", func(t *testing.T) {
		t.Parallel()
		code, out, errs := runCLI(t, "queries", "--once", "--config", slowRunConfig(t))
		loc := progressLine.FindStringIndex(out)
		res := strings.Index(out, "long: PASS")
		if code != 0 || loc == nil || res < loc[1] {
			t.Errorf("exit %d; want a progress line before the result:\n%s%s", code, out, errs)
		}
	})
	t.Run("queries --once --json", func(t *testing.T) {
		t.Parallel()
		code, out, errs := runCLI(t, "queries", "--once", "--json", "--config", slowRunConfig(t))
		if code != 0 || !progressLine.MatchString(errs) || !strings.HasPrefix(out, "{") || strings.Contains(out, "[long]") {
			t.Errorf("exit %d; want progress on stderr only:\nstdout:\n%s\nstderr:\n%s", code, out, errs)
		}
	})
	t.Run("gate", func(t *testing.T) {
		t.Parallel()
		cfg, err := config.Load(slowRunConfig(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		q, err := runGateQueries(context.Background(), cfg, slog.New(slog.DiscardHandler), &out)
		if err != nil || !q.Pass || !progressLine.MatchString(out.String()) {
			t.Errorf("err %v; want a pass with a progress line:\n%s", err, out.String())
		}
	})
}
