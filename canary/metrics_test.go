package canary

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// TestMetricNamesGolden keeps the exported metric names under review: a
// rename breaks dashboards and alerts, so it must show up in a diff.
func TestMetricNamesGolden(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, []string{"database", "capsules"})
	// Set by the service once known: a deadline per stage, a skew once measured.
	m.StageDeadline.WithLabelValues("database").Set(300)
	m.ClockSkew.WithLabelValues("capsules").Set(0.01)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName()+" "+strings.ToLower(mf.GetType().String()))
		if mf.GetHelp() == "" {
			t.Errorf("%s has no HELP", mf.GetName())
		}
		if !strings.HasPrefix(mf.GetName(), "slo_canary_") {
			t.Errorf("%s lacks the slo_canary_ prefix", mf.GetName())
		}
		if len(mf.GetMetric()) == 0 {
			t.Errorf("%s has no series at start: counters must be initialised at zero", mf.GetName())
		}
	}
	slices.Sort(names)
	got := strings.Join(names, "\n") + "\n"
	golden := "testdata/metrics.golden"
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./canary -run Golden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("metric names changed; review and run with -update.\ngot:\n%s\nwant:\n%s", got, want)
	}
}

// TestPromtoolCheckMetrics runs the real promtool linter over the exposition.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := testenv.Binary(t, "promtool")
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, []string{"database"})
	m.Lag.WithLabelValues("database").Observe(1.5)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
