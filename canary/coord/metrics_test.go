package coord

import (
	"flag"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// coordRegistry holds the coordination metrics as a leading replica exports
// them.
func coordRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(Config{Group: testGroup, Topic: testTopic, Instance: "canary-0", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	c.assigned(grant{Self: "m0", Leader: "m0", Members: []Member{{ID: "m0", Instance: "canary-0"}, {ID: "m1", Instance: "canary-1"}}})
	return reg
}

// TestMetricNamesGolden keeps the coordination metric names under review:
// the dashboard and the docs use them.
func TestMetricNamesGolden(t *testing.T) {
	testenv.MetricNamesGolden(t, coordRegistry(t), "testdata/coord_metrics.golden", *updateGolden)
}

func TestPromtoolCheckMetrics(t *testing.T) {
	testenv.PromtoolCheckMetrics(t, coordRegistry(t), nil)
}
