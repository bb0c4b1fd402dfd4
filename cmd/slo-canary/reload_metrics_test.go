package main

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

// TestReloadMetricsGolden keeps the reload metrics' names under review (a
// rename breaks alerts on failed reloads) and runs promtool's linter over
// them.
func TestReloadMetricsGolden(t *testing.T) {
	reg := prometheus.NewRegistry()
	newReloadMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		names = append(names, mf.GetName()+" "+strings.ToLower(mf.GetType().String()))
		if !strings.HasPrefix(mf.GetName(), "slo_canary_") || mf.GetHelp() == "" || len(mf.GetMetric()) == 0 {
			t.Errorf("%s: needs the prefix, HELP and a series from the start", mf.GetName())
		}
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(names)
	want, err := os.ReadFile("testdata/reload_metrics.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, "\n") + "\n"; got != string(want) {
		t.Errorf("reload metric names changed; review and update testdata/reload_metrics.golden.\ngot:\n%s\nwant:\n%s", got, want)
	}

	cmd := exec.Command(testenv.Binary(t, "promtool"), "check", "metrics")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
