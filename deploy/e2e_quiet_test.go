package deploy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// quietEvaluations is how many times every rule group must have evaluated,
// once every series the alerts judge is scraped, before the test looks for
// alerts: at the 60x time scale, 40 one-second evaluations are 40 minutes
// of nominal time, longer than any alert's `for` (at most 30m).
const quietEvaluations = 40

// TestEndToEndHealthyIsQuiet: a fresh install does not page, nor open a
// ticket, for a configuration slo-canary gave it. Against the healthy
// testbed, the canary runs with the config `testbed --write-config` wrote,
// as written (query probes on, discovering the reference API's journeys;
// the consumer groups it names), and a real Prometheus evaluates the shipped
// rules over it (windows scaled 60x down). Once every series the alerts
// judge has been scraped (each watched group's up, every probe's SLI, markers
// at both stages) and every rule group has evaluated quietEvaluations times
// after that, no alert has been pending or firing at any evaluation since
// the canary was first scraped.
func TestEndToEndHealthyIsQuiet(t *testing.T) {
	t.Parallel()
	promBin := testenv.Binary(t, "prometheus")
	if !testbed.PostgresAvailable() {
		testenv.Missing(t, "PostgreSQL (initdb, pg_ctl)")
	}
	bin := canaryBinary(t)
	dir := t.TempDir()
	tb := startTestbed(t, dir)
	groups := writtenGroups(t, tb.ConfigPath)

	// The written config as it is; only the log format, so the test can
	// read the canary's address.
	canaryAddr := runCanary(t, bin, tb.ConfigPath, "SLO_CANARY_LOG_FORMAT=json", "SLO_CANARY_LOG_LEVEL=info")
	prom := startPrometheus(t, promBin, dir, "", canaryAddr, "")

	prom.waitFor(t, "the canary scraped", 60*time.Second, `up{job="slo-canary"} == 1`, nonEmpty)
	scraped := time.Now()
	// Everything the alerts judge is there to judge.
	prom.waitFor(t, "every watched consumer group", 90*time.Second,
		`count(slo_canary_consumer_group_up{job="slo-canary"}) == `+fmt.Sprint(len(groups)), nonEmpty)
	for _, probe := range []string{"sli", "sli_evidence", "journeys", "health"} {
		prom.waitFor(t, "requests of query probe "+probe, 60*time.Second,
			fmt.Sprintf(`slo_canary_query_sli_total{job="slo-canary", probe=%q} > 0`, probe), nonEmpty)
	}
	for _, stage := range []string{"database", "capsules"} {
		prom.waitFor(t, "markers observed at "+stage, 90*time.Second,
			fmt.Sprintf(`slo_canary_markers_observed_total{job="slo-canary", stage=%q} > 0`, stage), nonEmpty)
	}
	prom.waitFor(t, "recording rules over scraped data", 30*time.Second,
		`slo_canary:query_latency_sli_error_ratio:rate5m{job="slo-canary", probe="sli"}`, nonEmpty)
	prom.waitEvaluations(t, quietEvaluations, 2*time.Minute)

	// The SLI probes discovered the API's journeys and measure.
	if got := prom.query(t, `slo_canary_query_probe_not_measuring{job="slo-canary"} == 1`); len(got) > 0 {
		t.Errorf("query probes not measuring: %v", got)
	}
	if got := prom.query(t, `slo_canary_query_journeys_discovered{job="slo-canary"} > 0`); len(got) == 0 {
		t.Error("no journeys discovered")
	}
	// From the first scrape on: an evaluation before it sees no target
	// (SLOCanaryAbsent pending), as on any Prometheus started before its
	// targets. Whole milliseconds, rounded down, so the window starts after
	// the first scrape was seen.
	window := time.Since(scraped).Milliseconds()
	if got := prom.query(t, fmt.Sprintf(`max_over_time(ALERTS[%dms])`, window)); len(got) > 0 {
		t.Fatalf("alerts pending or firing on a healthy pipeline with the written config, over the last %dms:\n%s", window, alertList(got))
	}
}

// writtenGroups are the consumer groups a written config watches.
func writtenGroups(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		ConsumerLag struct {
			Groups []string `yaml:"groups"`
		} `yaml:"consumer_lag"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.ConsumerLag.Groups) == 0 {
		t.Fatalf("%s names no consumer group: the defaults apply, and the testbed runs none of SLO-Scout's", path)
	}
	return c.ConsumerLag.Groups
}

func alertList(s []sample) string {
	var out string
	for _, a := range s {
		out += fmt.Sprintf("  %v\n", a["metric"])
	}
	return out
}

// waitEvaluations waits until every rule group has evaluated n times after
// the call, as Prometheus's rules API reports them.
func (p *prometheus) waitEvaluations(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	seen := map[string]map[string]bool{} // group -> its evaluation times after start
	deadline := start.Add(timeout)
	for {
		groups := p.ruleGroups(t)
		done := len(groups) > 0
		for name, last := range groups {
			if last.After(start) {
				if seen[name] == nil {
					seen[name] = map[string]bool{}
				}
				seen[name][last.String()] = true
			}
			done = done && len(seen[name]) >= n
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			counts := map[string]int{}
			for name := range groups {
				counts[name] = len(seen[name])
			}
			t.Fatalf("rule groups did not evaluate %d times within %v: %v", n, timeout, counts)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ruleGroups returns each rule group's last evaluation time.
func (p *prometheus) ruleGroups(t *testing.T) map[string]time.Time {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Name           string    `json:"name"`
				LastEvaluation time.Time `json:"lastEvaluation"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, g := range r.Data.Groups {
		out[g.Name] = g.LastEvaluation
	}
	return out
}
