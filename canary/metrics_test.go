package canary

import (
	"flag"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// TestMetricNamesGolden keeps the exported metric names under review.
func TestMetricNamesGolden(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, []string{"database", "capsules"})
	// Set by the service once known: a deadline per stage, a skew once measured.
	m.StageDeadline.WithLabelValues("database").Set(300)
	m.ClockSkew.WithLabelValues("capsules").Set(0.01)
	stages := []StageConfig{{Name: "database", Deadline: time.Minute}, {Name: "capsules", Deadline: time.Minute}}
	tr, err := NewTracker(TrackerConfig{Stages: stages, Budget: time.Minute, LateWindow: time.Minute, MaxTracked: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range TrackerGauges(tr, []string{"database", "capsules"}, 10) {
		reg.MustRegister(c)
	}
	testenv.MetricNamesGolden(t, reg, "testdata/metrics.golden", *updateGolden)
}

// TestPromtoolCheckMetrics runs the real promtool linter over the exposition.
func TestPromtoolCheckMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, []string{"database"})
	m.Lag.WithLabelValues("database").Observe(1.5)
	testenv.PromtoolCheckMetrics(t, reg, nil)
}
