package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/probes"
)

// Options are the service's collaborators.
type Options struct {
	Config     *config.Config
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Observers overrides the registry (tests); keyed by stage name.
	Observers map[string]probes.Observer
	// Hooks see every outcome; tests use them to check exact accounting.
	Hooks Hooks
	// MaxMarkers stops injection after this many markers (0: no limit), so a
	// test or a one-shot run can wait for every marker to resolve.
	MaxMarkers int
}

// Hooks are called synchronously for every outcome; they must be quick.
type Hooks struct {
	// Sent is called when a marker's produce completes (err nil: acknowledged).
	Sent func(m Marker, err error)
	// Result is called for every sighting and what the tracker made of it.
	Result func(stage string, s probes.Sighting, r Result)
	// Lost is called for every marker declared lost at a stage.
	Lost func(stage string, m Marker)
}

// Service wires the injector, the tracker and one poll loop per observer. It
// owns every goroutine it starts: Run returns only when all have stopped.
type Service struct {
	hooks    Hooks
	watch    watchers // added at run time: see Watch
	cfg      *config.Config
	log      *slog.Logger
	now      func() time.Time
	metrics  *Metrics
	tracker  *Tracker
	stages   []*stage
	kopts    []kgo.Opt
	client   *kgo.Client
	injector *Injector
	start    time.Time
	run      string
	readyMu  sync.Mutex // orders the writes of slo_canary_stage_ready
}

// stage is one observer and what the service knows of it.
type stage struct {
	idx     int
	name    string
	cfg     config.Observer
	obs     probes.Observer
	ready   atomic.Bool
	stats   StageStats
	mu      sync.Mutex
	recent  []float64 // last lags, seconds, ring for the summary line
	recentN int
	rounds  chan time.Time // send times of marker rounds, for the poll loop
}

// StageStats are running totals for the summary line (metrics carry the same).
type StageStats struct {
	Observed, Lost, Late, Duplicate, OutOfOrder, Unmeasured, Unknown atomic.Uint64
}

const recentLags = 2048

// New builds the service. Observers that cannot be built are a configuration
// error; observers whose backend is down are not (they report unready).
func New(ctx context.Context, o Options) (*Service, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: o.Config, hooks: o.Hooks, log: o.Logger, now: o.Now, start: o.Now()}
	s.run = strconv.FormatInt(s.start.UnixNano(), 36)
	kopts, err := KafkaOpts(s.cfg.Kafka, o.Logger)
	if err != nil {
		return nil, err
	}
	s.kopts = kopts
	if err := s.buildStages(ctx, o.Observers); err != nil {
		return nil, err
	}
	err = s.buildMetrics(o.Registerer)
	if err == nil {
		err = s.buildTracker(o.Registerer)
	}
	if err == nil {
		err = s.buildInjector(o.MaxMarkers)
	}
	if err != nil {
		s.closeObservers()
		return nil, err
	}
	return s, nil
}

// buildStages builds an observer for every enabled stage, or takes the given
// ones (tests). On failure it closes those it built.
func (s *Service) buildStages(ctx context.Context, given map[string]probes.Observer) error {
	cfg := s.cfg
	names := cfg.EnabledObservers()
	if len(given) > 0 {
		names = slices.Sorted(maps.Keys(given))
	}
	for i, n := range names {
		oc := cfg.Observers[n]
		st := &stage{idx: i, name: n, cfg: oc, recent: make([]float64, recentLags), rounds: make(chan time.Time, 1)}
		if obs, ok := given[n]; ok {
			st.obs = obs
		} else {
			obs, err := probes.New(ctx, n, oc, probes.Deps{
				KafkaOpts: s.kopts,
				Start:     s.start,
				Lookback:  oc.EffectiveDeadline(cfg.Canary.Deadline) + cfg.Canary.LateWindow,
				Logger:    s.log.With("stage", n),
				// Observers run after New has built the tracker and the
				// metrics (and after restore has re-tracked what a
				// restart left). An id turned away is an unknown sighting,
				// as the tracker would have called it.
				Keep: func(id uuid.UUID) bool {
					if s.tracker.Tracks(id) {
						return true
					}
					s.unknownSighting(st)
					return false
				},
			})
			if err != nil {
				s.closeObservers()
				return fmt.Errorf("observer %s: %w", n, err)
			}
			st.obs = obs
		}
		s.stages = append(s.stages, st)
	}
	return nil
}

// stageNames are the stages' names, in stage index order.
func (s *Service) stageNames() []string {
	names := make([]string, len(s.stages))
	for i, st := range s.stages {
		names[i] = st.name
	}
	return names
}

// buildMetrics registers the service's metrics and the observers' own.
func (s *Service) buildMetrics(reg prometheus.Registerer) error {
	s.metrics = NewMetrics(reg, s.stageNames())
	if err := reg.Register(newObserverStats(s.stages)); err != nil {
		return fmt.Errorf("register observer metrics: %w", err)
	}
	s.metrics.FreshnessBudget.Set(s.cfg.Canary.FreshnessBudget.Seconds())
	for _, st := range s.stages {
		s.metrics.StageDeadline.WithLabelValues(st.name).Set(st.cfg.EffectiveDeadline(s.cfg.Canary.Deadline).Seconds())
	}
	return nil
}

// buildTracker builds the tracker of the stages and registers its gauges.
func (s *Service) buildTracker(reg prometheus.Registerer) error {
	c := s.cfg.Canary
	tstages := make([]StageConfig, len(s.stages))
	for i, st := range s.stages {
		tstages[i] = StageConfig{Name: st.name, Deadline: st.cfg.EffectiveDeadline(c.Deadline)}
	}
	t, err := NewTracker(TrackerConfig{
		Stages:     tstages,
		Budget:     c.FreshnessBudget,
		LateWindow: c.LateWindow,
		MaxTracked: c.MaxTracked,
	})
	if err != nil {
		return err
	}
	s.tracker = t
	for _, col := range TrackerGauges(s.tracker, s.stageNames(), c.MaxTracked) {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("register tracker metrics: %w", err)
		}
	}
	return nil
}

// buildInjector builds the marker producer and the injector that drives it.
func (s *Service) buildInjector(maxMarkers int) error {
	c := s.cfg.Canary
	popts := append(s.ProducerOpts(),
		// A round of markers (one per partition) leaves in one request per broker.
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(10000),
	)
	client, err := kgo.NewClient(popts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	s.client = client
	s.injector, err = NewInjector(InjectorConfig{
		Client:          s.client,
		Topic:           c.Topic,
		Instance:        c.Instance,
		Run:             s.run,
		Encoding:        Encoding(c.Encoding),
		Event:           EventOptions{ServiceName: c.ServiceName, Environment: c.Environment, EventType: c.EventType, Severity: c.Severity},
		Rate:            c.Rate,
		MaxRate:         c.MaxRate,
		MetadataRefresh: c.MetadataRefresh,
		Tracker:         s.tracker,
		Metrics:         s.metrics,
		Logger:          s.log.With("component", "injector"),
		Now:             s.now,
		Sent:            s.hooks.Sent,
		Round:           s.roundSent,
		MaxMarkers:      maxMarkers,
		IngestChanged:   func(bool) { s.stageReadiness() },
		// kgo fails a marker at the produce timeout, unless it cannot tell
		// whether a lost broker wrote it; a second later it is judged.
		AckTimeout: c.ProduceTimeout + time.Second,
	})
	if err != nil {
		s.client.Close()
		return err
	}
	return nil
}

// ProducerOpts are the options of a producer to the ingest topic, as the
// collectors' contract has them: the Kafka connection, acks=all with
// idempotence (kgo's default), the configured delivery timeout and
// compression, and a manual partitioner. The marker producer and a burst's
// add their own linger and buffer sizes.
func (s *Service) ProducerOpts() []kgo.Opt {
	c := s.cfg.Canary
	return append(slices.Clone(s.kopts),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(c.ProduceTimeout),
		kgo.ProducerBatchCompression(compression(c.Compression)),
	)
}

// Config is the configuration the service runs with.
func (s *Service) Config() *config.Config { return s.cfg }

// RunID identifies this run of the service: the run of its markers, and the
// prefix of its bursts' ids.
func (s *Service) RunID() string { return s.run }

// MarkerRecord makes a marker record for another producer (a burst's), through
// the injector's Record: tracked, and then observed, as the steady markers.
func (s *Service) MarkerRecord(m Marker, done func(Marker, error)) (*kgo.Record, func(*kgo.Record, error), error) {
	return s.injector.Record(m, done)
}

// TrackerGauges export what t holds, read at scrape time: the canary's
// memory grows with it, and limit (canary.max_tracked) caps it.
func TrackerGauges(t *Tracker, stages []string, limit int) []prometheus.Collector {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "markers_tracked",
			Help: "Markers held in memory: pending at some stage, or resolved and kept for their late window."},
			func() float64 { return float64(t.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "markers_tracked_limit",
			Help: "The cap on markers held in memory (canary.max_tracked); at the cap new markers are not sent."},
			func() float64 { return float64(limit) }),
	}
	for _, name := range stages {
		idx, _ := t.StageIndex(name)
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "markers_pending",
			Help: "Markers sent and neither seen nor declared lost at the stage yet.", ConstLabels: prometheus.Labels{"stage": name}},
			func() float64 { return float64(t.PendingCount(idx)) }))
	}
	return cs
}

func compression(name string) kgo.CompressionCodec {
	switch name {
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	default:
		return kgo.NoCompression()
	}
}

func (s *Service) closeObservers() {
	for _, st := range s.stages {
		if st.obs != nil {
			st.obs.Close()
		}
	}
}

// Tracker exposes the tracker (tests, the demo's summary).
func (s *Service) Tracker() *Tracker { return s.tracker }

// Run starts everything and blocks until ctx is cancelled and all parts have
// stopped. In-flight produces get ShutdownTimeout to finish.
func (s *Service) Run(ctx context.Context) error {
	defer s.client.Close()
	defer s.closeObservers()

	s.restore(ctx)

	g, gctx := errgroup.WithContext(ctx)
	for _, st := range s.stages {
		if r, ok := st.obs.(probes.Runner); ok {
			g.Go(func() error {
				if err := r.Run(gctx); err != nil && gctx.Err() == nil {
					return fmt.Errorf("observer %s: %w", st.name, err)
				}
				return nil
			})
		}
		g.Go(func() error { s.poll(gctx, st); return nil })
	}
	g.Go(func() error { return s.injector.Run(gctx) })
	if s.cfg.Canary.StateFile != "" {
		g.Go(func() error { s.checkpoints(gctx); return nil })
	}
	err := g.Wait()

	// Let acknowledged-or-failed callbacks of in-flight markers run, boundedly.
	fctx, cancel := context.WithTimeout(context.Background(), s.cfg.Canary.ShutdownTimeout)
	defer cancel()
	if ferr := s.client.Flush(fctx); ferr != nil {
		s.log.Warn("in-flight markers not flushed before shutdown timeout", "err", ferr)
	}
	if s.cfg.Canary.StateFile != "" {
		s.checkpoint()
	}
	if s.cfg.Canary.StateFile != "" || s.cfg.Canary.Recovery.Enabled {
		s.log.Info("stopping; pending markers will be resolved after the next start", "held", s.tracker.Len())
	} else if left := s.tracker.Drain(); len(left) > 0 {
		s.metrics.Untracked.WithLabelValues("canary_stopped").Add(float64(len(left)))
		s.log.Info("stopping; pending markers cannot be resolved (recovery disabled)", "untracked", len(left))
	}
	return err
}

// unknownSighting counts a sighting of an id the tracker does not hold,
// whether the tracker said so or a Kafka observer turned the id away.
func (s *Service) unknownSighting(st *stage) {
	st.stats.Unknown.Add(1)
	s.metrics.Unknown.WithLabelValues(st.name).Inc()
}

// restore re-tracks markers this instance sent before the start: first from
// the checkpoint, which knows where each was already seen, then from the
// ingest topic for what was sent after the checkpoint (or for everything in
// the window when there is none). Markers sent before the window have had
// every deadline and late window pass: they are of no interest.
func (s *Service) restore(ctx context.Context) {
	var oldest time.Duration
	for _, st := range s.stages {
		oldest = max(oldest, st.cfg.EffectiveDeadline(s.cfg.Canary.Deadline))
	}
	since := s.start.Add(-oldest - s.cfg.Canary.LateWindow)
	if path := s.cfg.Canary.StateFile; path != "" {
		states, savedAt, err := ReadCheckpoint(path, s.cfg.Canary.Instance)
		switch {
		case errors.Is(err, ErrNoCheckpoint):
			s.log.Info("no checkpoint to resume from", "state_file", path)
		case err != nil:
			s.metrics.CheckpointErrors.Inc()
			s.log.Warn("checkpoint not usable; resolving markers from the ingest topic only", "err", err)
		default:
			n := 0
			for _, ms := range states {
				if ms.Marker.SentAt.After(since) && s.tracker.Restore(ms) {
					n++
				}
			}
			s.metrics.Recovered.WithLabelValues("checkpoint").Add(float64(n))
			s.log.Info("resumed from checkpoint", "markers", n, "saved_at", savedAt)
			// Markers sent after the checkpoint, or in flight when it was
			// taken, are still to be read back from the ingest topic.
			since = later(since, savedAt.Add(-s.cfg.Canary.ProduceTimeout-time.Second))
		}
	}
	if s.cfg.Canary.Recovery.Enabled {
		s.recover(ctx, since)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// checkpoints saves the tracker every CheckpointInterval.
func (s *Service) checkpoints(ctx context.Context) {
	t := time.NewTicker(s.cfg.Canary.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkpoint()
		}
	}
}

func (s *Service) checkpoint() {
	now := s.now()
	if err := WriteCheckpoint(s.cfg.Canary.StateFile, s.tracker.Checkpoint(s.cfg.Canary.Instance, now)); err != nil {
		s.metrics.CheckpointErrors.Inc()
		s.log.Warn("checkpoint failed", "err", err)
		return
	}
	s.metrics.CheckpointTS.Set(float64(now.UnixNano()) / 1e9)
}

// recover re-tracks markers this instance sent since the given time, read
// back from the ingest topic.
func (s *Service) recover(ctx context.Context, since time.Time) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Canary.Recovery.Timeout)
	defer cancel()
	res, err := Recover(rctx, RecoveryConfig{
		ClientOpts: s.kopts,
		Topic:      s.cfg.Canary.Topic,
		Instance:   s.cfg.Canary.Instance,
		Encoding:   Encoding(s.cfg.Canary.Encoding),
		Since:      since,
		MaxRecords: s.cfg.Canary.Recovery.MaxRecords,
		Logger:     s.log,
	})
	n := 0
	for _, m := range res.Markers {
		if s.tracker.Track(m, true) {
			n++
		}
	}
	s.metrics.Recovered.WithLabelValues("ingest_topic").Add(float64(n))
	lvl := slog.LevelInfo
	if err != nil || res.Truncate || res.Damaged > 0 {
		lvl = slog.LevelWarn
	}
	s.log.Log(ctx, lvl, "recovered markers from the ingest topic", "markers", n, "scanned", res.Scanned,
		"damaged", res.Damaged, "truncated", res.Truncate, "err", err)
}

// roundSent tells every stage's poll loop that a round of markers went out
// at at. A loop that has not taken the previous round yet keeps that one: it
// is the earlier, so its poll is due first.
func (s *Service) roundSent(at time.Time) {
	for _, st := range s.stages {
		select {
		case st.rounds <- at:
		default:
		}
	}
}

// poll runs one stage's observation loop, timed by a pollClock.
func (s *Service) poll(ctx context.Context, st *stage) {
	clock := newPollClock(st.cfg.PollInterval)
	timer := time.NewTimer(st.cfg.PollInterval) // reset after every poll
	defer timer.Stop()
	maxIDs := st.cfg.BatchSize * 8
	buf := make([]uuid.UUID, 0, maxIDs)
	var sinceOK, checked time.Time
	for {
		start := s.now()
		ids, since := s.tracker.Pending(st.idx, buf[:0], maxIDs)
		if since.IsZero() {
			since = start
		}
		pctx, cancel := context.WithTimeout(ctx, st.cfg.PollTimeout)
		sightings, err := st.obs.Observe(pctx, probes.Query{Pending: ids, Since: since.Add(-time.Minute), Checked: checked})
		cancel()
		if ctx.Err() != nil {
			return
		}
		clock.polled(start)
		if err == nil && len(ids) < maxIDs {
			checked = start // every pending marker was looked up
		}
		s.metrics.Polls.WithLabelValues(st.name).Inc()
		s.metrics.PollDuration.WithLabelValues(st.name).Observe(s.now().Sub(start).Seconds())
		for _, sg := range sightings {
			s.record(st, sg)
		}
		if err != nil {
			reason := "other"
			var pe *probes.Error
			if errors.As(err, &pe) {
				reason = pe.Reason
			}
			s.metrics.PollErrors.WithLabelValues(st.name, reason).Inc()
			s.log.Warn("observation failed", "stage", st.name, "reason", reason, "err", err)
		} else {
			sinceOK = start
			if st.ready.CompareAndSwap(false, true) {
				s.stageReadiness()
				s.log.Info("stage ready", "stage", st.name)
			}
		}
		// Only what a successful observation could have seen can be declared
		// lost: an outage of the observer is not a loss in the pipeline.
		if cu, ok := st.obs.(probes.CatchUpper); ok && cu.CatchingUp() {
			sinceOK = time.Time{} // only polls after the catch-up count
		}
		if !sinceOK.IsZero() {
			s.tracker.Expire(st.idx, sinceOK, func(m Marker) { s.lost(st, m) })
		}
		timer.Reset(clock.next.Sub(s.now()))
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
				break wait
			case at := <-st.rounds:
				if clock.sent(at) {
					timer.Reset(clock.next.Sub(s.now()))
				}
			}
		}
	}
}

func (s *Service) lost(st *stage, m Marker) {
	if s.hooks.Lost != nil {
		s.hooks.Lost(st.name, m)
	}
	s.watch.lost(st.name, m)
	st.stats.Lost.Add(1)
	s.metrics.Lost.WithLabelValues(st.name).Inc()
	s.metrics.FreshTotal.WithLabelValues(st.name).Inc()
	s.log.Warn("marker lost", "stage", st.name, "marker_id", m.ID, "partition", m.Partition, "seq", m.Seq,
		"run", m.Run, "sent_at", m.SentAt, "deadline", st.cfg.EffectiveDeadline(s.cfg.Canary.Deadline))
}

func (s *Service) record(st *stage, sg probes.Sighting) {
	if !sg.SourceTime.IsZero() {
		s.metrics.ClockSkew.WithLabelValues(st.name).Set(sg.SourceTime.Sub(sg.At).Seconds())
	}
	r := s.tracker.Seen(st.idx, sg)
	if s.hooks.Result != nil {
		s.hooks.Result(st.name, sg, r)
	}
	s.watch.result(st.name, sg, r)
	switch r.Outcome {
	case OutcomeObserved:
		st.stats.Observed.Add(1)
		s.metrics.Observed.WithLabelValues(st.name).Inc()
		s.metrics.FreshTotal.WithLabelValues(st.name).Inc()
		if r.Good {
			s.metrics.FreshGood.WithLabelValues(st.name).Inc()
		}
		s.lag(st, r)
	case OutcomeUnmeasured:
		st.stats.Observed.Add(1)
		st.stats.Unmeasured.Add(1)
		s.metrics.Observed.WithLabelValues(st.name).Inc()
		s.metrics.Unmeasured.WithLabelValues(st.name).Inc()
	case OutcomeLate:
		st.stats.Late.Add(1)
		s.metrics.Late.WithLabelValues(st.name).Inc()
		s.lag(st, r)
		s.log.Info("late marker", "stage", st.name, "marker_id", r.Marker.ID, "partition", r.Marker.Partition, "lag", r.Lag)
	case OutcomeUnknown:
		s.unknownSighting(st)
	}
	if r.Duplicates > 0 {
		st.stats.Duplicate.Add(uint64(r.Duplicates))
		s.metrics.Duplicate.WithLabelValues(st.name).Add(float64(r.Duplicates))
	}
	if r.OutOfOrder {
		st.stats.OutOfOrder.Add(1)
		s.metrics.OutOfOrder.WithLabelValues(st.name).Inc()
	}
}

func (s *Service) lag(st *stage, r Result) {
	v := r.Lag.Seconds()
	observeWithID(s.metrics.Lag.WithLabelValues(st.name), v, r.Marker.ID)
	st.mu.Lock()
	st.recent[st.recentN%recentLags] = v
	st.recentN++
	st.mu.Unlock()
}

// injecting reports whether markers reach Kafka, as far as readiness goes:
// always when injection is off (canary.rate 0), where a stage measures
// what bursts send.
func (s *Service) injecting() error {
	if s.cfg.Canary.Rate <= 0 {
		return nil
	}
	return s.injector.Healthy()
}

// stageReadiness sets slo_canary_stage_ready: a stage is measured while its
// observer has answered and markers reach Kafka. A stage that answers but
// gets no markers measures nothing, and must not read as ready.
func (s *Service) stageReadiness() {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	injecting := s.injecting() == nil
	for _, st := range s.stages {
		v := 0.0
		if injecting && st.ready.Load() {
			v = 1
		}
		s.metrics.StageReady.WithLabelValues(st.name).Set(v)
	}
}

// Ready is nil while markers are acknowledged by Kafka on every partition
// (unless injection is off) and once every observer has answered.
func (s *Service) Ready() error {
	var errs []error
	if err := s.injecting(); err != nil {
		errs = append(errs, err)
	}
	for _, st := range s.stages {
		if !st.ready.Load() {
			errs = append(errs, fmt.Errorf("stage %s: no successful observation yet", st.name))
		}
	}
	return errors.Join(errs...)
}
