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
	"github.com/prometheus/common/expfmt"
)

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
