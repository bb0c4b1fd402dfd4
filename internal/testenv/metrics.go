package testenv

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Metric gathers g and returns the first series of the family name whose
// labels include every name and value of labels (nil or empty: the first
// series). It fails the test if there is none.
func Metric(tb testing.TB, g prometheus.Gatherer, name string, labels map[string]string) *dto.Metric {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := make(map[string]string, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if lv, ok := have[k]; !ok || lv != v {
					continue series
				}
			}
			return m
		}
	}
	tb.Fatalf("metric %s%v not found", name, labels)
	return nil
}

// MetricValue returns the value of the counter, gauge or untyped series that
// Metric finds.
func MetricValue(tb testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	tb.Helper()
	m := Metric(tb, g, name, labels)
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	tb.Fatalf("metric %s%v is not a counter, gauge or untyped series", name, labels)
	return 0
}

// MetricNamesGolden checks a metric set against a golden list of "name type"
// lines: a rename breaks dashboards and alerts, so it must show in a diff.
// Every family must also have HELP, the slo_canary_ prefix and a series from
// the start (counters initialised at zero). With update the file is rewritten.
func MetricNamesGolden(t testing.TB, g prometheus.Gatherer, golden string, update bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName()+" "+strings.ToLower(mf.GetType().String()))
		if mf.GetHelp() == "" || !strings.HasPrefix(mf.GetName(), "slo_canary_") || len(mf.GetMetric()) == 0 {
			t.Errorf("%s: needs HELP, the slo_canary_ prefix and a series from the start", mf.GetName())
		}
	}
	slices.Sort(names)
	got := strings.Join(names, "\n") + "\n"
	if update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("metric names changed; review and run with -update.\ngot:\n%s\nwant:\n%s", got, want)
	}
}

// PromtoolCheckMetrics runs the real `promtool check metrics` over the text
// exposition of g. Findings matching accept (nil: none) are tolerated;
// anything else fails the test.
func PromtoolCheckMetrics(t testing.TB, g prometheus.Gatherer, accept *regexp.Regexp) {
	t.Helper()
	promtool := Binary(t, "promtool")
	mfs, err := g.Gather()
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
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && (accept == nil || !accept.MatchString(line)) {
			problems = append(problems, line)
		}
	}
	// promtool exits 3 for lint findings, which accept may have forgiven.
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3 && len(problems) == 0) || len(problems) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, strings.Join(problems, "\n"))
	}
}
