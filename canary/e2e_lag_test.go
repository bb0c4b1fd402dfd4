package canary_test

import (
	"slices"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestE2ESQLLagMatchesGroundTruth: with no delay in the pipeline and the
// default poll interval and marker rate, the database stage's measured lag
// follows the pipeline's own record of when each row was committed (p50
// within 150 ms, p99 within one poll interval), at no more than twice the
// queries of one statement per poll interval. The poll and the injector tick
// at the same period: a poll that runs in step with the sends, just before
// the rows commit, finds every marker a whole interval late.
func TestE2ESQLLagMatchesGroundTruth(t *testing.T) {
	e := newE2E(t, testbed.PipelineConfig{})
	interval := config.ObserverDefaults().PollInterval
	cfg := e.config(func(c *config.Config) {
		d := config.Defaults()
		c.Canary.Rate = d.Canary.Rate
		db := c.Observers["database"]
		db.PollInterval = interval
		c.Observers["database"] = db
		caps := c.Observers["capsules"]
		caps.Enabled = false
		c.Observers["capsules"] = caps
	})
	const n = 300 // 30 rounds over the pipeline's 10 partitions
	began := time.Now()
	cr := e.start(cfg, n)
	e.waitSettled(cr, n, 2*time.Minute)
	queries := testenv.MetricValue(t, cr.reg, "slo_canary_observer_queries_total", map[string]string{"stage": "database"})
	elapsed := time.Since(began)
	cr.stop()

	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.failed) != 0 {
		t.Fatalf("%d markers failed to produce", len(e.failed))
	}
	var lags, truths, errs []float64
	for _, sr := range e.results["database"] {
		if sr.r.Outcome != canary.OutcomeObserved {
			t.Errorf("marker %s outcome %v, want observed", sr.r.Marker.ID, sr.r.Outcome)
			continue
		}
		truth, ok := e.pipe.Truth(sr.r.Marker.ID)
		if !ok || truth.DBVisible.IsZero() {
			t.Fatalf("no ground truth for %s", sr.r.Marker.ID)
		}
		want := truth.DBVisible.Sub(sr.r.Marker.SentAt)
		lags = append(lags, sr.r.Lag.Seconds())
		truths = append(truths, want.Seconds())
		errs = append(errs, (sr.r.Lag - want).Seconds())
	}
	if len(lags) != n {
		t.Fatalf("%d markers observed at the database, want %d", len(lags), n)
	}
	slices.Sort(lags)
	slices.Sort(truths)
	slices.Sort(errs)
	q := canary.Quantile
	t.Logf("lag p50 %v p99 %v; ground truth p50 %v p99 %v; error p1 %v p50 %v p99 %v; %v queries in %v (%.2f/s)",
		q(lags, .5), q(lags, .99), q(truths, .5), q(truths, .99), q(errs, .01), q(errs, .5), q(errs, .99),
		queries, elapsed.Round(time.Millisecond), queries/elapsed.Seconds())
	if d := q(lags, .5) - q(truths, .5); d.Abs() > 150*time.Millisecond {
		t.Errorf("lag p50 %v, ground truth p50 %v: %v apart, want at most 150ms", q(lags, .5), q(truths, .5), d)
	}
	if d := q(lags, .99) - q(truths, .99); d.Abs() > interval {
		t.Errorf("lag p99 %v, ground truth p99 %v: %v apart, want at most one poll interval (%v)", q(lags, .99), q(truths, .99), d, interval)
	}
	if lo, hi := q(errs, .01), q(errs, .99); lo < -interval || hi > interval {
		t.Errorf("per-marker error p1 %v p99 %v, want within one poll interval (%v)", lo, hi, interval)
	}
	// One statement per poll interval is the old rate (the pending markers
	// fit one batch); allow twice that, and one poll for the start.
	if limit := 2 * (elapsed.Seconds()/interval.Seconds() + 1); queries > limit {
		t.Errorf("%v queries in %v, want at most %.0f (twice one per poll interval)", queries, elapsed, limit)
	}
}
