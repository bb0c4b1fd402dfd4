package burst

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/slo-scout/slo-canary/config"
)

// Failed checks of a search step, the values of SearchReport.FailedCheck, in
// the order they are blamed when several fail at once.
const (
	CheckLoss        = "loss"         // a marker was lost (or not resolved)
	CheckBacklog     = "backlog"      // the watched groups fell behind during the step
	CheckLag         = "lag"          // marker lag p50/p95/p99 above the burst budgets
	CheckSinkRate    = "sink_rate"    // committed offsets grew slower than the produce rate
	CheckProduceRate = "produce_rate" // the canary did not achieve the step's rate
)

// Search outcomes, the bounded values of slo_canary_capacity_searches_total's
// outcome label.
const (
	OutcomeFound      = "found"        // a sustainable rate below max, and the first failing rate above it
	OutcomeAtLeastMax = "at_least_max" // every step passed up to max
	OutcomeNone       = "none"         // no step passed, down to the search's floor
	OutcomeAborted    = "aborted"      // a guard, the time cap or a shutdown stopped it: no figure
)

var searchOutcomes = []string{OutcomeFound, OutcomeAtLeastMax, OutcomeNone, OutcomeAborted}

// sampleEvery is how often the watched groups' lag is read during a step and
// while draining.
const sampleEvery = 200 * time.Millisecond

// SearchReport is what a capacity search found. The JSON keys
// sustainable_rate_per_second, first_failing_rate_per_second, failed_check,
// steps, aborted and abort_reason are read by checks outside this project.
type SearchReport struct {
	Profile  string    `json:"profile"`
	ID       string    `json:"id"`
	Outcome  string    `json:"outcome"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`

	StartRate    float64 `json:"start_rate_per_second"`
	MaxRate      float64 `json:"max_rate_per_second"` // the search's max, within bursts.max_rate
	StepDuration string  `json:"step_duration"`
	Precision    float64 `json:"precision"`

	// Sustainable is the highest step that passed: its rate, or, when its
	// markers' lag still grew a little (within lag_growth_tolerance), the
	// rate the pipeline processed over it, rate / (1 + growth). Null when
	// no step passed or the search was aborted. AtLeastMax: it is the max,
	// and the pipeline may hold more.
	Sustainable  *float64 `json:"sustainable_rate_per_second"`
	AtLeastMax   bool     `json:"at_least_max"`
	FirstFailing *float64 `json:"first_failing_rate_per_second"` // the lowest step that failed
	FailedCheck  string   `json:"failed_check"`                  // what failed it (Check*), "" when none did
	FailedDetail string   `json:"failed_detail,omitempty"`
	// Knee is the highest passing rate below which marker lag p95 grows no
	// faster than the rate (see knee); null when the steps do not show one.
	Knee         *float64 `json:"knee_rate_per_second"`
	ContractRate float64  `json:"contract_rate_per_second"`
	Headroom     *float64 `json:"headroom_ratio"` // Sustainable / ContractRate

	Steps       []SearchStep `json:"steps"`
	EventsSent  int64        `json:"events_sent"`
	Aborted     bool         `json:"aborted"`
	AbortReason string       `json:"abort_reason"`
}

// SearchStep is one step of a search.
type SearchStep struct {
	TargetRate   float64 `json:"target_rate_per_second"`
	AchievedRate float64 `json:"achieved_rate_per_second"`
	LagP50       float64 `json:"lag_p50_seconds"`
	LagP95       float64 `json:"lag_p95_seconds"`
	LagP99       float64 `json:"lag_p99_seconds"`
	Passed       bool    `json:"passed"`
	FailedCheck  string  `json:"failed_check,omitempty"`
	// GroupLagStart and End are the watched groups' largest lag in records
	// when the load began and when it ended; null without consumer_lag.
	GroupLagStart *int64 `json:"group_lag_start_records"`
	GroupLagEnd   *int64 `json:"group_lag_end_records"`
	// BacklogGrowth is how fast that lag grew over the step's last three
	// quarters (least squares), records per second.
	BacklogGrowth *float64 `json:"backlog_growth_per_second"`
	// SinkRate is how fast the groups' committed offsets on the ingest
	// topic grew over the same window, events per second.
	SinkRate *float64 `json:"sink_rate_per_second"`
	// LagGrowth is the step's marker lag growth (Report.LagGrowth): seconds
	// of lag gained per second of load; null with too few markers.
	LagGrowth  *float64  `json:"lag_growth_seconds_per_second"`
	EventsSent int64     `json:"events_sent"`
	Reasons    []string  `json:"reasons,omitempty"`
	BurstID    string    `json:"burst_id"`
	Started    time.Time `json:"started"`
	// Seconds is the step's wall time: load, markers, and the drain after.
	Seconds float64 `json:"seconds"`
}

// Summary is a one-line account of the search.
func (s *SearchReport) Summary() string {
	switch {
	case s.Aborted:
		return fmt.Sprintf("capacity %s: ABORTED after %d steps: %s", s.Profile, len(s.Steps), s.AbortReason)
	case s.Sustainable == nil:
		return fmt.Sprintf("capacity %s: no rate sustained; %.0f/s failed on %s", s.Profile, deref(s.FirstFailing), s.FailedCheck)
	case s.AtLeastMax:
		return fmt.Sprintf("capacity %s: at least %.0f/s (max), headroom %.2fx the contract; %d steps", s.Profile, *s.Sustainable, deref(s.Headroom), len(s.Steps))
	}
	return fmt.Sprintf("capacity %s: sustains %.0f/s, fails at %.0f/s on %s; headroom %.2fx the contract; %d steps",
		s.Profile, *s.Sustainable, deref(s.FirstFailing), s.FailedCheck, deref(s.Headroom), len(s.Steps))
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// lagSample is the watched groups' state at one time.
type lagSample struct {
	at        time.Time
	lag       int64
	committed int64
	hasCommit bool
}

// Search runs a capacity search: steps of spec.StepDuration at one rate each,
// doubling from spec.Start while they pass, then bisecting between the
// highest pass and the lowest fail until they are within spec.Precision of
// the fail, never above spec.Max nor bursts.max_rate. Each step is a burst
// (load on every partition, markers through it, the guards beside it) judged
// by the burst budgets, and by whether the watched consumer groups kept up.
// Between steps it waits until their lag is back to its level before the
// search. It holds the runner for its whole length, so no burst runs
// meanwhile. As Run, the error is for a search that could not be attempted;
// an aborted one returns its report.
func (r *Runner) Search(ctx context.Context, profile string, spec config.Search) (*SearchReport, error) {
	bc := r.cfg.Bursts
	if err := bc.CheckSearch("capacity "+profile, spec); err != nil {
		return nil, err
	}
	if !r.running.CompareAndSwap(false, true) {
		return nil, ErrRunning
	}
	defer r.running.Store(false)
	r.o.Metrics.Running.Set(1)
	defer r.o.Metrics.Running.Set(0)

	s := &search{r: r, spec: spec, profile: profile}
	rep := s.run(ctx)
	r.o.Metrics.recordSearch(rep)
	r.log.Info("capacity search finished", "profile", profile, "outcome", rep.Outcome, "sustainable", deref(rep.Sustainable),
		"first_failing", deref(rep.FirstFailing), "failed_check", rep.FailedCheck, "steps", len(rep.Steps), "abort_reason", rep.AbortReason)
	return rep, nil
}

type search struct {
	r       *Runner
	spec    config.Search
	profile string
}

func (s *search) run(parent context.Context) *SearchReport {
	r, spec := s.r, s.spec
	rep := &SearchReport{
		Profile: s.profile, ID: r.svc.RunID() + ".s" + strconv.FormatInt(r.seq.Add(1), 10), Started: time.Now(),
		MaxRate: math.Min(spec.Max, r.cfg.Bursts.MaxRate), StepDuration: config.FormatDuration(spec.StepDuration),
		Precision: spec.Precision, ContractRate: r.cfg.Bursts.Contract(), Steps: []SearchStep{},
	}
	rep.StartRate = math.Min(spec.Start, rep.MaxRate)
	defer func() { rep.Finished = time.Now() }()
	ctx, cancel := context.WithTimeout(parent, spec.Timeout)
	defer cancel()
	abort := func(reason string) *SearchReport {
		rep.Aborted, rep.AbortReason, rep.Outcome = true, reason, OutcomeAborted
		rep.Sustainable, rep.Headroom, rep.AtLeastMax = nil, nil, false
		return rep
	}
	stopped := func() string {
		if parent.Err() != nil {
			return "cancelled: the search was cancelled (shutdown)"
		}
		return fmt.Sprintf("timeout: the search's time cap (%s) was reached", spec.Timeout)
	}

	baseline, _, _ := s.groupLag(ctx)
	var lo, hi float64   // highest pass, lowest fail (0: none yet)
	var loGrowth float64 // the highest pass's marker lag growth, if above 0
	rate := rep.StartRate
	floor := rep.StartRate / 64
	for {
		if left := time.Until(deadline(ctx)); left < spec.StepDuration {
			return abort(stopped())
		}
		st, a, err := s.step(ctx, rate)
		if st != nil {
			rep.Steps = append(rep.Steps, *st)
			rep.EventsSent += st.EventsSent
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return abort(stopped())
		case err != nil:
			return abort("error: " + err.Error())
		case a != nil && a.Reason == "cancelled":
			return abort(stopped())
		case a != nil:
			return abort(a.Reason + ": " + a.Detail)
		}
		if r.o.StepDone != nil {
			r.o.StepDone(*st)
		}
		if st.Passed {
			lo, loGrowth = rate, 0
			if st.LagGrowth != nil && *st.LagGrowth > 0 {
				loGrowth = *st.LagGrowth
			}
		} else {
			hi = rate
			rep.FailedCheck, rep.FailedDetail = st.FailedCheck, firstOr(st.Reasons)
		}
		done := false
		switch {
		case hi == 0 && rate >= rep.MaxRate:
			rep.AtLeastMax, done = true, true
		case hi == 0:
			rate = math.Min(2*rate, rep.MaxRate)
		case hi-lo <= spec.Precision*hi, lo == 0 && hi <= floor:
			done = true
		default:
			rate = math.Round((lo + hi) / 2)
			if rate <= lo || rate >= hi {
				rate = (lo + hi) / 2
			}
		}
		if done {
			break
		}
		if err := s.drain(ctx, baseline); err != nil {
			if ctx.Err() != nil {
				return abort(stopped())
			}
			return abort(err.Error())
		}
	}
	if lo > 0 {
		// A step passes while its markers fall behind by up to
		// lag_growth_tolerance of the time: the rate the pipeline processed
		// over it is the rate over 1 + that growth, never above the rate
		// (rounded down). Below the capacity the growth is 0 give or take
		// the measurement's spread, which costs the figure no more than
		// that spread.
		sus := lo
		if rep.AtLeastMax {
			loGrowth = 0 // "at least max": max held, whatever the noise
		}
		if loGrowth > 0 {
			sus = math.Floor(lo / (1 + loGrowth))
		}
		rep.Sustainable = &sus
		lo = sus
		if rep.ContractRate > 0 {
			h := lo / rep.ContractRate
			rep.Headroom = &h
		}
	}
	if hi > 0 {
		rep.FirstFailing = &hi
	}
	rep.Knee = knee(rep.Steps)
	switch {
	case rep.AtLeastMax:
		rep.Outcome = OutcomeAtLeastMax
	case lo == 0:
		rep.Outcome = OutcomeNone
	default:
		rep.Outcome = OutcomeFound
	}
	return rep
}

func deadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(365 * 24 * time.Hour)
	}
	return d
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// groupLag reads the watched groups' largest lag in records and their
// committed offsets on the ingest topic; ok is false without a watcher or
// when the read failed.
func (s *search) groupLag(ctx context.Context) (lagSample, bool, error) {
	gl := s.r.o.GroupLag
	if gl == nil {
		return lagSample{}, false, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	snap, err := gl.Refresh(rctx)
	if err != nil {
		return lagSample{}, false, err
	}
	n, _ := snap.MaxRecords()
	c, ok := snap.Committed(s.r.cfg.Canary.Topic)
	return lagSample{at: snap.At, lag: n, committed: c, hasCommit: ok}, true, nil
}

// step runs one step at rate, with the watched groups sampled beside it, and
// judges it.
func (s *search) step(ctx context.Context, rate float64) (*SearchStep, *Abort, error) {
	r := s.r
	st := &SearchStep{TargetRate: rate, Started: time.Now()}
	var (
		mu      sync.Mutex
		samples []lagSample
	)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			if ls, ok, _ := s.groupLag(sctx); ok {
				mu.Lock()
				samples = append(samples, ls)
				mu.Unlock()
			}
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	rep, err := r.run(ctx, s.profile, []config.Step{{Rate: rate, Duration: s.spec.StepDuration}}, true)
	stop()
	<-done
	st.Seconds = time.Since(st.Started).Seconds()
	if err != nil {
		return nil, nil, err
	}
	st.BurstID, st.EventsSent = rep.ID, rep.Events.Acked
	st.AchievedRate = rep.AchievedRate
	st.LagP50, st.LagP95, st.LagP99 = rep.Lag.P50, rep.Lag.P95, rep.Lag.P99
	st.LagGrowth = rep.LagGrowth
	if rep.Abort != nil {
		if rep.Abort.Reason == "unhealthy_at_start" {
			return nil, rep.Abort, nil // nothing was sent: not a step
		}
		return st, rep.Abort, nil
	}
	s.judge(st, rep, samples)
	return st, nil, nil
}

// judge decides a step: the burst's own checks, then whether the watched
// groups kept up over the step's last three quarters (the first quarter lets
// the pipeline reach its steady in-flight backlog at the new rate).
func (s *search) judge(st *SearchStep, rep *Report, samples []lagSample) {
	tol := s.spec.BacklogTolerance
	sort.Slice(samples, func(i, j int) bool { return samples[i].at.Before(samples[j].at) })
	from := rep.Started.Add(s.spec.StepDuration / 4)
	var win []lagSample
	for _, ls := range samples {
		if !ls.at.Before(rep.Started) && st.GroupLagStart == nil {
			v := ls.lag
			st.GroupLagStart = &v
		}
		if !ls.at.After(rep.LoadEnd) {
			v := ls.lag
			st.GroupLagEnd = &v
			if !ls.at.Before(from) {
				win = append(win, ls)
			}
		}
	}
	failed := map[string]bool{}
	for _, c := range rep.Checks {
		if c.Pass {
			continue
		}
		st.Reasons = append(st.Reasons, c.String())
		switch {
		case c.Name == "loss" || c.Name == "unresolved_markers" || c.Name == "markers":
			failed[CheckLoss] = true
		case c.Name == "lag_p50" || c.Name == "lag_p95" || c.Name == "lag_p99":
			failed[CheckLag] = true
		default:
			failed[CheckProduceRate] = true
		}
	}
	if g := st.LagGrowth; g != nil && *g > s.spec.LagGrowth {
		failed[CheckBacklog] = true
		st.Reasons = append(st.Reasons, fmt.Sprintf("marker lag grew %.3f s per second of load over the step, above %.3f: the pipeline fell behind by %.1f%% of the time", *g, s.spec.LagGrowth, 100**g))
	}
	if len(win) >= 3 {
		tol = recordsTolerance(tol, win)
		g := slope(win, func(ls lagSample) float64 { return float64(ls.lag) })
		st.BacklogGrowth = &g
		if limit := tol * st.TargetRate; g > limit {
			failed[CheckBacklog] = true
			st.Reasons = append(st.Reasons, fmt.Sprintf("backlog grew %.0f records/s over the step, above %.0f (%.0f%% of the rate)", g, limit, 100*tol))
		}
		if win[0].hasCommit {
			sr := slope(win, func(ls lagSample) float64 { return float64(ls.committed) })
			st.SinkRate = &sr
			if limit := (1 - tol) * st.AchievedRate; sr < limit {
				failed[CheckSinkRate] = true
				st.Reasons = append(st.Reasons, fmt.Sprintf("sink processed %.0f events/s, below %.0f (produce rate %.0f/s less %.0f%%)", sr, limit, st.AchievedRate, 100*tol))
			}
		}
	}
	for _, c := range []string{CheckLoss, CheckBacklog, CheckLag, CheckSinkRate, CheckProduceRate} {
		if failed[c] {
			st.FailedCheck = c
			break
		}
	}
	st.Passed = st.FailedCheck == ""
}

// minCommits is how many commits of the watched groups a step's window must
// see for their lag and committed offsets to be judged at backlog_tolerance.
const minCommits = 8

// recordsTolerance is the tolerance the records checks (the groups' lag and
// the sink's rate) use over win. A group's lag and committed offsets move in
// stairs, one per commit, and a line through a window only a few commits
// long tilts with their phase by about half a commit's share of the window:
// with fewer than minCommits commits the tolerance widens to that (a
// stalled group, which commits nothing, still fails: its backlog grows by
// the whole rate). The marker lag growth does not depend on commits.
func recordsTolerance(tol float64, win []lagSample) float64 {
	if !win[0].hasCommit {
		return tol
	}
	commits := map[int64]bool{}
	for _, ls := range win {
		commits[ls.committed] = true
	}
	if n := len(commits); n < minCommits {
		return max(tol, 0.5/float64(n))
	}
	return tol
}

// slope is the least-squares slope of f over the samples, per second.
func slope(ls []lagSample, f func(lagSample) float64) float64 {
	pts := make([]point, len(ls))
	for i, s := range ls {
		pts[i] = point{s.at.Sub(ls[0].at).Seconds(), f(s)}
	}
	return leastSquaresSlope(pts)
}

// drain waits until the watched groups' lag is back to its level before the
// search (within a small slack for what is in flight), so one step's backlog
// is not blamed on the next. Without a watcher there is nothing to wait for.
func (s *search) drain(ctx context.Context, baseline lagSample) error {
	if s.r.o.GroupLag == nil {
		return nil
	}
	slack := max(int64(100), baseline.lag/10)
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	var last int64 = -1
	for {
		ls, ok, _ := s.groupLag(ctx)
		if ok {
			if ls.lag <= baseline.lag+slack {
				return nil
			}
			last = ls.lag
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not drained: the watched groups still lag %d records (%d before the search): %w", last, baseline.lag, ctx.Err())
		case <-t.C:
		}
	}
}

// knee finds the rate above which marker lag p95 rises faster than linearly
// with the rate. Over the steps sorted by rate, the elasticity of lag p95 with
// respect to the rate between neighbours, Δln(p95)/Δln(rate), is 1 when the
// lag grows in proportion to the rate and below 1 while the pipeline absorbs
// it (a flat lag is 0); the knee is the lower rate of the first pair whose
// elasticity exceeds 1 — from there a little more load costs more than its
// share of lag. Null when fewer than three steps measured a lag, or none
// exceeds 1.
func knee(steps []SearchStep) *float64 {
	type pt struct{ rate, p95 float64 }
	var pts []pt
	for _, s := range steps {
		if s.LagP95 > 0 && s.TargetRate > 0 {
			pts = append(pts, pt{s.TargetRate, s.LagP95})
		}
	}
	if len(pts) < 3 {
		return nil
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].rate < pts[j].rate })
	for i := 0; i+1 < len(pts); i++ {
		a, b := pts[i], pts[i+1]
		if b.rate <= a.rate {
			continue
		}
		if e := math.Log(b.p95/a.p95) / math.Log(b.rate/a.rate); e > 1 {
			v := a.rate
			return &v
		}
	}
	return nil
}
