package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// InjectorConfig configures the marker injector.
type InjectorConfig struct {
	Client   *kgo.Client // produces with acks=all and idempotence (kgo's defaults); a manual partitioner
	Topic    string
	Instance string
	Run      string
	Encoding Encoding
	Event    EventOptions
	// Rate is markers per second per partition; MaxRate caps the total.
	Rate, MaxRate   float64
	MetadataRefresh time.Duration
	Tracker         *Tracker
	Metrics         *Metrics
	Logger          *slog.Logger
	Now             func() time.Time
	// Sent, if set, is called when a marker's produce completes.
	Sent func(m Marker, err error)
	// Round, if set, is called after each round of markers was handed to the
	// producer, with the time the round began.
	Round func(at time.Time)
	// MaxMarkers stops injection after this many attempts (0: no limit).
	MaxMarkers int
	// AckTimeout is how long a marker may wait for its acknowledgement
	// before the ingest SLI counts it failed (0: until its produce fails).
	AckTimeout time.Duration
	// IngestChanged, if set, is called when injection starts or stops
	// working (slo_canary_ingest_up changes); see Injector.Healthy.
	IngestChanged func(up bool)
}

// Injector produces, every 1/Rate seconds, one marker to every partition of the
// ingest topic, which it discovers from metadata and re-discovers as it
// changes. A round goes out together, so the cluster sees one produce request
// per broker per round rather than one per marker: the canary's own cost stays
// a fraction of a percent of a core.
type Injector struct {
	cfg  InjectorConfig
	adm  *kadm.Client
	seqs map[int32]uint64

	mu         sync.Mutex
	partitions []int32
	ready      bool

	health *ingestHealth // slo_canary_ingest_up and the ingest SLI

	sent     atomic.Uint64 // acknowledged markers, for the summary line
	attempts int           // markers attempted, owned by Run
	// forced is when Run last asked the producing client to refresh its
	// metadata for a partition it does not know yet.
	forced time.Time
}

// NewInjector checks the configuration; it does not touch the network.
func NewInjector(cfg InjectorConfig) (*Injector, error) {
	if cfg.Client == nil || cfg.Tracker == nil || cfg.Metrics == nil {
		return nil, errors.New("injector: client, tracker and metrics are required")
	}
	if !cfg.Encoding.Valid() {
		return nil, fmt.Errorf("injector: unknown encoding %q", cfg.Encoding)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Injector{cfg: cfg, adm: kadm.NewClient(cfg.Client), seqs: map[int32]uint64{},
		health: newIngestHealth(cfg.Metrics, cfg.Logger, cfg.IngestChanged, cfg.AckTimeout)}, nil
}

// Healthy is nil while markers are produced and acknowledged on every known
// partition of the ingest topic (slo_canary_ingest_up is 1), else why not.
func (in *Injector) Healthy() error { return in.health.Err() }

// Ready reports whether partitions have been discovered at least once.
func (in *Injector) Ready() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.ready
}

// Partitions returns the partitions markers go to.
func (in *Injector) Partitions() []int32 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.partitions)
}

// interval between two rounds over n partitions: 1/Rate, stretched so that
// all partitions together never get more than MaxRate markers a second.
func (in *Injector) interval(n int) time.Duration {
	perPartition := in.cfg.Rate
	if in.cfg.MaxRate > 0 && n > 0 && perPartition*float64(n) > in.cfg.MaxRate {
		perPartition = in.cfg.MaxRate / float64(n)
	}
	if perPartition <= 0 || n == 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / perPartition)
}

// Run injects until ctx is cancelled. It returns nil on cancellation; Kafka
// being unavailable is not an error: it is counted and retried.
func (in *Injector) Run(ctx context.Context) error {
	if in.cfg.Rate <= 0 {
		in.cfg.Logger.Info("marker injection disabled (canary.rate is 0)")
		<-ctx.Done()
		return nil
	}
	// The metadata is refreshed beside the rounds, not between them: a
	// cluster that does not answer must not hold the rounds up, for every
	// round the canary meant to send counts in the ingest SLI.
	changed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); in.discoverEvery(ctx, changed) }()
	defer wg.Wait()

	var (
		tick  *time.Ticker
		every time.Duration
		told  int // partitions in the latest "injecting markers" line
	)
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		parts := in.Partitions()
		// Without partitions the rounds keep their pace (as for the last
		// known count, at least one marker a round), each a failed attempt.
		if iv := in.interval(max(len(parts), in.health.roundSize())); iv != every {
			every = iv
			if tick != nil {
				tick.Stop()
				tick = nil
			}
			if every > 0 {
				tick = time.NewTicker(every)
			}
		}
		if len(parts) > 0 && len(parts) != told {
			told = len(parts)
			in.cfg.Logger.Info("injecting markers", "partitions", len(parts), "every", every)
		}
		var tc <-chan time.Time
		if tick != nil {
			tc = tick.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tc:
			at := in.cfg.Now()
			in.health.sweep(at)
			if len(parts) == 0 {
				in.health.missed()
				continue
			}
			for _, p := range parts {
				if in.cfg.MaxMarkers > 0 && in.attempts >= in.cfg.MaxMarkers {
					break
				}
				if !in.producerKnows(p) {
					in.awaitProducer(p)
					continue
				}
				in.attempts++
				in.send(ctx, p)
			}
			if in.cfg.Round != nil {
				in.cfg.Round(at)
			}
			if in.cfg.MaxMarkers > 0 && in.attempts >= in.cfg.MaxMarkers {
				in.cfg.Logger.Info("marker limit reached; injection stopped", "markers", in.attempts)
				<-ctx.Done()
				return nil
			}
		}
	}
}

// discoverEvery refreshes the partitions now and every MetadataRefresh until
// ctx is cancelled, and tells changed after each refresh.
func (in *Injector) discoverEvery(ctx context.Context, changed chan<- struct{}) {
	refresh := time.NewTicker(in.cfg.MetadataRefresh)
	defer refresh.Stop()
	for {
		in.discover(ctx)
		select {
		case changed <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
		}
	}
}

// discover refreshes the ingest topic's partitions. On failure it keeps the
// last known list: a metadata hiccup must not stop the markers.
func (in *Injector) discover(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	td, err := in.adm.ListTopics(ctx, in.cfg.Topic)
	if err == nil {
		err = td.Error()
	}
	if err != nil {
		if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
			in.cfg.Logger.Warn("ingest topic metadata failed; keeping the last known partitions", "topic", in.cfg.Topic, "err", err)
			in.health.metadataFailed(err)
		}
		return
	}
	t, ok := td[in.cfg.Topic]
	if !ok {
		in.cfg.Logger.Warn("ingest topic not found", "topic", in.cfg.Topic)
		in.health.metadataFailed(fmt.Errorf("%w: %s", errTopicNotFound, in.cfg.Topic))
		return
	}
	parts := t.Partitions.Numbers()
	slices.Sort(parts)
	in.health.partitions(parts)
	in.mu.Lock()
	changed := !slices.Equal(parts, in.partitions)
	in.partitions = parts
	in.ready = true
	in.mu.Unlock()
	if changed {
		// The producer keeps its own view of the topic; without a refresh it
		// would fail records for partitions it does not know yet.
		in.cfg.Client.ForceMetadataRefresh()
		in.cfg.Logger.Info("ingest partitions", "topic", in.cfg.Topic, "count", len(parts))
	}
	in.cfg.Metrics.Partitions.Set(float64(len(parts)))
}

// producerKnows reports whether the producing client can take a record for
// partition p: its own view of the topic has p, or it has no view yet (its
// first load then comes after the metadata the injector read, and finds
// every partition the injector knows). After the topic grows, the injector
// can learn of the new partitions before the client does, and a record for a
// partition beyond the client's view fails at once ("invalid record
// partitioning choice"). PartitionLeader reads that view: (-1, _, nil) for a
// partition it does not have, an error for one it has and cannot use yet.
func (in *Injector) producerKnows(p int32) bool {
	known := func(p int32) bool {
		leader, _, err := in.cfg.Client.PartitionLeader(in.cfg.Topic, p)
		return leader >= 0 || err != nil
	}
	return known(p) || !known(0)
}

// awaitProducer leaves partition p out of this round, and asks the
// producing client, at most once a second, to refresh its metadata.
func (in *Injector) awaitProducer(p int32) {
	if now := in.cfg.Now(); now.Sub(in.forced) >= time.Second {
		in.forced = now
		in.cfg.Client.ForceMetadataRefresh()
		in.cfg.Logger.Info("producer does not know the partition yet; refreshing its metadata", "partition", p)
	}
}

func (in *Injector) send(ctx context.Context, partition int32) {
	in.seqs[partition]++
	m := Marker{
		ID:        uuid.New(),
		Run:       in.cfg.Run,
		Partition: partition,
		Seq:       in.seqs[partition],
		SentAt:    in.cfg.Now(),
	}
	rec, promise, err := in.Record(m, in.produced)
	if errors.Is(err, ErrTrackerFull) {
		return
	}
	if err != nil {
		in.cfg.Logger.Error("encode marker", "marker_id", m.ID, "err", err)
		return
	}
	in.health.sent(m.ID, partition, m.SentAt)
	// TryProduce never blocks: a full buffer means Kafka is not keeping up, and
	// the canary must not pile up behind it.
	in.cfg.Client.TryProduce(ctx, rec, promise)
}

// produced accounts for a steady marker's completed produce.
func (in *Injector) produced(m Marker, err error) {
	if in.cfg.Sent != nil {
		in.cfg.Sent(m, err)
	}
	in.health.produced(m.ID, m.Partition, err)
	if err != nil {
		reason := ProduceFailureReason(err)
		in.cfg.Metrics.ProduceFailures.WithLabelValues(reason).Inc()
		// One line per marker would flood the log while Kafka is away: the
		// ingest health logs the failure once, and again when it changes.
		in.cfg.Logger.Debug("marker produce failed", "marker_id", m.ID, "partition", m.Partition, "reason", reason, "err", err)
		return
	}
	in.sent.Add(1)
	in.cfg.Metrics.Sent.Inc()
	in.cfg.Metrics.LastMarkerSentTS.Set(float64(in.cfg.Now().UnixNano()) / 1e9)
}

// ErrTrackerFull is Record's answer when the tracker holds canary.max_tracked
// markers: the marker is not sent.
var ErrTrackerFull = errors.New("tracker full")

// Record makes the record of marker m, which it sends as the injector's
// instance: it encodes m as an event, tracks it, and returns the record with
// the promise to produce it with. The promise abandons m if its produce
// failed, observes the produce latency if it succeeded, then calls done, if
// set. A marker that cannot be encoded (the encoder's error) or tracked
// (ErrTrackerFull) is counted in markers_not_sent_total and not tracked.
// The steady markers and a burst's are all made here.
func (in *Injector) Record(m Marker, done func(Marker, error)) (*kgo.Record, func(*kgo.Record, error), error) {
	m.Instance = in.cfg.Instance
	ev := m.Event(in.cfg.Event)
	value, err := Encode(in.cfg.Encoding, &ev)
	if err != nil {
		in.cfg.Metrics.NotSent.WithLabelValues("encode").Inc()
		return nil, nil, err
	}
	if !in.cfg.Tracker.Track(m, false) {
		in.cfg.Metrics.NotSent.WithLabelValues("tracker_full").Inc()
		return nil, nil, ErrTrackerFull
	}
	rec := &kgo.Record{
		Topic:     in.cfg.Topic,
		Partition: m.Partition,
		Key:       []byte(in.cfg.Event.ServiceName),
		Value:     value,
		Timestamp: m.SentAt,
		Headers:   []kgo.RecordHeader{{Key: HeaderInstance, Value: []byte(in.cfg.Instance)}},
	}
	return rec, func(_ *kgo.Record, err error) {
		if err != nil {
			// Not under any lock of done's: the tracker calls the Lost hooks
			// under its own lock, so theirs are taken after the tracker's.
			in.cfg.Tracker.Abandon(m.ID)
		} else {
			observeWithID(in.cfg.Metrics.ProduceLatency, in.cfg.Now().Sub(m.SentAt).Seconds(), m.ID)
		}
		if done != nil {
			done(m, err)
		}
	}, nil
}

func observeWithID(h prometheus.Observer, v float64, id uuid.UUID) {
	if eo, ok := h.(prometheus.ExemplarObserver); ok {
		eo.ObserveWithExemplar(v, prometheus.Labels{"marker_id": id.String()})
		return
	}
	h.Observe(v)
}

// ProduceFailureReason is the produce_failures_total reason of a failed
// produce: one of ProduceFailureReasons.
func ProduceFailureReason(err error) string {
	var ke *kerr.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, kgo.ErrClientClosed):
		return "shutdown"
	case errors.Is(err, kgo.ErrMaxBuffered):
		return "buffer_full"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries):
		return "timeout"
	case errors.As(err, &ke):
		if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
			return "auth"
		}
		return "broker"
	default:
		return "other"
	}
}
