package burst

import (
	"flag"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// burstRegistry holds the burst metrics as a daemon exports them, with one
// finished burst. Consumer-group lag, which a daemon exports beside them, has
// its own list in package grouplag.
func burstRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, []string{"nightly"})
	rate := 1666.0
	m.record(&Report{Profile: "nightly", Verdict: VerdictAborted, Abort: &Abort{Reason: "marker_lag"},
		Processing: Processing{EventsPerSecond: &rate}})
	m.InitSearchProfile("weekly")
	sustained, headroom := 8000.0, 4.8
	m.recordSearch(&SearchReport{Profile: "weekly", Outcome: OutcomeFound, Sustainable: &sustained, Headroom: &headroom,
		Steps: []SearchStep{{TargetRate: 8000, LagP95: 0.5, Passed: true}}})
	return reg
}

// TestBurstMetricNamesGolden keeps the burst metric names under review: alert
// rules and the dashboard use them.
func TestBurstMetricNamesGolden(t *testing.T) {
	testenv.MetricNamesGolden(t, burstRegistry(t), "testdata/burst_metrics.golden", *updateGolden)
}

func TestBurstPromtoolCheckMetrics(t *testing.T) {
	testenv.PromtoolCheckMetrics(t, burstRegistry(t), nil)
}
