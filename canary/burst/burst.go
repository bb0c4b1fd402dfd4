// Package burst runs load bursts through the pipeline: events at an exact
// rate on every partition of the ingest topic (Pacer, LoadGen), markers of
// the steady canary.Service spread through them, guards that abort a burst
// when the pipeline is in trouble, and a verdict against the budgets
// (Report, Metrics). Scheduled bursts are sched jobs (Runner.Jobs).
package burst

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/grouplag"
	"github.com/slo-scout/slo-canary/config"
)

// Options are a Runner's collaborators.
type Options struct {
	// Service tracks and observes the burst's markers exactly as it does the
	// steady ones, through the same tracker and stages. Required; it must be
	// running while a burst runs. The markers are the service's (its
	// instance, encoding and ingest topic), and so is the producer's
	// connection.
	Service *canary.Service
	// Config, if set, replaces the service's configuration for the burst
	// (its bursts section, and the canary settings the load events take);
	// the stage must be one of the service's.
	Config *config.Config
	// GroupLag, if set, feeds the group-lag guards and the processing rate.
	GroupLag *grouplag.Watcher
	Metrics  *Metrics // required
	Logger   *slog.Logger
	// Progress, if set, is called about once a second while a burst runs.
	Progress func(Progress)
	// StepDone, if set, is called after each step of a capacity search.
	StepDone func(SearchStep)
	// ProducerOpts are added to the producer's options (tests, benchmarks).
	ProducerOpts []kgo.Opt
	// Membership and CoordinationTopic, with bursts.scale_out, split a
	// burst across the members of the coordination group (scaleout.go):
	// Run on the leader owns it, Follow on every replica runs their shares.
	Membership        Membership
	CoordinationTopic string
}

// Progress is a running burst's state, for a terminal or a log line.
type Progress struct {
	Profile     string
	Phase       string // "load", then "catch-up" while markers are awaited
	Step, Steps int    // 1-based
	TargetRate  float64
	Rate        float64 // events handed over in the last second
	Sent        int64
	MarkersSent int64
	MarkersSeen int64
	P95         time.Duration // over the markers seen so far
	Left        time.Duration // of the load; 0 once it is done
}

// ErrRunning is returned by Run while another burst runs.
var ErrRunning = errors.New("a burst is already running")

// Runner runs bursts: load at an exact rate on every partition of the
// ingest topic, markers spread evenly through it, guards that abort when the
// pipeline is in trouble, and a verdict against the budgets. One burst at a
// time; Scheduler group "burst" keeps scheduled ones apart, and Run refuses
// to overlap whatever its caller.
type Runner struct {
	o       Options
	svc     *canary.Service
	cfg     *config.Config
	log     *slog.Logger
	running atomic.Bool
	seq     atomic.Int64
}

// NewRunner checks its options; it does not touch the network.
func NewRunner(o Options) (*Runner, error) {
	if o.Service == nil || o.Metrics == nil {
		return nil, errors.New("burst: service and metrics are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := o.Service.Config()
	if o.Config != nil {
		cfg = o.Config
	}
	if _, ok := o.Service.Tracker().StageIndex(cfg.Bursts.Stage); !ok {
		return nil, fmt.Errorf("bursts.stage: %q is not a stage of this canary (%v)", cfg.Bursts.Stage, cfg.EnabledObservers())
	}
	return &Runner{o: o, svc: o.Service, cfg: cfg, log: o.Logger}, nil
}

// burstMarker is what a burst knows of one of its markers.
type burstMarker struct {
	sentAt time.Time
	acked  bool
	seenAt time.Time // first sighting at the judged stage
	lag    time.Duration
	lost   bool
	late   bool
	dups   int
	ooo    bool
	other  map[string]time.Duration // first lag at the other stages
}

// burst is one run.
type burst struct {
	r       *Runner
	id      string
	profile string
	stage   string
	stageIx int
	pacer   *Pacer
	start   time.Time // of the load, when set by the leader; zero: now

	mu      sync.Mutex
	markers map[uuid.UUID]*burstMarker
	acked   int64 // markers acknowledged
	failed  int64 // markers whose produce failed
	seen    int64
	lost    int64
	lags    []float64 // judged stage, seconds, in arrival order
	reasons map[string]int64

	panicked atomic.Pointer[any]

	abortMu sync.Mutex
	abort   *Abort
	seqs    map[int32]uint64

	sampleMu sync.Mutex
	samples  []commitSample

	settled chan struct{} // closed once every marker is resolved, or the wait gave up
	quiet   bool          // a search step: not recorded in the burst series
}

// Run runs one burst of profile's steps and returns its report. The error is
// for a burst that could not be attempted (another one runs, the caps are
// exceeded, Kafka cannot be reached); a burst that ran and failed, or was
// aborted by a guard, returns its report and no error.
func (r *Runner) Run(ctx context.Context, profile string, steps []config.Step) (*Report, error) {
	if err := r.cfg.Bursts.CheckSteps("burst "+profile, steps); err != nil {
		return nil, err
	}
	if !r.running.CompareAndSwap(false, true) {
		return nil, ErrRunning
	}
	defer r.running.Store(false)
	r.o.Metrics.Running.Set(1)
	defer r.o.Metrics.Running.Set(0)
	ctx, unclock := withStopClock(ctx)
	defer unclock()
	return r.run(ctx, profile, steps, false)
}

// stopClockKey keys, in a burst's context, when that context ended: see
// withStopClock.
type stopClockKey struct{}

// withStopClock notes in ctx when it ends (the daemon stopping), so that
// what a burst still sends to Kafka after that (its events' flush, its stop
// or result message) shares one deadline: canary.shutdown_timeout after
// the stop (afterStop). Call the function returned once done with ctx.
func withStopClock(ctx context.Context) (context.Context, func() bool) {
	at := new(atomic.Pointer[time.Time])
	stop := context.AfterFunc(ctx, func() {
		t := time.Now()
		at.CompareAndSwap(nil, &t)
	})
	return context.WithValue(ctx, stopClockKey{}, at), stop
}

// afterStop returns a context for Kafka work that goes on after ctx ends:
// it ends after d, and once ctx has ended, canary.shutdown_timeout after
// that at the latest (from when withStopClock saw it end, if it did), so
// that a stop is not held up by a broker that does not answer, however
// many such waits follow it.
func (r *Runner) afterStop(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	tctx, cancelT := context.WithTimeout(context.WithoutCancel(ctx), d)
	actx, cancelC := context.WithCancelCause(tctx)
	cancel := func() { cancelC(errStopTimeout) }
	at, _ := ctx.Value(stopClockKey{}).(*atomic.Pointer[time.Time])
	var mu sync.Mutex
	var timer *time.Timer
	done := false
	stop := context.AfterFunc(ctx, func() {
		left := r.cfg.Canary.ShutdownTimeout
		if at != nil {
			if t := at.Load(); t != nil {
				left -= time.Since(*t)
			} else {
				now := time.Now()
				at.CompareAndSwap(nil, &now)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if !done {
			timer = time.AfterFunc(left, cancel)
		}
	})
	return actx, func() {
		stop()
		mu.Lock()
		done = true
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancelC(nil)
		cancelT()
	}
}

// errStopTimeout is why afterStop's context ends early.
var errStopTimeout = errors.New("canary.shutdown_timeout after the stop ran out")

// run runs one burst; the caller holds r.running. A quiet burst (a step of
// a capacity search) is not recorded in the burst series: the search
// records itself; it always runs on this process alone.
func (r *Runner) run(ctx context.Context, profile string, steps []config.Step, quiet bool) (*Report, error) {
	if r.scaleOut() && !quiet {
		return r.lead(ctx, profile, steps) // scaleout.go
	}
	b, rep := r.newBurst(profile, steps)
	b.quiet = quiet
	results, err := b.run(ctx, rep, steps, share{})
	if err != nil {
		return nil, err
	}
	return b.finish(rep, results), nil
}

// share is what a burst run as one member's share of a scaled-out burst
// takes from the leader; the zero share is a whole burst, run alone.
type share struct {
	parts []int32       // the partitions to produce to; nil: all of the topic's
	start time.Time     // when the load starts; zero: now
	stop  <-chan *Abort // an abort from outside the burst: the leader, the membership
}

// run runs the burst b on the partitions of sh and returns what its steps
// did; b holds the rest. The error is for a burst that could not be
// attempted; a burst not started because the pipeline is unhealthy returns
// no results and its abort.
func (b *burst) run(ctx context.Context, rep *Report, steps []config.Step, sh share) ([]StepResult, error) {
	r := b.r
	cl, parts, err := r.producer(ctx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	if sh.parts != nil {
		parts = sh.parts
	}
	b.start = sh.start
	started, err := b.prepare(ctx, rep, cl, parts)
	if err != nil || !started {
		return nil, err
	}
	stop := r.svc.Watch(canary.Hooks{Result: b.result, Lost: b.lostHook})
	defer stop()

	b.sample()
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	if sh.stop != nil {
		// An abort from outside ends the load, or the wait for the markers.
		watchDone, watched := make(chan struct{}), make(chan struct{})
		defer func() { close(watchDone); <-watched }()
		go func() {
			defer close(watched)
			select {
			case a := <-sh.stop:
				b.setAbort(a)
				stopLoad()
			case <-watchDone:
			}
		}()
	}
	results, progressDone := b.load(ctx, loadCtx, stopLoad, rep, steps)
	b.settle(ctx, cl, rep)
	b.sample()
	close(b.settled)
	<-progressDone
	if p := b.panicked.Load(); p != nil {
		// A panic in a helper goroutine surfaces here, in the caller's, where
		// the scheduler recovers and counts it, after the cleanup above.
		panic(fmt.Sprintf("burst %s: %v", b.id, *p))
	}
	return results, nil
}

// newBurst starts the account of one burst and its report.
func (r *Runner) newBurst(profile string, steps []config.Step) (*burst, *Report) {
	bc := r.cfg.Bursts
	stageIx, _ := r.svc.Tracker().StageIndex(bc.Stage)
	b := &burst{
		r: r, profile: profile, stage: bc.Stage, stageIx: stageIx,
		id:      r.svc.RunID() + ".b" + strconv.FormatInt(r.seq.Add(1), 10),
		markers: map[uuid.UUID]*burstMarker{}, reasons: map[string]int64{}, seqs: map[int32]uint64{},
		settled: make(chan struct{}),
	}
	rep := &Report{Profile: profile, ID: b.id, Stage: bc.Stage, Budgets: bc.Budgets, Started: time.Now()}
	for _, st := range steps {
		rep.Events.Planned += st.Events()
	}
	return b, rep
}

// prepare checks, before any load, that the pipeline is healthy, and builds
// the load generator and the pacer. started is false for a burst not started
// because the pipeline is unhealthy: its report says so.
func (b *burst) prepare(ctx context.Context, rep *Report, cl *kgo.Client, parts []int32) (started bool, err error) {
	r := b.r
	if a := b.check(ctx, nil); a != nil {
		a.Reason, a.Detail = "unhealthy_at_start", "pipeline unhealthy before the burst: "+a.Detail
		b.setAbort(a)
		r.log.Warn("burst not started: the pipeline is already unhealthy", "profile", b.profile, "reason", a.Detail)
		rep.Finished, rep.LoadEnd = time.Now(), rep.Started
		return false, nil
	}
	c, bc := r.cfg.Canary, r.cfg.Bursts
	gen, err := NewLoadGen(LoadOptions{
		Instance: c.Instance, Run: b.id, Encoding: canary.Encoding(c.Encoding),
		Environment: c.Environment, EventType: c.EventType,
		ServiceNames: bc.Load.ServiceNames, Templates: bc.Load.Templates, Severities: bc.Load.ParsedSeverities(),
		TraceShare: bc.Load.TraceShare, Seed: uint64(time.Now().UnixNano()),
	})
	if err != nil {
		return false, fmt.Errorf("burst %s: %w", b.profile, err)
	}
	b.pacer = &Pacer{
		Client: cl, Topic: c.Topic, Partitions: parts, Gen: gen,
		MarkerShare: bc.MarkerShare, Marker: b.marker, MaxEvents: int64(bc.MaxEvents),
		Failed: func(err error) { b.failure(err) },
	}
	return true, nil
}

// load runs the steps, with the guard and the progress reporter beside them
// on loadCtx (which stopLoad ends: a guard's abort, a helper's panic). It
// returns when the load is over and the guard has stopped; the progress
// reporter goes on until b.settled, and progressDone is closed when it has
// returned.
func (b *burst) load(ctx, loadCtx context.Context, stopLoad context.CancelFunc, rep *Report, steps []config.Step) (results []StepResult, progressDone <-chan struct{}) {
	start := b.start
	if start.IsZero() {
		start = time.Now()
	}
	rep.Started = start
	loadDone := make(chan struct{})
	var guardWG sync.WaitGroup
	guardWG.Add(1)
	go func() {
		defer guardWG.Done()
		defer b.recoverInto(stopLoad)
		b.guard(loadCtx, loadDone, stopLoad, b.addSample)
	}()
	pdone := make(chan struct{})
	go func() {
		defer close(pdone)
		defer b.recoverInto(stopLoad)
		// loadCtx ends with Run (or a guard's abort), even if Run panics.
		b.progress(loadCtx, loadDone, b.settled, steps, start)
	}()

	results = b.pacer.Run(loadCtx, start, steps)
	close(loadDone)
	rep.LoadEnd = time.Now()
	if len(results) > 0 {
		rep.LoadEnd = results[len(results)-1].End
	}
	if ctx.Err() != nil && b.getAbort() == nil {
		b.setAbort(&Abort{Reason: "cancelled", Detail: "the burst was cancelled (shutdown)", At: time.Now()})
	}
	if b.pacer.MaxEvents > 0 && b.pacer.Handed() >= b.pacer.MaxEvents && b.pacer.Handed() < rep.Events.Planned && b.getAbort() == nil {
		b.setAbort(&Abort{Reason: "cap", Detail: fmt.Sprintf("bursts.max_events %d reached", b.pacer.MaxEvents), At: time.Now()})
	}
	guardWG.Wait()
	return results, pdone
}

// settle lets every produce complete (acknowledged or failed), then waits
// for every marker to be resolved at the judged stage: seen, or declared
// lost at its deadline. An aborted burst does not wait: the pipeline is in
// trouble, and the steady markers go on telling how much.
func (b *burst) settle(ctx context.Context, cl *kgo.Client, rep *Report) {
	fctx, cancel := b.r.afterStop(ctx, b.r.cfg.Canary.ProduceTimeout+5*time.Second)
	if err := cl.Flush(fctx); err != nil {
		b.r.log.Warn("burst: in-flight events not flushed", "err", context.Cause(fctx))
	}
	cancel()
	if b.getAbort() == nil {
		b.wait(ctx, rep.LoadEnd)
	}
	rep.Finished = time.Now()
}

// producer builds the burst's client: the collectors' settings from the
// contract (acks=all, idempotence, the configured compression, linger 10ms),
// a manual partitioner, and a buffer deep enough for the highest rate but
// bounded in bytes too, so that large configured events cannot make it a
// memory problem (the pacer's slabs hold what the client buffers).
func (r *Runner) producer(ctx context.Context) (*kgo.Client, []int32, error) {
	c := r.cfg.Canary
	opts := append(r.svc.ProducerOpts(),
		kgo.ProducerLinger(10*time.Millisecond),
		kgo.MaxBufferedRecords(1<<17),
		kgo.MaxBufferedBytes(128<<20),
	)
	opts = append(opts, r.o.ProducerOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("burst: kafka client: %w", err)
	}
	parts, err := topicPartitions(ctx, cl, c.Topic)
	if err != nil {
		cl.Close()
		return nil, nil, fmt.Errorf("burst: %w", err)
	}
	return cl, parts, nil
}

// topicPartitions lists the topic's partitions from metadata.
func topicPartitions(ctx context.Context, cl *kgo.Client, topic string) ([]int32, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err == nil {
		err = td.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("topic %s metadata: %w", topic, err)
	}
	parts := td[topic].Partitions.Numbers()
	if len(parts) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions", topic)
	}
	slices.Sort(parts)
	return parts, nil
}

// wait blocks until every acknowledged marker is resolved at the judged
// stage, or the longest it can take has passed (the stage's deadline after
// the last marker, plus polls), or ctx ends, or the burst is aborted from
// outside (a scaled-out burst's leader stopped it).
func (b *burst) wait(ctx context.Context, loadEnd time.Time) {
	oc := b.r.cfg.Observers[b.stage]
	limit := loadEnd.Add(oc.EffectiveDeadline(b.r.cfg.Canary.Deadline) + 3*oc.PollInterval + 5*time.Second)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		b.mu.Lock()
		done := b.seen+b.lost >= b.acked
		b.mu.Unlock()
		if done || time.Now().After(limit) || b.getAbort() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
