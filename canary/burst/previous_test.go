package burst

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPreviousSearchSurvivesARestart: the newest complete search in the
// report directory (not an aborted one after it, not another profile's) is
// what the next search is compared with after a restart; a corrupt report
// is named and skipped; the gauges stay empty until this process searches.
func TestPreviousSearchSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	write := func(profile string, at time.Time, sustainable float64, aborted bool) {
		r := &SearchReport{Profile: profile, Started: at, Finished: at.Add(10 * time.Minute), Aborted: aborted}
		if !aborted {
			r.Sustainable = &sustainable
		}
		if err := r.WriteJSON(r.ReportPath(dir)); err != nil {
			t.Fatal(err)
		}
	}
	write("nightly", t0, 7000, false)
	write("nightly", t0.Add(24*time.Hour), 8000, false)
	write("nightly", t0.Add(48*time.Hour), 0, true)
	write("other", t0.Add(72*time.Hour), 100, false)
	bad := filepath.Join(dir, "capacity-nightly-20261205T030000Z.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	latest, skipped, err := LatestSearch(dir, "nightly")
	if err != nil || latest == nil || *latest.Sustainable != 8000 {
		t.Fatalf("LatestSearch = %+v, %v", latest, err)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0].Error(), bad) {
		t.Errorf("skipped %v, want the corrupt %s", skipped, bad)
	}
	if none, _, err := LatestSearch(t.TempDir(), "nightly"); none != nil || err != nil {
		t.Errorf("empty directory: %+v, %v", none, err)
	}

	m := NewMetrics(prometheus.NewRegistry(), nil)
	m.InitSearchProfile("nightly")
	m.SeedPreviousSearch("nightly", *latest.Sustainable)
	if v := testutil.ToFloat64(m.CapPrevious.WithLabelValues("nightly")); v != 0 {
		t.Errorf("previous exported as %v before a search: want 0 until this process searches", v)
	}
	now := 5000.0
	m.recordSearch(&SearchReport{Profile: "nightly", Finished: time.Now(), Sustainable: &now, Outcome: OutcomeFound})
	if v := testutil.ToFloat64(m.CapPrevious.WithLabelValues("nightly")); v != 8000 {
		t.Errorf("previous %v after the first search since the restart, want 8000 from the report directory", v)
	}
	if v := testutil.ToFloat64(m.CapSustainable.WithLabelValues("nightly")); v != 5000 {
		t.Errorf("sustainable %v, want 5000", v)
	}
}
