// Package sched is the one place where scheduled work starts: cron jobs
// (bursts, query concurrency runs) with groups that keep them apart, panic
// recovery, and an outcome counter per job. Among replicas (package
// canary/coord) the scheduled jobs run on the leader only.
package sched

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/robfig/cron/v3"
)

// Job is work run on a cron schedule: a burst, a query concurrency run.
type Job struct {
	Name string // bounded: it becomes a label value
	// Group makes jobs mutually exclusive: a job whose group is busy when its
	// time comes is skipped and counted, never queued. Two bursts must never
	// run at once, whichever schedules they come from.
	Group string
	Spec  string // cron expression, 5 fields, or a descriptor such as @hourly
	Run   func(ctx context.Context) error
}

// Scheduler is the one place where scheduled work starts. It wraps
// robfig/cron: a panic in a job is recovered and counted, and a job still
// running when its next time comes is skipped.
type Scheduler struct {
	log   *slog.Logger
	cron  *cron.Cron
	runs  *prometheus.CounterVec
	last  *prometheus.GaugeVec
	busy  *prometheus.GaugeVec
	skip  *prometheus.CounterVec
	lead  Leadership // nil: this process runs every job
	ticks TickLog    // lead's, if it keeps one: nil without
	now   func() time.Time
	mu    sync.Mutex
	held  map[string]string // group -> job holding it
	ctx   context.Context
	ready chan struct{}

	// pending: per job, the ticks left to another leader lately (not_leader)
	pending map[string][]pending
}

// Scheduled job outcomes, initialised at zero for every job. The job's name
// is the "task" label: "job" is Prometheus's own target label.
var jobResults = []string{"success", "failure", "skipped", "panic"}

// New builds a scheduler; jobs are added with Add, and nothing runs
// until Run.
func New(reg prometheus.Registerer, logger *slog.Logger) *Scheduler {
	f := promauto.With(reg)
	return &Scheduler{
		log:  logger,
		cron: cron.New(cron.WithLocation(time.UTC)),
		runs: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "scheduled_runs_total",
			Help: "Scheduled jobs by outcome: success, failure, skipped (its group was busy), panic."}, []string{"task", "result"}),
		last: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "scheduled_run_last_timestamp_seconds",
			Help: "Unix time the job last started."}, []string{"task"}),
		busy: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "scheduled_job_running",
			Help: "1 while the job runs."}, []string{"task"}),
		skip: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "scheduled_skipped_total",
			Help: "Scheduled jobs not run here, by reason: group_busy, not_leader (another replica leads and runs it), no_leader (a rebalance: it ran nowhere), leader_lost (counted by a new leader: its dead predecessor was still believed to lead, it ran nowhere)."},
			[]string{"task", "reason"}),
		now:     time.Now,
		held:    map[string]string{},
		pending: map[string][]pending{},
		ready:   make(chan struct{}),
	}
}

// Add registers a job. It fails on a bad cron expression, naming the job.
func (s *Scheduler) Add(j Job) error {
	if j.Name == "" || j.Run == nil {
		return errors.New("scheduler: a job needs a name and a function")
	}
	if j.Group == "" {
		j.Group = j.Name
	}
	spec, err := cron.ParseStandard(j.Spec)
	if err != nil {
		return fmt.Errorf("job %s: schedule %q: %w", j.Name, j.Spec, err)
	}
	if every, ok := spec.(cron.ConstantDelaySchedule); ok && s.lead != nil {
		spec = aligned{every: every.Delay}
	}
	if s.ticks == nil {
		s.cron.Schedule(spec, cron.FuncJob(func() { s.fire(j, time.Time{}) }))
	} else {
		// The tick a job fires for is announced to the group.
		tk := &ticked{Schedule: spec}
		s.cron.Schedule(tk, cron.FuncJob(func() { s.fire(j, tk.due(s.now())) }))
	}
	for _, r := range jobResults {
		s.runs.WithLabelValues(j.Name, r)
	}
	s.busy.WithLabelValues(j.Name)
	s.skip.WithLabelValues(j.Name, skipBusy)
	if s.lead != nil {
		s.skip.WithLabelValues(j.Name, skipNotLeader)
		s.skip.WithLabelValues(j.Name, skipNoLeader)
	}
	if s.ticks != nil {
		s.skip.WithLabelValues(j.Name, skipLeaderLost)
	}
	return nil
}

// aligned is an "@every D" schedule among replicas: it fires at the
// multiples of D since the Unix epoch, so that every replica's scheduler
// fires at the same times, whenever each started, and a tick is one time
// for the whole group. (robfig's own fires D after the process started and
// every D since: a leadership move between replicas started at different
// times would run a tick twice or not at all.)
type aligned struct {
	every time.Duration // whole seconds, at least one, as robfig's Every
}

func (a aligned) Next(t time.Time) time.Time {
	d := a.every.Nanoseconds()
	n := t.UnixNano()
	return time.Unix(0, n-n%d+d).In(t.Location())
}

// TryRun runs a job now, outside its schedule (a run on demand), with the
// same exclusion, panic recovery and accounting. It reports whether it ran.
func (s *Scheduler) TryRun(ctx context.Context, j Job) (bool, error) {
	if j.Group == "" {
		j.Group = j.Name
	}
	if !s.acquire(j) {
		return false, nil
	}
	defer s.release(j)
	return true, s.run(ctx, j)
}

// Run starts the schedule and blocks until ctx is cancelled; then it stops
// starting jobs, cancels the running ones and waits for them to return.
func (s *Scheduler) Run(ctx context.Context) error {
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.ctx = jctx
	s.mu.Unlock()
	close(s.ready)
	var wg sync.WaitGroup
	if s.ticks != nil {
		wg.Go(func() { s.watchTakeover(jctx) })
	}
	s.cron.Start()
	<-ctx.Done()
	cancel()
	<-s.cron.Stop().Done()
	wg.Wait()
	return nil
}

// fire starts j for its scheduled time tick, if this replica leads.
func (s *Scheduler) fire(j Job, tick time.Time) {
	<-s.ready
	s.mu.Lock()
	ctx := s.ctx
	s.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if !s.leading(ctx, j, tick) {
		return
	}
	if !s.acquire(j) {
		s.announce(ctx, j, tick, skipBusy)
		return
	}
	defer s.release(j)
	// Announced before it starts: a leader killed during the run has run it.
	s.announce(ctx, j, tick, tickRan)
	if s.lead != nil {
		var stop func()
		ctx, stop = s.whileLeading(ctx)
		defer stop()
	}
	s.run(ctx, j)
}

func (s *Scheduler) acquire(j Job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if holder, busy := s.held[j.Group]; busy {
		s.runs.WithLabelValues(j.Name, "skipped").Inc()
		s.skip.WithLabelValues(j.Name, skipBusy).Inc()
		s.log.Warn("scheduled job skipped: another job of its group is running", "job", j.Name, "group", j.Group, "running", holder)
		return false
	}
	s.held[j.Group] = j.Name
	return true
}

func (s *Scheduler) release(j Job) {
	s.mu.Lock()
	delete(s.held, j.Group)
	s.mu.Unlock()
}

// run runs j once, turning a panic into a counted failure: a bug in one
// burst must not take the daemon down.
func (s *Scheduler) run(ctx context.Context, j Job) (err error) {
	s.last.WithLabelValues(j.Name).SetToCurrentTime()
	s.busy.WithLabelValues(j.Name).Set(1)
	defer s.busy.WithLabelValues(j.Name).Set(0)
	s.log.Info("scheduled job started", "job", j.Name)
	defer func() {
		if p := recover(); p != nil {
			s.runs.WithLabelValues(j.Name, "panic").Inc()
			s.log.Error("scheduled job panicked", "job", j.Name, "panic", p)
			err = fmt.Errorf("job %s panicked: %v", j.Name, p)
			return
		}
		if err != nil {
			s.runs.WithLabelValues(j.Name, "failure").Inc()
			s.log.Warn("scheduled job failed", "job", j.Name, "err", err)
			return
		}
		s.runs.WithLabelValues(j.Name, "success").Inc()
		s.log.Info("scheduled job done", "job", j.Name)
	}()
	return j.Run(ctx)
}
