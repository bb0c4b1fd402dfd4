package main

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

// TestReloadMetricsGolden keeps the reload metrics' names under review (a
// rename breaks alerts on failed reloads) and runs promtool's linter over
// them.
func TestReloadMetricsGolden(t *testing.T) {
	reg := prometheus.NewRegistry()
	newReloadMetrics(reg)
	testenv.MetricNamesGolden(t, reg, "testdata/reload_metrics.golden", false)
	testenv.PromtoolCheckMetrics(t, reg, nil)
}
