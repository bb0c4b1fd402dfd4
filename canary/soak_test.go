package canary_test

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestSoak runs the canary at 10x the default marker rate (10 markers per
// partition per second, 100/s over 10 partitions) against the reference
// pipeline and checks that goroutines and tracked markers stay flat once the
// tracker's retention window is full, and that nothing is lost. It runs for 25 s by default; set
// SLO_CANARY_TEST_SOAK to a duration (e.g. 30m) for the real soak:
//
//	SLO_CANARY_TEST_SOAK=30m go test -run TestSoak -timeout 40m -v ./canary/
func TestSoak(t *testing.T) {
	total := 25 * time.Second
	if v := os.Getenv("SLO_CANARY_TEST_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SLO_CANARY_TEST_SOAK=%q: %v", v, err)
		}
		total = d
	}
	// The test process also holds the reference pipeline: its ground truth is
	// capped, its in-memory Kafka trims records older than 5 s, and the
	// harness keeps no per-marker record, so that what grows would be the
	// canary's.
	e := newE2E(t, testbed.PipelineConfig{Partitions: 10, TruthCap: 2000})
	e.light = true
	adm := kadm.NewClient(e.kafkaClient(t))
	retention := "5000"
	if _, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "retention.ms", Value: &retention}},
		"raw-telemetry", "capsule-events"); err != nil {
		t.Fatalf("set retention: %v", err)
	}
	cfg := e.config(func(c *config.Config) {
		c.Canary.Rate = 10
		c.Canary.Deadline = 3 * time.Second
		c.Canary.FreshnessBudget = 2 * time.Second
		c.Canary.LateWindow = 2 * time.Second
	})
	cr := e.start(cfg, 0)

	type sample struct {
		goroutines, tracked int
		heap                uint64
	}
	take := func() sample {
		e.pipe.Cluster().ApplyRetention()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return sample{runtime.NumGoroutine(), cr.svc.Tracker().Len(), ms.HeapInuse}
	}
	// Retention is deadline + late window = 5 s: after 10 s the tracker is at
	// its steady size.
	warm := 15 * time.Second
	start := time.Now()
	testenv.WaitFor(t, warm+5*time.Second, "warm-up", func() bool { return time.Since(start) >= warm })
	base := take()
	maxTracked := base.tracked
	for time.Since(start) < total {
		next := time.Now().Add(5 * time.Second)
		testenv.WaitFor(t, 10*time.Second, "next sample", func() bool { return time.Now().After(next) })
		s := take()
		t.Logf("t=%s goroutines=%d tracked=%d heap=%.1fMiB", time.Since(start).Round(time.Second), s.goroutines, s.tracked, float64(s.heap)/(1<<20))
		maxTracked = max(maxTracked, s.tracked)
		if s.goroutines > base.goroutines+10 {
			t.Errorf("goroutines grew from %d to %d", base.goroutines, s.goroutines)
		}
		// The heap is logged, not judged: this process also holds the in-memory
		// Kafka, which keeps its segments whatever their retention. The
		// canary's own memory over a long soak is measured out of process by
		// scripts/bench-daemon.sh 1800 10.
	}
	// 100 markers/s held for at most retention + a poll and a half: bounded.
	if limit := 100 * 8; maxTracked > limit {
		t.Errorf("tracker held up to %d markers, want at most %d at 100/s with 5 s retention", maxTracked, limit)
	}
	cr.stop()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, stage := range []string{"database", "capsules"} {
		if l := len(e.lost[stage]); l != 0 {
			t.Errorf("%s: %d markers lost in a healthy soak", stage, l)
		}
	}
}
