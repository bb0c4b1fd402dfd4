package burst

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/slo-scout/slo-canary/config"
)

// finish computes the report from what was recorded, judges it, exports it.
func (b *burst) finish(rep *Report, results []StepResult) *Report {
	b.compute(rep, results)
	return b.r.publish(rep, rep.Events.Acked, b.quiet)
}

// compute fills the report from what was recorded, without judging it.
func (b *burst) compute(rep *Report, results []StepResult) {
	rep.Abort = b.getAbort()
	if b.pacer != nil {
		rep.Events.Sent = b.pacer.Handed()
		rep.Events.Failed = b.pacer.FailedCount()
		rep.Events.Acked = b.pacer.Acked()
	}
	b.mu.Lock()
	rep.Events.Acked += b.acked
	rep.Events.Failed += b.failed
	if len(b.reasons) > 0 {
		rep.Events.ByReason = map[string]int64{}
		for k, v := range b.reasons {
			rep.Events.ByReason[k] = v
		}
	}
	mc := MarkerCounts{Acked: b.acked, Sent: b.acked + b.failed}
	var first, last time.Time
	var trend []sighting
	trendFrom := rep.Started.Add(rep.LoadEnd.Sub(rep.Started) / 4)
	other := map[string][]float64{}
	for _, bm := range b.markers {
		if !bm.acked {
			continue
		}
		mc.Duplicates += int64(bm.dups)
		if bm.ooo {
			mc.OutOfOrder++
		}
		switch {
		case bm.lost:
			mc.Lost++
			if bm.late {
				mc.Late++
			}
		case !bm.seenAt.IsZero():
			mc.Seen++
			if first.IsZero() || bm.seenAt.Before(first) {
				first = bm.seenAt
			}
			if bm.seenAt.After(last) {
				last = bm.seenAt
			}
			if !bm.sentAt.Before(trendFrom) && !bm.sentAt.After(rep.LoadEnd) {
				trend = append(trend, sighting{sent: bm.sentAt.Sub(rep.Started).Seconds(), seen: bm.seenAt.Sub(rep.Started).Seconds(), lag: bm.lag.Seconds()})
			}
		default:
			mc.Unresolved++
		}
		for st, lag := range bm.other {
			other[st] = append(other[st], lag.Seconds())
		}
	}
	lags := slices.Clone(b.lags)
	b.mu.Unlock()
	rep.Markers = mc
	if g, ok := lagGrowth(trend); ok {
		rep.LagGrowth = &g
	}
	sort.Float64s(lags)
	rep.Lag = lagSummary(lags)
	if len(other) > 0 {
		rep.OtherStages = map[string]LagSummary{}
		for st, l := range other {
			sort.Float64s(l)
			rep.OtherStages[st] = lagSummary(l)
		}
	}
	if mc.Acked > 0 {
		rep.LossRatio = float64(mc.Lost) / float64(mc.Acked)
	}
	if !last.IsZero() {
		rep.CatchUpSeconds = max(last.Sub(rep.LoadEnd).Seconds(), 0)
		if d := last.Sub(first).Seconds(); d > 0 {
			rep.Processing.MarkersPerSecond = float64(mc.Seen-1) / d
		}
	}
	b.steps(rep, results)
	b.sampleMu.Lock()
	samples := b.samples
	b.sampleMu.Unlock()
	b.processing(rep, samples)
}

// publish judges a computed report, exports it and logs it; acked is the
// events this process sent (a scaled-out burst's leader sent its share). A
// quiet report (a capacity search's step) is not recorded in the burst series.
func (r *Runner) publish(rep *Report, acked int64, quiet bool) *Report {
	mc := rep.Markers
	rep.judge()
	r.o.Metrics.EventsSent.Add(float64(acked))
	if !quiet {
		r.o.Metrics.record(rep)
	}
	lvl := slog.LevelInfo
	if rep.Verdict != VerdictPass {
		lvl = slog.LevelWarn
	}
	r.log.Log(context.Background(), lvl, "burst finished", "profile", rep.Profile, "id", rep.ID, "verdict", rep.Verdict,
		"reasons", rep.Reasons, "events", rep.Events.Acked, "achieved_rate", rep.AchievedRate,
		"markers", mc.Acked, "seen", mc.Seen, "lost", mc.Lost, "lag_p95", rep.Lag.P95, "catchup_seconds", rep.CatchUpSeconds)
	return rep
}

// steps fills the per-step and per-second figures.
func (b *burst) steps(rep *Report, results []StepResult) {
	var acked, elapsed float64
	failed := rep.Events.Failed
	for i, res := range results {
		sr := StepReport{
			Rate: config.FormatRate(res.Step.Rate), TargetRate: res.Step.Rate, Duration: config.FormatDuration(res.Step.Duration),
			Planned: res.Step.Events(), Sent: res.Handed, Elapsed: res.Elapsed().Seconds(), Completed: res.Done,
			MaxBehindSeconds: res.MaxBehind.Seconds(),
		}
		// Failures are not told apart by step: they go to the last one, where
		// a failing broker shows first at the end of a burst anyway.
		if i == len(results)-1 {
			sr.Failed = failed
		}
		if sr.Elapsed > 0 {
			sr.AchievedRate = float64(sr.Sent-sr.Failed) / sr.Elapsed
		}
		sr.Deviation = deviation(sr.AchievedRate, sr.TargetRate)
		rep.Steps = append(rep.Steps, sr)
		acked += float64(sr.Sent - sr.Failed)
		elapsed += sr.Elapsed
	}
	if elapsed > 0 {
		rep.AchievedRate = acked / elapsed
	}
	if b.pacer == nil || len(results) == 0 {
		return
	}
	// The schedule's count in wall-clock second k since the start.
	start := results[0].Start
	expected := func(k int) float64 {
		lo, hi := start.Add(time.Duration(k)*time.Second), start.Add(time.Duration(k+1)*time.Second)
		var n float64
		for _, res := range results {
			s, e := res.Start, res.Start.Add(res.Step.Duration)
			if o := earliest(e, hi).Sub(latest(s, lo)); o > 0 {
				n += o.Seconds() * res.Step.Rate
			}
		}
		return n
	}
	behind := b.pacer.Behind()
	for k, n := range b.pacer.PerSecond() {
		want := expected(k)
		if want == 0 && n == 0 {
			continue
		}
		rep.PerSecond = append(rep.PerSecond, SecondReport{Second: k, Target: math.Round(want*10) / 10, Sent: n,
			Deviation: deviation(float64(n), want), MaxBehindSeconds: behind[k].Seconds()})
	}
}

// commitSample is the committed offsets of the watched groups on the ingest
// topic at one time.
type commitSample struct {
	at        time.Time
	committed int64
}

// sample adds, if the burst watches consumer groups, their committed offsets
// now.
func (b *burst) sample() {
	gl := b.r.o.GroupLag
	if gl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := gl.Refresh(ctx)
	if err != nil {
		return
	}
	if c, ok := snap.Committed(b.r.cfg.Canary.Topic); ok {
		b.addSample(commitSample{at: snap.At, committed: c})
	}
}

func (b *burst) addSample(s commitSample) {
	b.sampleMu.Lock()
	b.samples = append(b.samples, s)
	b.sampleMu.Unlock()
}

func (b *burst) processing(rep *Report, samples []commitSample) {
	if len(samples) < 2 {
		return
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].at.Before(samples[j].at) })
	f, l := samples[0], samples[len(samples)-1]
	if d := l.at.Sub(f.at).Seconds(); d > 0 {
		v := float64(l.committed-f.committed) / d
		rep.Processing.EventsPerSecond = &v
	}
	var peak float64
	for i := 1; i < len(samples); i++ {
		if d := samples[i].at.Sub(samples[i-1].at).Seconds(); d > 0 {
			peak = max(peak, float64(samples[i].committed-samples[i-1].committed)/d)
		}
	}
	rep.Processing.PeakEventsPerSecond = &peak
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// minTrendMarkers is the fewest markers, and minTrendPolls the fewest polls
// of the judged stage, a lag growth is fitted to.
const (
	minTrendMarkers = 10
	minTrendPolls   = 8
)

// sighting is when a marker was sent, when the judged stage showed it (a
// poll's start, or the moment a record was consumed) and its lag, in
// seconds.
type sighting struct{ sent, seen, lag float64 }

// lagGrowth is how fast the markers' lag grew with their send time, in
// seconds per second: the least-squares slope of their lags. A polled stage
// shows every marker that became visible since its last poll at once, and
// a marker's lag is taken from the middle of that interval, so the lags of
// markers sent one after another fall along a sawtooth of the poll's
// period, and a line through a span only a few polls long tilts with the
// polls' phase by several percent (a tenth with 1 s polls over 2 s). Over
// minTrendPolls polls or more it is within a percent or two, so with fewer
// there is no growth. ok is false then, and with fewer than minTrendMarkers
// markers.
func lagGrowth(ms []sighting) (g float64, ok bool) {
	if len(ms) < minTrendMarkers {
		return 0, false
	}
	polls := map[float64]bool{}
	pts := make([]point, len(ms))
	for i, m := range ms {
		polls[m.seen] = true
		pts[i] = point{m.sent, m.lag}
	}
	if len(polls) < minTrendPolls {
		return 0, false
	}
	return leastSquaresSlope(pts), true
}

// point is one (x, y) pair for leastSquaresSlope.
type point struct{ x, y float64 }

// leastSquaresSlope is the slope of the least-squares line through pts; 0
// when their x do not vary.
func leastSquaresSlope(pts []point) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, p := range pts {
		n++
		sx += p.x
		sy += p.y
		sxx += p.x * p.x
		sxy += p.x * p.y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
