package burst_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/canary/grouplag"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/sched"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// testCapacity is the reference pipeline's processing capacity in the search
// tests: 8,000 events/s, or 2,000/s under the race detector, which slows the
// producer and the pipeline below 8,000/s on a small machine.
func testCapacity() float64 {
	if raceOn {
		return 2000
	}
	return 8000
}

// capacityBed is a reference pipeline with a processing capacity, kfake and
// a real PostgreSQL, a canary judging at the database, a consumer-group lag
// watcher and a runner.
type capacityBed struct {
	p   *testbed.Pipeline
	cfg *config.Config
	svc *canary.Service
	r   *burst.Runner
	reg *prometheus.Registry
	m   *burst.Metrics
}

func newCapacityBed(t *testing.T, faults testbed.Faults, mod func(*config.Config), opts ...func(*burst.Options)) *capacityBed {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 3, PostgresDSN: dsn, Faults: faults, CommitInterval: 100 * time.Millisecond})
	c := config.Defaults()
	c.Kafka.Brokers = p.Brokers()
	c.Canary.Rate = 2
	c.Canary.Deadline = 8 * time.Second
	c.Canary.FreshnessBudget = 5 * time.Second
	c.Canary.Recovery.Enabled = false
	db := c.Observers["database"]
	db.SQL.DSN, db.PollInterval = dsn, 100*time.Millisecond
	c.Observers["database"] = db
	c.Bursts.Stage = "database"
	c.Bursts.MaxRate = 20000
	c.Bursts.Guard.Interval = 500 * time.Millisecond
	c.Bursts.Budgets.LagP50, c.Bursts.Budgets.LagP95, c.Bursts.Budgets.LagP99 = 3*time.Second, 4*time.Second, 5*time.Second
	// Steps of a few seconds: the pacer's own lateness on a busy machine is
	// a percent of them (TestGate's reason too).
	c.Bursts.Budgets.RateTolerance = 0.1
	// Enough markers per step (40/s at 2,000/s) for a lag growth that
	// resolves a percent.
	c.Bursts.MarkerShare = 0.02
	c.ConsumerLag.Groups = []string{"capsule-ingest-consumer"}
	if mod != nil {
		mod(&c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	svc, err := canary.New(context.Background(), canary.Options{Config: &c, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	gl, err := grouplag.New(grouplag.Config{KafkaOpts: kafkaOpts(t, &c), Groups: c.ConsumerLag.Groups, Interval: time.Second, Timeout: 5 * time.Second, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gl.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	testenv.WaitFor(t, 30*time.Second, "canary ready", func() bool { return svc.Ready() == nil })
	m := burst.NewMetrics(reg, nil)
	o := burst.Options{Service: svc, GroupLag: gl, Metrics: m,
		StepDone: func(s burst.SearchStep) {
			t.Logf("step %.0f/s: achieved %.0f/s, passed %v %s, lag p95 %.2fs, lag growth %+.3f, backlog %+.0f/s, sink %.0f/s, group lag %v..%v, %.1fs",
				s.TargetRate, s.AchievedRate, s.Passed, s.FailedCheck, s.LagP95, ptr(s.LagGrowth), ptr(s.BacklogGrowth), ptr(s.SinkRate), ptrI(s.GroupLagStart), ptrI(s.GroupLagEnd), s.Seconds)
		}}
	for _, f := range opts {
		f(&o)
	}
	r, err := burst.NewRunner(o)
	if err != nil {
		t.Fatal(err)
	}
	return &capacityBed{p: p, cfg: &c, svc: svc, r: r, reg: reg, m: m}
}

func ptr(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

func ptrI(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}

func searchSpec(start, maxRate float64) config.Search {
	return config.Search{Start: start, Max: maxRate, StepDuration: 2 * time.Second, Precision: 0.1,
		Timeout: 3 * time.Minute, BacklogTolerance: 0.05, LagGrowth: 0.02}
}

// TestSearchFindsCapacity: against a pipeline that processes testCapacity
// events/s, the search reports a sustainable rate within 10% below it and a
// first failing rate above it, failed on backlog or lag, and no step above
// max.
func TestSearchFindsCapacity(t *testing.T) {
	c := testCapacity()
	b := newCapacityBed(t, testbed.Faults{Capacity: c}, nil)
	maxRate := 2 * c
	// A start that does not double into the capacity: no step lands on it
	// exactly, so the bisection has to close in on it from both sides.
	rep, err := b.r.Search(context.Background(), "cap", searchSpec(0.3*c, maxRate))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Summary())
	if rep.Aborted || rep.Sustainable == nil || rep.FirstFailing == nil {
		t.Fatalf("report %+v", rep)
	}
	if s := *rep.Sustainable; s > c || s < 0.9*c {
		t.Errorf("sustainable %.0f/s, want within 10%% below %.0f/s", s, c)
	}
	if f := *rep.FirstFailing; f <= c {
		t.Errorf("first failing %.0f/s, want above the capacity %.0f/s", f, c)
	}
	if rep.FailedCheck != burst.CheckBacklog && rep.FailedCheck != burst.CheckLag {
		t.Errorf("failed_check %q, want backlog or lag", rep.FailedCheck)
	}
	for _, s := range rep.Steps {
		if s.TargetRate > maxRate || s.AchievedRate > maxRate*1.1 {
			t.Errorf("step at %.0f/s (achieved %.0f/s) above max %.0f/s", s.TargetRate, s.AchievedRate, maxRate)
		}
	}
}

// TestSearchAboveMax: a pipeline that holds more than max is reported to
// hold at least max, not as a failure.
func TestSearchAboveMax(t *testing.T) {
	c := testCapacity()
	b := newCapacityBed(t, testbed.Faults{Capacity: c}, nil)
	rep, err := b.r.Search(context.Background(), "cap", searchSpec(c/8, c/4))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Aborted || !rep.AtLeastMax || rep.Outcome != burst.OutcomeAtLeastMax || rep.Sustainable == nil || *rep.Sustainable != c/4 ||
		rep.FirstFailing != nil || rep.FailedCheck != "" {
		t.Fatalf("report %+v, want at least max %.0f/s", rep, c/4)
	}
	if got := testenv.MetricValue(t, b.reg, "slo_canary_capacity_sustainable_events_per_second", map[string]string{"profile": "cap"}); got != c/4 {
		t.Errorf("sustainable metric %v", got)
	}
	if got := testenv.MetricValue(t, b.reg, "slo_canary_capacity_searches_total", map[string]string{"profile": "cap", "outcome": "at_least_max"}); got != 1 {
		t.Errorf("searches_total{at_least_max} = %v", got)
	}
}

// TestSearchStallAborts: the pipeline stalls during the second step; the
// marker-lag guard aborts the search with its reason and no figure, and the
// scheduler runs the next job of the group. A search on a pipeline already
// behind does not start.
func TestSearchStallAborts(t *testing.T) {
	c := testCapacity()
	var done atomic.Int32
	var b *capacityBed
	var stalled atomic.Bool
	b = newCapacityBed(t, testbed.Faults{}, func(c *config.Config) { c.Bursts.Guard.MaxMarkerLag = 2 * time.Second },
		func(o *burst.Options) {
			log := o.StepDone
			o.StepDone = func(s burst.SearchStep) { log(s); done.Add(1) }
			o.Progress = func(p burst.Progress) {
				if done.Load() == 1 && p.Phase == "load" && stalled.CompareAndSwap(false, true) {
					b.p.Stall()
				}
			}
		})
	defer b.p.Resume()
	reg := prometheus.NewRegistry()
	sc := sched.New(reg, slog.New(slog.DiscardHandler))
	spec := searchSpec(c/8, c)
	spec.StepDuration = 4 * time.Second
	job := b.r.SearchJob("cap", spec, "")
	if job.Group != burst.Group {
		t.Errorf("search job in group %q, want the bursts' %q", job.Group, burst.Group)
	}
	// The job as SearchJob builds it, keeping the report.
	var rep *burst.SearchReport
	job.Run = func(ctx context.Context) error {
		var err error
		rep, err = b.r.Search(ctx, "cap", spec)
		if err == nil && rep.Aborted {
			err = errors.New(rep.AbortReason)
		}
		return err
	}
	ran, err := sc.TryRun(context.Background(), job)
	if !ran || err == nil || rep == nil {
		t.Fatalf("search job: ran %v, err %v", ran, err)
	}
	if !rep.Aborted || !strings.HasPrefix(rep.AbortReason, "marker_lag") || rep.Sustainable != nil || rep.Headroom != nil || rep.Outcome != burst.OutcomeAborted {
		t.Fatalf("report: aborted %v reason %q sustainable %v outcome %s; want aborted by marker_lag, no figure", rep.Aborted, rep.AbortReason, rep.Sustainable, rep.Outcome)
	}
	if len(rep.Steps) != 2 || !rep.Steps[0].Passed {
		t.Errorf("steps %+v, want the first passed and the aborted second", rep.Steps)
	}
	if got := testenv.MetricValue(t, b.reg, "slo_canary_capacity_sustainable_events_per_second", map[string]string{"profile": "cap"}); got != 0 {
		t.Errorf("an aborted search exported a sustainable rate %v", got)
	}

	// Still stalled: the next search does not start.
	rep2, err := b.r.Search(context.Background(), "cap", spec)
	if err != nil {
		t.Fatal(err)
	}
	if !rep2.Aborted || !strings.HasPrefix(rep2.AbortReason, "unhealthy_at_start") || len(rep2.Steps) != 0 || rep2.EventsSent != 0 {
		t.Errorf("search on a stalled pipeline: aborted %v %q, %d steps, %d events; want not started", rep2.Aborted, rep2.AbortReason, len(rep2.Steps), rep2.EventsSent)
	}

	// Resumed: the scheduler runs the group's next job.
	b.p.Resume()
	testenv.WaitFor(t, 30*time.Second, "no marker pending for long", func() bool {
		var buf []uuid.UUID
		_, oldest := b.svc.Tracker().Pending(0, buf, 1)
		return oldest.IsZero() || time.Since(oldest) < time.Second
	})
	ran, err = sc.TryRun(context.Background(), b.r.Job("after", steps(t, "200/s for 1s")))
	if !ran || err != nil {
		t.Errorf("burst after the aborted search: ran %v, %v", ran, err)
	}
}

// TestSearchLossFirst: with 2% of events dropped, the first step fails on
// loss, not lag.
func TestSearchLossFirst(t *testing.T) {
	c := testCapacity()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := newCapacityBed(t, testbed.Faults{DropPct: 2}, func(c *config.Config) {
		c.Bursts.MarkerShare = 0.5 // hundreds of markers a step: some are dropped
		c.Canary.Deadline = 4 * time.Second
		c.Canary.FreshnessBudget = 2 * time.Second
	}, func(o *burst.Options) {
		done := o.StepDone
		o.StepDone = func(s burst.SearchStep) { done(s); cancel() } // one step tells
	})
	rep, err := b.r.Search(ctx, "cap", searchSpec(c/4, c))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Steps) != 1 || rep.Steps[0].Passed || rep.Steps[0].FailedCheck != burst.CheckLoss {
		t.Fatalf("steps %+v, want one failed on loss", rep.Steps)
	}
	if !rep.Aborted || !strings.HasPrefix(rep.AbortReason, "cancelled") || rep.Sustainable != nil {
		t.Errorf("cancelled search: aborted %v %q sustainable %v", rep.Aborted, rep.AbortReason, rep.Sustainable)
	}
}

// TestSearchTimeCapAndOverlap: the total time cap stops a search (aborted,
// no figure) within it; a burst and a search never run at once.
func TestSearchTimeCapAndOverlap(t *testing.T) {
	c := testCapacity()
	b := newCapacityBed(t, testbed.Faults{}, nil)

	// A burst runs: a search is refused, and the other way round.
	done := make(chan error, 1)
	go func() {
		_, err := b.r.Run(context.Background(), "burst", steps(t, "200/s for 2s"))
		done <- err
	}()
	testenv.WaitFor(t, 10*time.Second, "burst running", func() bool {
		return testenv.MetricValue(t, b.reg, "slo_canary_burst_running", nil) == 1
	})
	if _, err := b.r.Search(context.Background(), "cap", searchSpec(c/4, c)); !errors.Is(err, burst.ErrRunning) {
		t.Errorf("search during a burst: %v, want ErrRunning", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	spec := searchSpec(c/16, 1000*c)
	spec.Max = b.cfg.Bursts.MaxRate
	spec.Timeout = 5 * time.Second
	var during atomic.Value
	start := time.Now()
	sdone := make(chan *burst.SearchReport, 1)
	go func() {
		rep, err := b.r.Search(context.Background(), "cap", spec)
		if err != nil {
			t.Error(err)
		}
		sdone <- rep
	}()
	testenv.WaitFor(t, 10*time.Second, "search running", func() bool {
		return testenv.MetricValue(t, b.reg, "slo_canary_burst_running", nil) == 1
	})
	_, err := b.r.Run(context.Background(), "burst", steps(t, "200/s for 1s"))
	during.Store(err)
	rep := <-sdone
	if err, _ := during.Load().(error); !errors.Is(err, burst.ErrRunning) {
		t.Errorf("burst during a search: %v, want ErrRunning", err)
	}
	if rep == nil {
		t.Fatal("no report")
	}
	el := time.Since(start)
	if !rep.Aborted || !strings.HasPrefix(rep.AbortReason, "timeout") || rep.Sustainable != nil {
		t.Errorf("report: aborted %v %q sustainable %v, want the time cap", rep.Aborted, rep.AbortReason, rep.Sustainable)
	}
	if el > spec.Timeout+3*time.Second {
		t.Errorf("search took %s, time cap %s", el, spec.Timeout)
	}
}
