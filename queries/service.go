// Package queries times SLO-Scout's queries the way its users wait for them:
// continuously at a low rate, per probe, into SLO-ready histograms and
// good/total counters; and in scheduled concurrency runs, open-loop, so that a
// slow server cannot hide its slowness by holding the clients back. It also
// splits out the evidence (vector search) overhead from a pair of SLI probes.
//
// The probes themselves (HTTP, SQL) are in package probes; this package owns
// when they run and what is made of their results.
package queries

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/sched"
	"github.com/slo-scout/slo-canary/probes"
)

// Group is the scheduler group of concurrency runs: they never overlap.
const Group = "queries"

// jitter spreads continuous requests by +/-10% of the interval, so that
// replicas and probes do not fall into step.
const jitter = 0.1

// Options configure New.
type Options struct {
	Config     *config.Config
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Scheduler, if set, gets the scheduled concurrency runs as jobs (group
	// "queries"); the caller runs it.
	Scheduler *sched.Scheduler
}

// Service runs the continuous probes, keeps the evidence overhead current,
// and runs concurrency runs when the scheduler (or RunNow) says.
type Service struct {
	cfg     config.Queries
	log     *slog.Logger
	metrics *Metrics
	sched   *sched.Scheduler
	probes  []*continuous
	byName  map[string]*continuous
	// journeys discovers the journey ids of the probes that use them; nil
	// if no probe does.
	journeys *probes.JourneyDiscovery
	dm       *discoveryMetrics
}

// continuous is one probe's low-rate loop.
type continuous struct {
	name     string
	probe    probes.QueryProbe
	interval time.Duration
	budget   time.Duration
	timeout  time.Duration
	window   *window
	done     atomic.Bool // one request completed: the probe is working
	// discovers: the probe's journeys come from journey discovery. It waits
	// for the first discovery before its first request, and reports
	// whether it is measuring; measuring is what it reported last.
	discovers bool
	measuring atomic.Int32 // 0 unknown, 1 measuring, 2 not
	log       *slog.Logger
	trace     func(probes.QueryResult, time.Duration) // tests: every recorded request
}

// New builds the service: the enabled probes (with queries.enabled) and the
// metrics, and adds the scheduled runs to opts.Scheduler. Nothing is sent
// until Run.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	q := opts.Config.Queries
	s := &Service{cfg: q, log: opts.Logger, sched: opts.Scheduler, byName: map[string]*continuous{}}
	budgets := map[string]time.Duration{}
	var runs []string
	if q.Enabled {
		var err error
		if s.journeys, s.dm, err = newDiscovery(q, opts.Registerer, opts.Logger); err != nil {
			return nil, err
		}
		for _, name := range q.EnabledProbes() {
			pc := q.Probes[name]
			po := probes.QueryOptions{BaseURL: q.BaseURL, Auth: q.Auth, Clients: 1, Logger: opts.Logger}
			if s.journeys != nil {
				po.Journeys = s.journeys.IDs
			}
			p, err := probes.NewQuery(ctx, name, pc, po)
			if err != nil {
				s.close()
				return nil, err
			}
			c := &continuous{
				name: name, probe: p, interval: pc.Interval, budget: pc.Budget, timeout: pc.Timeout,
				window:    newWindow(windowCap(q.Evidence.Window, pc.Interval)),
				discovers: pc.DiscoversJourneys(),
				log:       opts.Logger.With("probe", name),
			}
			s.probes = append(s.probes, c)
			s.byName[name] = c
			budgets[name] = pc.Budget
		}
		for _, name := range slices.Sorted(maps.Keys(q.Concurrency)) {
			if q.Concurrency[name].Enabled {
				runs = append(runs, name)
			}
		}
	}
	s.metrics = NewMetrics(opts.Registerer, budgets, runs)
	if s.evidencePair() != nil {
		s.metrics.OverheadBudget.Set(q.Evidence.Budget.Seconds())
	}
	if opts.Scheduler != nil {
		for _, name := range runs {
			r := q.Concurrency[name]
			if r.Schedule == "" {
				continue
			}
			err := opts.Scheduler.Add(sched.Job{Name: "query_" + name, Group: Group, Spec: r.Schedule, Run: func(ctx context.Context) error {
				_, err := s.runConcurrency(ctx, name)
				return err
			}})
			if err != nil {
				s.close()
				return nil, fmt.Errorf("queries.concurrency.%s: %w", name, err)
			}
		}
	}
	return s, nil
}

// windowCap holds a window's worth of samples at the probe's rate, with room
// for jitter, within bounds.
func windowCap(window, interval time.Duration) int {
	if interval <= 0 {
		return 1024
	}
	return min(max(int(2*window/interval), 64), 100000)
}

// Run runs the continuous probes and the overhead computation until ctx is
// cancelled, then closes the probes.
func (s *Service) Run(ctx context.Context) error {
	defer s.close()
	var wg sync.WaitGroup
	var first <-chan struct{} // closed: journeys discovered once
	if s.journeys != nil {
		first = s.journeys.First()
		wg.Go(func() { _ = s.journeys.Run(ctx) })
	}
	for _, c := range s.probes {
		wg.Go(func() {
			if c.discovers {
				select {
				case <-first:
				case <-ctx.Done():
					return
				}
			}
			c.run(ctx, s.metrics, s.dm)
		})
	}
	if pair := s.evidencePair(); pair != nil {
		wg.Go(func() { s.overheadLoop(ctx, pair[0], pair[1]) })
	}
	wg.Wait()
	return nil
}

func (s *Service) close() {
	for _, c := range s.probes {
		c.probe.Close()
	}
	if s.journeys != nil {
		s.journeys.Close()
	}
}

// Ready reports whether every continuous probe has completed a request,
// whatever its outcome: the canary is measuring. A failing API is the
// metrics' business, not readiness's.
func (s *Service) Ready() error {
	var waiting []string
	for _, c := range s.probes {
		if !c.done.Load() {
			waiting = append(waiting, c.name)
		}
	}
	if len(waiting) > 0 {
		return fmt.Errorf("query probes without a completed request yet: %s", strings.Join(waiting, ", "))
	}
	return nil
}

// run sends one request per (jittered) interval. Each request's latency
// counts from when it was due: a request that took longer than the interval
// makes the next one late, and that wait counts, as in a concurrency run.
func (c *continuous) run(ctx context.Context, m *Metrics, dm *discoveryMetrics) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// A first request soon, so that the canary is ready quickly, but not at
	// the same instant for every probe.
	due := time.Now().Add(time.Duration(rand.Int64N(int64(min(c.interval, time.Second)))))
	for seq := uint64(0); ; seq++ {
		start := due
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
			start = time.Now() // see Sample.Start
		}
		var res probes.QueryResult
		if late := time.Since(due); late > c.timeout {
			// Stalled behind an earlier request for longer than a request may
			// take: count it as the timeout it would be, without sending it.
			now := time.Now()
			res = probes.QueryResult{Outcome: probes.OutcomeTimeout, Sent: now, Done: now,
				Err: fmt.Errorf("due %s ago, behind an earlier request", late.Round(time.Millisecond))}
		} else {
			res = c.probe.Do(ctx, seq)
		}
		if res.Outcome == probes.OutcomeCanceled || ctx.Err() != nil {
			return
		}
		c.record(m, dm, res, res.Done.Sub(start))
		due = due.Add(time.Duration(float64(c.interval) * (1 - jitter + 2*jitter*rand.Float64())))
	}
}

// record counts one continuous request. A request not sent for want of a
// journey (no_journeys) is counted as such, and nowhere else: it says
// nothing of SLO-Scout's latency, so it is neither a good nor a bad SLI
// event.
func (c *continuous) record(m *Metrics, dm *discoveryMetrics, res probes.QueryResult, latency time.Duration) {
	if c.discovers {
		c.setMeasuring(dm, res)
	}
	if res.Outcome == probes.OutcomeNoJourneys {
		m.Requests.WithLabelValues(c.name, res.Outcome).Inc()
		c.done.Store(true)
		if c.trace != nil {
			c.trace(res, latency)
		}
		return
	}
	ok := res.Outcome == probes.OutcomeSuccess
	ex := prometheus.Labels{}
	if res.RequestID != "" {
		ex["request_id"] = res.RequestID
	}
	if res.TargetName != "" {
		ex[res.TargetName] = res.TargetValue
	}
	obs := m.Latency.WithLabelValues(c.name)
	if eo, isEO := obs.(prometheus.ExemplarObserver); isEO && len(ex) > 0 && exemplarFits(ex) {
		eo.ObserveWithExemplar(latency.Seconds(), ex)
	} else {
		obs.Observe(latency.Seconds())
	}
	m.Requests.WithLabelValues(c.name, res.Outcome).Inc()
	m.SLITotal.WithLabelValues(c.name).Inc()
	if ok && latency <= c.budget {
		m.SLIGood.WithLabelValues(c.name).Inc()
	}
	c.window.add(res.Done, latency, ok)
	c.done.Store(true)
	if c.trace != nil {
		c.trace(res, latency)
	}
	if !ok {
		attrs := []any{"outcome", res.Outcome, "status", res.Status, "latency", latency, "request_id", res.RequestID}
		if res.TargetName != "" {
			attrs = append(attrs, res.TargetName, res.TargetValue)
		}
		c.log.Warn("query probe failed", append(attrs, "err", res.Err)...)
	}
}

// setMeasuring exports whether a probe with discovered journeys measures,
// and logs when that changes.
func (c *continuous) setMeasuring(dm *discoveryMetrics, res probes.QueryResult) {
	state, v := int32(1), 0.0
	if res.Outcome == probes.OutcomeNoJourneys {
		state, v = 2, 1
	}
	if dm != nil {
		dm.NotMeasuring.WithLabelValues(c.name).Set(v)
	}
	if old := c.measuring.Swap(state); old != state {
		switch {
		case state == 2:
			c.log.Warn("query probe not measuring: no journey id to query", "err", res.Err)
		case old == 2:
			c.log.Info("query probe measuring again: journeys discovered")
		}
	}
}

// exemplarFits: Prometheus refuses exemplars whose labels exceed 128 runes.
func exemplarFits(l prometheus.Labels) bool {
	n := 0
	for k, v := range l {
		n += len([]rune(k)) + len([]rune(v))
	}
	return n <= 128
}

// evidencePair returns the continuous probes with and without evidence, or
// nil if the overhead is not measured (not configured, or a probe disabled).
func (s *Service) evidencePair() []*continuous {
	e := s.cfg.Evidence
	with, without := s.byName[e.With], s.byName[e.Without]
	if e.With == "" || with == nil || without == nil {
		return nil
	}
	return []*continuous{with, without}
}

// minOverheadSamples is how many successes each probe needs in the window
// before its percentiles mean anything.
const minOverheadSamples = 5

// evidenceOverhead is the overhead over a window: percentiles of the probe
// with evidence minus the same percentiles without, from successes only.
type evidenceOverhead struct {
	P50, P95, P99 float64
	With, Without Percentiles
	WithinBudget  bool // P95 under Budget
	Budget        float64
}

// overhead computes the overhead over the window ending now; ok is false
// without enough samples.
func (s *Service) overhead(with, without *continuous, now time.Time) (evidenceOverhead, bool) {
	from := now.Add(-s.cfg.Evidence.Window)
	a, _ := with.window.since(from)
	b, _ := without.window.since(from)
	o := evidenceOverhead{Budget: s.cfg.Evidence.Budget.Seconds()}
	if len(a) < minOverheadSamples || len(b) < minOverheadSamples {
		return o, false
	}
	o.With, o.Without = percentiles(a), percentiles(b)
	o.P50, o.P95, o.P99 = o.With.P50-o.Without.P50, o.With.P95-o.Without.P95, o.With.P99-o.Without.P99
	o.WithinBudget = o.P95 < o.Budget
	return o, true
}

// overheadLoop refreshes the overhead gauges at the probes' pace.
func (s *Service) overheadLoop(ctx context.Context, with, without *continuous) {
	t := time.NewTicker(min(with.interval, without.interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			o, ok := s.overhead(with, without, now)
			if !ok {
				continue
			}
			for q, v := range map[string]float64{"0.5": o.P50, "0.95": o.P95, "0.99": o.P99} {
				s.metrics.Overhead.WithLabelValues(q).Set(v)
			}
			ok01 := 0.0
			if o.WithinBudget {
				ok01 = 1
			}
			s.metrics.OverheadOK.WithLabelValues().Set(ok01)
		}
	}
}

// RunNow runs the named concurrency run now, through the scheduler when
// there is one (so that it never overlaps a scheduled run), and exports its
// result. ran is false if another run was going.
func (s *Service) RunNow(ctx context.Context, name string) (res RunResult, ran bool, err error) {
	if _, ok := s.cfg.Concurrency[name]; !ok {
		return RunResult{}, false, fmt.Errorf("%w %q under queries.concurrency", errNoRun, name)
	}
	job := func(ctx context.Context) error {
		res, err = s.runConcurrency(ctx, name)
		return err
	}
	if s.sched == nil {
		return res, true, job(ctx)
	}
	ran, jerr := s.sched.TryRun(ctx, sched.Job{Name: "query_" + name, Group: Group, Run: job})
	if jerr != nil && err == nil {
		err = jerr
	}
	return res, ran, err
}

// runConcurrency runs one concurrency run and exports its result.
func (s *Service) runConcurrency(ctx context.Context, name string) (RunResult, error) {
	var running func() []string
	if s.journeys != nil {
		running = s.journeys.IDs
	}
	res, err := runOne(ctx, s.cfg, name, s.log, running, nil)
	if err != nil {
		return res, err
	}
	s.export(res)
	return res, nil
}

func (s *Service) export(r RunResult) { s.metrics.exportRun(r) }

// exportRun sets the concurrency series from a run's result.
func (m *Metrics) exportRun(r RunResult) {
	for q, v := range map[string]float64{"0.5": r.Latency.P50, "0.95": r.Latency.P95, "0.99": r.Latency.P99, "1": r.Latency.Max} {
		m.RunLatency.WithLabelValues(r.Run, q).Set(v)
	}
	m.RunSuccess.WithLabelValues(r.Run).Set(r.SuccessRatio)
	v := 0.0
	if r.Verdict == VerdictPass {
		v = 1
	}
	m.RunVerdict.WithLabelValues(r.Run).Set(v)
	m.RunTimestamp.WithLabelValues(r.Run).Set(float64(r.Started.Add(time.Duration(r.Elapsed * float64(time.Second))).Unix()))
	for o, n := range r.Outcomes {
		m.RunRequests.WithLabelValues(r.Run, o).Set(float64(n))
	}
	m.Runs.WithLabelValues(r.Run, r.Verdict).Inc()
}

// runOne runs the concurrency run name of q with a probe of its own, sized
// for its clients. A probe that discovers its journeys rotates through those
// of journeys (the daemon's discovery) or, if nil, of one discovery now.
// progress, if not nil, is called about once a second while the requests
// run, and never after runOne returns.
func runOne(ctx context.Context, q config.Queries, name string, log *slog.Logger, journeys func() []string, progress func(RunProgress)) (RunResult, error) {
	rc, ok := q.Concurrency[name]
	if !ok {
		return RunResult{}, fmt.Errorf("%w %q under queries.concurrency", errNoRun, name)
	}
	pc, ok := q.Probes[rc.Probe]
	if !ok {
		return RunResult{}, fmt.Errorf("queries.concurrency.%s.probe: %q is not a probe under queries.probes", name, rc.Probe)
	}
	ids, err := runJourneys(ctx, q, pc, journeys, log)
	if err != nil {
		return RunResult{}, fmt.Errorf("concurrency run %s: probe %s: %w", name, rc.Probe, err)
	}
	p, err := probes.NewQuery(ctx, rc.Probe, pc, probes.QueryOptions{BaseURL: q.BaseURL, Auth: q.Auth, Clients: rc.Clients, Logger: log,
		Journeys: func() []string { return ids }})
	if err != nil {
		return RunResult{}, fmt.Errorf("concurrency run %s: %w", name, err)
	}
	defer p.Close()
	l := Load{Clients: rc.Clients, Rate: rc.Rate, Duration: rc.Duration, MaxWait: pc.Timeout, WarmUp: true}
	col := newCollector(l.Requests())
	log.Info("concurrency run started", "run", name, "probe", rc.Probe, "clients", rc.Clients, "rate", rc.Rate, "duration", rc.Duration)
	started := time.Now()
	stopProgress := col.report(progress, RunProgress{Run: name, Probe: rc.Probe, Requests: l.Requests()}, started, rc.Duration)
	err = RunLoad(ctx, p, l, col.observe)
	stopProgress()
	if err != nil {
		return RunResult{}, fmt.Errorf("concurrency run %s: %w", name, err)
	}
	r := col.result(Budget{P95: rc.BudgetP95.Seconds(), P99: rc.BudgetP99.Seconds(), MinSuccessRatio: rc.MinSuccessRatio})
	r.Run, r.Probe, r.Clients, r.Rate, r.Duration = name, rc.Probe, rc.Clients, rc.Rate, config.FormatDuration(rc.Duration)
	r.Started, r.Elapsed = started, time.Since(started).Seconds()
	log.Info("concurrency run done", "run", name, "verdict", r.Verdict, "p50", r.Latency.P50, "p95", r.Latency.P95,
		"p99", r.Latency.P99, "max", r.Latency.Max, "success_ratio", r.SuccessRatio, "breaches", r.Breaches)
	return r, nil
}

// IsNoRun reports whether err names a run that is not configured.
func IsNoRun(err error) bool { return errors.Is(err, errNoRun) }
