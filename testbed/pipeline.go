// Package testbed is a small, faithful stand-in for SLO-Scout's ingest path, for
// tests, the demo and benchmarks: an in-process Kafka cluster (kfake), a
// throwaway PostgreSQL server, and a reference pipeline that consumes
// TelemetryEvents from raw-telemetry, writes them into telemetry_events and
// forwards a capsule per event to capsule-events.
//
// The pipeline injects faults on demand (delay, jitter, drop, duplicate,
// reorder, stall) and records the ground truth of what it did to every event,
// so a test can hold the canary's measurements against what really happened.
package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
)

// PipelineConfig configures NewPipeline. Zero values take the defaults named
// on each field.
type PipelineConfig struct {
	Partitions   int32    // partitions of both topics; default 10
	IngestTopic  string   // default "raw-telemetry"
	CapsuleTopic string   // default "capsule-events"
	Group        string   // consumer group; default "capsule-ingest-consumer"
	Encoding     Encoding // of ingest records; default avro
	// Brokers, if set, points the pipeline at an existing Kafka cluster
	// instead of starting kfake. Both topics must exist with Partitions
	// partitions: a capsule goes to its event's partition number.
	Brokers []string
	// KafkaPort is the kfake listener port on 127.0.0.1; 0 picks a free one.
	KafkaPort int
	// NumBrokers runs kfake with this many brokers (default 1), so partition
	// leaders can move between them (Cluster().MoveTopicPartition,
	// ShufflePartitionLeaders). Ignored with KafkaPort.
	NumBrokers int
	// PostgresDSN is the database sink; empty means no database sink.
	PostgresDSN string
	Logger      *slog.Logger // default: discard
	Faults      Faults       // initial fault profile
	// Seed drives every random fault decision, so a run is reproducible given
	// the same consumption order.
	Seed uint64
	// TruthCap bounds the ground truth kept, oldest evicted; default 1,000,000.
	TruthCap int
	// MaxQueued bounds events waiting for their visibility time (delay or
	// stall); past it consumption pauses. Default 1,000,000.
	MaxQueued int
	// CommitInterval is how often consumed-and-processed offsets are
	// committed; default 500ms.
	CommitInterval time.Duration
	// MaxBatchRows bounds the rows of one database write; default 5000.
	MaxBatchRows int
}

func (c *PipelineConfig) setDefaults() {
	if c.Partitions <= 0 {
		c.Partitions = 10
	}
	if c.IngestTopic == "" {
		c.IngestTopic = "raw-telemetry"
	}
	if c.CapsuleTopic == "" {
		c.CapsuleTopic = "capsule-events"
	}
	if c.Group == "" {
		c.Group = "capsule-ingest-consumer"
	}
	if c.Encoding == "" {
		c.Encoding = EncodingAvro
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TruthCap <= 0 {
		c.TruthCap = 1_000_000
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 1_000_000
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = 500 * time.Millisecond
	}
	if c.MaxBatchRows <= 0 {
		c.MaxBatchRows = 5000
	}
}

// Pipeline is the reference pipeline. Create it with NewPipeline, run it with
// Run (once), and Close it.
type Pipeline struct {
	cfg     PipelineConfig
	log     *slog.Logger
	cluster *kfake.Cluster // nil with PipelineConfig.Brokers
	brokers []string
	db      *pgxpool.Pool // nil without a database sink

	consumer *kgo.Client
	producer *kgo.Client

	faultsMu sync.Mutex
	faults   Faults

	rng   *rand.Rand // owned by the consumer goroutine
	sched *scheduler
	truth *truthStore
	offs  *offsets
	// capNext is when the stage is next free under Faults.Capacity; owned by
	// the consumer goroutine.
	capNext time.Time

	stats struct {
		consumed, decodeErrors, dropped, duplicated atomic.Int64
		dbRows, dbConflicts, dbErrors               atomic.Int64
		forwarded, forwardErrors, commits           atomic.Int64
	}

	running  atomic.Bool
	closeCtx context.Context
	closeFn  context.CancelFunc
	runDone  chan struct{}
	closed   sync.Once
}

// NewPipeline starts the Kafka cluster (unless cfg.Brokers is set), creates
// the SLO-Scout schema if a database is given, and connects the clients.
// Nothing is consumed until Run.
func NewPipeline(ctx context.Context, cfg PipelineConfig) (p *Pipeline, err error) {
	cfg.setDefaults()
	if cfg.Encoding != EncodingAvro && cfg.Encoding != EncodingJSON {
		return nil, fmt.Errorf("testbed: unknown encoding %q", cfg.Encoding)
	}
	if err := cfg.Faults.Validate(); err != nil {
		return nil, fmt.Errorf("testbed: initial %w", err)
	}
	p = &Pipeline{
		cfg:     cfg,
		log:     cfg.Logger,
		faults:  cfg.Faults,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		sched:   newScheduler(cfg.MaxQueued, cfg.Faults.Stalled),
		truth:   newTruthStore(cfg.TruthCap),
		offs:    newOffsets(),
		runDone: make(chan struct{}),
	}
	p.closeCtx, p.closeFn = context.WithCancel(context.Background())
	// A failed NewPipeline returns a nil *Pipeline: close the one built.
	built := p
	defer func() {
		if err != nil {
			built.Close()
		}
	}()

	p.brokers = cfg.Brokers
	if len(p.brokers) == 0 {
		opts := []kfake.Opt{kfake.SeedTopics(cfg.Partitions, cfg.IngestTopic, cfg.CapsuleTopic)}
		if cfg.KafkaPort != 0 {
			opts = append(opts, kfake.Ports(cfg.KafkaPort))
		} else {
			opts = append(opts, kfake.NumBrokers(max(cfg.NumBrokers, 1)))
		}
		p.cluster, err = kfake.NewCluster(opts...)
		if err != nil {
			return nil, fmt.Errorf("testbed: start kfake: %w", err)
		}
		p.brokers = p.cluster.ListenAddrs()
	}

	if cfg.PostgresDSN != "" {
		p.db, err = pgxpool.New(ctx, cfg.PostgresDSN)
		if err != nil {
			return nil, fmt.Errorf("testbed: postgres pool: %w", err)
		}
		if err := CreateSchema(ctx, p.db); err != nil {
			return nil, err
		}
	}

	kl := kgo.WithLogger(kslog.New(p.log.With("component", "kafka")))
	if err := p.commitStart(ctx, kl); err != nil {
		// Not fatal: the group shows up once the first event is through.
		p.log.Warn("testbed: group start offsets not committed", "group", cfg.Group, "err", err)
	}
	p.consumer, err = kgo.NewClient(
		kgo.SeedBrokers(p.brokers...),
		kl,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.IngestTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Offsets are committed only once an event has reached both sinks,
		// so consumer-group lag includes the pipeline's own delays and stalls.
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onLost),
	)
	if err != nil {
		return nil, fmt.Errorf("testbed: consumer client: %w", err)
	}
	p.producer, err = kgo.NewClient(
		kgo.SeedBrokers(p.brokers...),
		kl,
		kgo.DefaultProduceTopic(cfg.CapsuleTopic),
		// A capsule goes to the partition number its event came from, so
		// per-partition order survives the pipeline unless Reorder or jitter
		// is asked for: a fault-free testbed shows no out-of-order markers.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(2*time.Millisecond),
	)
	if err != nil {
		return nil, fmt.Errorf("testbed: producer client: %w", err)
	}
	return p, nil
}

// commitStart commits the ingest topic's start offsets for the pipeline's
// group if it has committed nothing yet, where it would start anyway. A real
// stream job has committed offsets long before a canary watches it; without
// this, a canary started beside a fresh testbed would find the group with no
// commits (consumer_group_up 0, SLOScoutConsumerGroupDown pending) until
// the first event had gone through.
// It runs before the pipeline's consumer exists: an admin commit is refused
// while the group has members.
func (p *Pipeline) commitStart(ctx context.Context, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(p.brokers...)}, opts...)...)
	if err != nil {
		return fmt.Errorf("testbed: admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed, err := adm.FetchOffsets(ctx, p.cfg.Group)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // a group never seen has committed nothing
	}
	if err != nil {
		return fmt.Errorf("testbed: fetch the group's offsets: %w", err)
	}
	if len(committed) > 0 {
		return nil
	}
	starts, err := adm.ListStartOffsets(ctx, p.cfg.IngestTopic)
	if err == nil {
		err = starts.Error()
	}
	if err == nil {
		err = adm.CommitAllOffsets(ctx, p.cfg.Group, starts.Offsets())
	}
	if err != nil {
		return fmt.Errorf("testbed: commit the group's start offsets: %w", err)
	}
	return nil
}

// Brokers are the Kafka bootstrap addresses.
func (p *Pipeline) Brokers() []string { return append([]string(nil), p.brokers...) }

// Cluster is the in-process Kafka cluster, for fault injection at the broker
// (ControlKey, MoveTopicPartition); nil when PipelineConfig.Brokers was set.
func (p *Pipeline) Cluster() *kfake.Cluster { return p.cluster }

// Config is the effective configuration, defaults applied.
func (p *Pipeline) Config() PipelineConfig { return p.cfg }

// Faults is the current fault profile.
func (p *Pipeline) Faults() Faults {
	p.faultsMu.Lock()
	defer p.faultsMu.Unlock()
	return p.faults
}

// SetFaults replaces the fault profile. The new delay, drop, duplicate and
// reorder settings apply to events consumed from now on; setting Stalled holds
// everything queued, clearing it releases the queue at now + each event's delay.
func (p *Pipeline) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	p.faultsMu.Lock()
	defer p.faultsMu.Unlock()
	was := p.faults.Stalled
	p.faults = f
	if f.Stalled != was {
		p.sched.setStalled(f.Stalled, time.Now())
		p.log.Info("pipeline stall changed", "stalled", f.Stalled)
	}
	return nil
}

// Stall stops events from becoming visible until Resume.
func (p *Pipeline) Stall() {
	f := p.Faults()
	f.Stalled = true
	_ = p.SetFaults(f) // f came from a valid profile
}

// Resume ends a stall.
func (p *Pipeline) Resume() {
	f := p.Faults()
	f.Stalled = false
	_ = p.SetFaults(f)
}

// Truth is the ground truth for one event id, if it was consumed and is still
// held (see PipelineConfig.TruthCap).
func (p *Pipeline) Truth(id uuid.UUID) (Truth, bool) { return p.truth.get(id) }

// DroppedIDs lists the held ids the fault profile dropped, in consumption order.
func (p *Pipeline) DroppedIDs() []uuid.UUID {
	return p.truth.ids(func(e *truthEntry) bool { return e.dropped })
}

// DuplicatedIDs lists the held ids the fault profile duplicated, in
// consumption order.
func (p *Pipeline) DuplicatedIDs() []uuid.UUID {
	return p.truth.ids(func(e *truthEntry) bool { return e.duplicated })
}

// Stats returns the pipeline's counters.
func (p *Pipeline) Stats() Stats {
	return Stats{
		Consumed:      p.stats.consumed.Load(),
		DecodeErrors:  p.stats.decodeErrors.Load(),
		Dropped:       p.stats.dropped.Load(),
		Duplicated:    p.stats.duplicated.Load(),
		Queued:        int64(p.sched.len()),
		DBRows:        p.stats.dbRows.Load(),
		DBConflicts:   p.stats.dbConflicts.Load(),
		DBErrors:      p.stats.dbErrors.Load(),
		Forwarded:     p.stats.forwarded.Load(),
		ForwardErrors: p.stats.forwardErrors.Load(),
		Commits:       p.stats.commits.Load(),
		TruthEvicted:  p.truth.evictedCount(),
		Stalled:       p.Faults().Stalled,
	}
}

// Close stops Run if it is running and waits for it, then closes the clients,
// the database pool and the Kafka cluster. It is safe to call more than once.
func (p *Pipeline) Close() {
	p.closed.Do(func() {
		p.closeFn()
		if p.running.Load() {
			<-p.runDone
		}
		if p.consumer != nil {
			p.consumer.Close()
		}
		if p.producer != nil {
			p.producer.Close()
		}
		if p.db != nil {
			p.db.Close()
		}
		if p.cluster != nil {
			p.cluster.Close()
		}
	})
}

// errAlreadyRunning is returned by a second call of Run.
var errAlreadyRunning = errors.New("testbed: pipeline Run called twice")
