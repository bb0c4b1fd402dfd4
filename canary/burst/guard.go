package burst

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
)

// produceWindow is what was produced between two guard checks.
type produceWindow struct {
	completed, failed int64
}

// minProduceSample keeps one failure among a handful from aborting a burst.
const minProduceSample = 20

// check runs the guards once and returns why the burst must stop, or nil.
// Before the start, w is nil: produce errors are not judged. When the group
// guards are on (or sample is set), consumer-group lag is refreshed, and the
// ingest topic's committed offsets are passed to sample.
func (b *burst) check(ctx context.Context, w *produceWindow, sample ...func(commitSample)) *Abort {
	g := b.r.cfg.Bursts.Guard
	now := time.Now()
	if g.MaxMarkerLag > 0 {
		var buf [1]uuid.UUID
		if _, oldest := b.r.svc.Tracker().Pending(b.stageIx, buf[:0], 1); !oldest.IsZero() {
			if age := now.Sub(oldest); age > g.MaxMarkerLag {
				return &Abort{Reason: "marker_lag", At: now, Value: age.Seconds(), Threshold: g.MaxMarkerLag.Seconds(),
					Detail: fmt.Sprintf("the oldest marker not yet seen at stage %s was sent %s ago, above bursts.guard.max_marker_lag %s",
						b.stage, age.Round(time.Millisecond), g.MaxMarkerLag)}
			}
		}
	}
	if gl := b.r.o.GroupLag; gl != nil && (g.MaxGroupLagRecords > 0 || g.MaxGroupLag > 0 || len(sample) > 0) {
		rctx, cancel := context.WithTimeout(ctx, max(g.Interval, time.Second))
		snap, err := gl.Refresh(rctx)
		cancel()
		if err == nil {
			if c, ok := snap.Committed(b.r.cfg.Canary.Topic); ok {
				for _, f := range sample {
					f(commitSample{at: snap.At, committed: c})
				}
			}
			if n, who := snap.MaxRecords(); g.MaxGroupLagRecords > 0 && n > int64(g.MaxGroupLagRecords) {
				return &Abort{Reason: "group_lag_records", At: now, Value: float64(n), Threshold: float64(g.MaxGroupLagRecords),
					Detail: fmt.Sprintf("consumer group %s lags %d records, above bursts.guard.max_group_lag_records %d", who, n, g.MaxGroupLagRecords)}
			}
			if s, who := snap.MaxSeconds(); g.MaxGroupLag > 0 && s > g.MaxGroupLag.Seconds() {
				return &Abort{Reason: "group_lag_seconds", At: now, Value: s, Threshold: g.MaxGroupLag.Seconds(),
					Detail: fmt.Sprintf("consumer group %s lags %.1fs, above bursts.guard.max_group_lag %s", who, s, g.MaxGroupLag)}
			}
		}
	}
	if w != nil && g.MaxProduceErrorRatio > 0 && w.completed >= minProduceSample {
		if ratio := float64(w.failed) / float64(w.completed); ratio > g.MaxProduceErrorRatio {
			return &Abort{Reason: "produce_errors", At: now, Value: ratio, Threshold: g.MaxProduceErrorRatio,
				Detail: fmt.Sprintf("%d of %d produces failed in the last guard interval, above bursts.guard.max_produce_error_ratio %v",
					w.failed, w.completed, g.MaxProduceErrorRatio)}
		}
	}
	return nil
}

func (b *burst) produceTotals() (completed, failed int64) {
	b.mu.Lock()
	completed, failed = b.acked+b.failed, b.failed
	b.mu.Unlock()
	completed += b.pacer.Acked() + b.pacer.FailedCount()
	failed += b.pacer.FailedCount()
	return completed, failed
}

// guard checks every guard interval while the load runs; a tripped guard
// records why and stops the load.
func (b *burst) guard(ctx context.Context, loadDone <-chan struct{}, stop func(), sample func(commitSample)) {
	t := time.NewTicker(b.r.cfg.Bursts.Guard.Interval)
	defer t.Stop()
	pc, pf := b.produceTotals()
	for {
		select {
		case <-ctx.Done():
			return
		case <-loadDone:
			return
		case <-t.C:
		}
		c, f := b.produceTotals()
		w := produceWindow{completed: c - pc, failed: f - pf}
		pc, pf = c, f
		if a := b.check(ctx, &w, sample); a != nil {
			b.setAbort(a)
			b.r.log.Warn("burst aborted by a guard", "profile", b.profile, "id", b.id, "reason", a.Reason, "detail", a.Detail)
			stop()
			return
		}
	}
}

// progress reports about once a second until the burst is over.
func (b *burst) progress(ctx context.Context, loadDone, finished <-chan struct{}, steps []config.Step, start time.Time) {
	if b.r.o.Progress == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var total time.Duration
	for _, s := range steps {
		total += s.Duration
	}
	var lastSent int64
	lastAt := start
	load := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-finished:
			return
		case <-loadDone:
			load = false
			loadDone = nil
			continue
		case <-t.C:
		}
		now := time.Now()
		p := Progress{Profile: b.profile, Phase: "load", Steps: len(steps), Sent: b.pacer.Handed()}
		if !load {
			p.Phase = "catch-up"
		}
		el := now.Sub(start)
		var at time.Duration
		for i, s := range steps {
			p.Step, p.TargetRate = i+1, s.Rate
			if at += s.Duration; el < at {
				break
			}
		}
		if load {
			p.Left = max(total-el, 0)
		}
		if d := now.Sub(lastAt).Seconds(); d > 0 {
			p.Rate = float64(p.Sent-lastSent) / d
		}
		lastSent, lastAt = p.Sent, now
		b.mu.Lock()
		p.MarkersSent, p.MarkersSeen = b.acked, b.seen
		lags := slices.Clone(b.lags)
		b.mu.Unlock()
		sort.Float64s(lags)
		p.P95 = canary.Quantile(lags, 0.95)
		b.r.o.Progress(p)
	}
}
