package canary

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

	"github.com/slo-scout/slo-canary/config"
)

// BurstOptions are a BurstRunner's collaborators.
type BurstOptions struct {
	// Service tracks and observes the burst's markers exactly as it does the
	// steady ones, through the same tracker and stages. Required; it must be
	// running while a burst runs.
	Service *Service
	// Config, if set, replaces the service's configuration for the burst
	// (its bursts and canary sections); the stage must be one of the
	// service's.
	Config *config.Config
	// GroupLag, if set, feeds the group-lag guards and the processing rate.
	GroupLag *GroupLag
	Metrics  *BurstMetrics // required
	Logger   *slog.Logger
	// Progress, if set, is called about once a second while a burst runs.
	Progress func(BurstProgress)
	// ProducerOpts are added to the producer's options (tests, benchmarks).
	ProducerOpts []kgo.Opt
}

// BurstProgress is a running burst's state, for a terminal or a log line.
type BurstProgress struct {
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

// ErrBurstRunning is returned by Run while another burst runs.
var ErrBurstRunning = errors.New("a burst is already running")

// BurstRunner runs bursts: load at an exact rate on every partition of the
// ingest topic, markers spread evenly through it, guards that abort when the
// pipeline is in trouble, and a verdict against the budgets. One burst at a
// time; Scheduler group "burst" keeps scheduled ones apart, and Run refuses
// to overlap whatever its caller.
type BurstRunner struct {
	o       BurstOptions
	svc     *Service
	cfg     *config.Config
	log     *slog.Logger
	running atomic.Bool
	seq     atomic.Int64
}

// NewBurstRunner checks its options; it does not touch the network.
func NewBurstRunner(o BurstOptions) (*BurstRunner, error) {
	if o.Service == nil || o.Metrics == nil {
		return nil, errors.New("burst: service and metrics are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := o.Service.cfg
	if o.Config != nil {
		cfg = o.Config
	}
	if _, ok := o.Service.tracker.StageIndex(cfg.Bursts.Stage); !ok {
		return nil, fmt.Errorf("bursts.stage: %q is not a stage of this canary (%v)", cfg.Bursts.Stage, cfg.EnabledObservers())
	}
	return &BurstRunner{o: o, svc: o.Service, cfg: cfg, log: o.Logger}, nil
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
	r       *BurstRunner
	id      string
	profile string
	stage   string
	stageIx int
	pacer   *Pacer

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
	abort   *BurstAbort
	seqs    map[int32]uint64
}

// Run runs one burst of profile's steps and returns its report. The error is
// for a burst that could not be attempted (another one runs, the caps are
// exceeded, Kafka cannot be reached); a burst that ran and failed, or was
// aborted by a guard, returns its report and no error.
func (r *BurstRunner) Run(ctx context.Context, profile string, steps []config.Step) (*BurstReport, error) {
	bc := r.cfg.Bursts
	if err := bc.CheckSteps("burst "+profile, steps); err != nil {
		return nil, err
	}
	if !r.running.CompareAndSwap(false, true) {
		return nil, ErrBurstRunning
	}
	defer r.running.Store(false)
	r.o.Metrics.Running.Set(1)
	defer r.o.Metrics.Running.Set(0)

	stageIx, _ := r.svc.tracker.StageIndex(bc.Stage)
	b := &burst{
		r: r, profile: profile, stage: bc.Stage, stageIx: stageIx,
		id:      r.svc.run + ".b" + strconv.FormatInt(r.seq.Add(1), 10),
		markers: map[uuid.UUID]*burstMarker{}, reasons: map[string]int64{}, seqs: map[int32]uint64{},
	}
	rep := &BurstReport{Profile: profile, ID: b.id, Stage: bc.Stage, Budgets: bc.Budgets, Started: time.Now()}
	for _, st := range steps {
		rep.Events.Planned += st.Events()
	}

	cl, parts, err := r.producer(ctx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()

	// Before any load: the pipeline must be healthy.
	if a := b.check(ctx, nil); a != nil {
		a.Reason, a.Detail = "unhealthy_at_start", "pipeline unhealthy before the burst: "+a.Detail
		b.setAbort(a)
		r.log.Warn("burst not started: the pipeline is already unhealthy", "profile", profile, "reason", a.Detail)
		rep.Finished, rep.LoadEnd = time.Now(), rep.Started
		return b.finish(rep, nil, nil), nil
	}

	gen, err := NewLoadGen(LoadOptions{
		Instance: r.cfg.Canary.Instance, Run: b.id, Encoding: Encoding(r.cfg.Canary.Encoding),
		Environment: r.cfg.Canary.Environment, EventType: r.cfg.Canary.EventType,
		ServiceNames: bc.Load.ServiceNames, Templates: bc.Load.Templates, Severities: mustSeverities(bc.Load.Severities),
		TraceShare: bc.Load.TraceShare, Seed: uint64(time.Now().UnixNano()),
	})
	if err != nil {
		return nil, fmt.Errorf("burst %s: %w", profile, err)
	}
	b.pacer = &Pacer{
		Client: cl, Topic: r.cfg.Canary.Topic, Partitions: parts, Gen: gen,
		MarkerShare: bc.MarkerShare, Marker: b.marker, MaxEvents: int64(bc.MaxEvents),
		Failed: func(err error) { b.failure(err) },
	}
	stop := r.svc.Watch(Hooks{Result: b.result, Lost: b.lostHook})
	defer stop()

	var samples []commitSample
	if s, ok := b.commitSample(r.o.GroupLag, time.Now()); ok {
		samples = append(samples, s)
	}
	loadCtx, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	start := time.Now()
	rep.Started = start
	loadDone := make(chan struct{})
	var guardWG sync.WaitGroup
	guardWG.Add(1)
	var sampleMu sync.Mutex
	go func() {
		defer guardWG.Done()
		defer b.recoverInto(cancelLoad)
		b.guard(loadCtx, loadDone, cancelLoad, func(s commitSample) {
			sampleMu.Lock()
			samples = append(samples, s)
			sampleMu.Unlock()
		})
	}()
	waited, progressDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(progressDone)
		defer b.recoverInto(cancelLoad)
		// loadCtx ends with Run (or a guard's abort), even if Run panics.
		b.progress(loadCtx, loadDone, waited, steps, start)
	}()

	results := b.pacer.Run(loadCtx, start, steps)
	close(loadDone)
	rep.LoadEnd = time.Now()
	if len(results) > 0 {
		rep.LoadEnd = results[len(results)-1].End
	}
	if ctx.Err() != nil && b.getAbort() == nil {
		b.setAbort(&BurstAbort{Reason: "cancelled", Detail: "the burst was cancelled (shutdown)", At: time.Now()})
	}
	if b.pacer.MaxEvents > 0 && b.pacer.Handed() >= b.pacer.MaxEvents && b.pacer.Handed() < rep.Events.Planned && b.getAbort() == nil {
		b.setAbort(&BurstAbort{Reason: "cap", Detail: fmt.Sprintf("bursts.max_events %d reached", b.pacer.MaxEvents), At: time.Now()})
	}
	guardWG.Wait()

	// Every produce completes (acknowledged or failed) before judging.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Canary.ProduceTimeout+5*time.Second)
	if err := cl.Flush(fctx); err != nil {
		r.log.Warn("burst: in-flight events not flushed", "err", err)
	}
	cancel()

	// Then wait for every marker to be resolved at the judged stage: seen,
	// or declared lost at its deadline. An aborted burst does not wait: the
	// pipeline is in trouble, and the steady markers go on telling how much.
	if b.getAbort() == nil {
		b.wait(ctx, rep.LoadEnd)
	}
	end := time.Now()
	if s, ok := b.commitSample(r.o.GroupLag, end); ok {
		samples = append(samples, s)
	}
	rep.Finished = end
	close(waited)
	<-progressDone
	if p := b.panicked.Load(); p != nil {
		// A panic in a helper goroutine surfaces here, in the caller's, where
		// the scheduler recovers and counts it, after the cleanup above.
		panic(fmt.Sprintf("burst %s: %v", b.id, *p))
	}
	return b.finish(rep, results, samples), nil
}

// producer builds the burst's client: the collectors' settings from the
// contract (acks=all, idempotence, the configured compression, linger 10ms),
// a manual partitioner, and a buffer deep enough for the highest rate but
// bounded in bytes too, so that large configured events cannot make it a
// memory problem (the pacer's slabs hold what the client buffers).
func (r *BurstRunner) producer(ctx context.Context) (*kgo.Client, []int32, error) {
	c := r.cfg.Canary
	opts := append(slices.Clone(r.svc.kopts),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(c.ProduceTimeout),
		kgo.ProducerLinger(10*time.Millisecond),
		kgo.MaxBufferedRecords(1<<17),
		kgo.MaxBufferedBytes(128<<20),
		kgo.ProducerBatchCompression(compression(c.Compression)),
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

func mustSeverities(list []string) []config.Severity {
	s, err := config.ParseSeverities(list)
	if err != nil {
		return nil // validated with the config
	}
	return s
}

// wait blocks until every acknowledged marker is resolved at the judged
// stage, or the longest it can take has passed (the stage's deadline after
// the last marker, plus polls), or ctx ends.
func (b *burst) wait(ctx context.Context, loadEnd time.Time) {
	oc := b.r.cfg.Observers[b.stage]
	limit := loadEnd.Add(oc.EffectiveDeadline(b.r.cfg.Canary.Deadline) + 3*oc.PollInterval + 5*time.Second)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		b.mu.Lock()
		done := b.seen+b.lost >= b.acked
		b.mu.Unlock()
		if done || time.Now().After(limit) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
