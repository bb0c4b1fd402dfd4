package probes

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/config"
)

// Deps are what observers need beyond their own configuration: things the
// service builds once and shares.
type Deps struct {
	// KafkaOpts connect to the cluster (seed brokers, TLS, SASL, client id,
	// hooks). Kafka observers add their own consuming options after them.
	KafkaOpts []kgo.Opt
	// Start is when this canary process started. A Kafka observer begins
	// reading at Start-Lookback, so markers sent shortly before a restart are
	// still found.
	Start    time.Time
	Lookback time.Duration
	Logger   *slog.Logger
	// Keep, when set, tells a stream observer which ids are of interest
	// (the markers the canary tracks). Any other id is not buffered as a
	// sighting: a topic that carries every event's id, as capsules do during
	// a burst, cannot then fill the buffer and crowd out a marker. It is
	// called from the observer's goroutine, only once it runs.
	Keep func(uuid.UUID) bool
}

// Constructor builds an observer of one type. ctx bounds construction only;
// it is not kept.
type Constructor func(ctx context.Context, name string, cfg config.Observer, deps Deps) (Observer, error)

// Constructors is the registry of observer types, by the name used in
// observers.<name>.type. It is an explicit map, as blackbox_exporter's
// Probers, so that what exists is visible in one place.
var Constructors = map[string]Constructor{
	"sql": func(ctx context.Context, name string, cfg config.Observer, deps Deps) (Observer, error) {
		return observer(NewSQL(ctx, name, cfg.SQL, cfg.BatchSize, deps.Logger))
	},
	"kafka": func(_ context.Context, name string, cfg config.Observer, deps Deps) (Observer, error) {
		return observer(NewKafka(name, cfg.Kafka, deps))
	},
}

// observer returns a nil interface, not a nil pointer in one, on error.
func observer[T Observer](o T, err error) (Observer, error) {
	if err != nil {
		return nil, err
	}
	return o, nil
}

// New builds the observer named name from its configuration.
func New(ctx context.Context, name string, cfg config.Observer, deps Deps) (Observer, error) {
	c, ok := Constructors[cfg.Type]
	if !ok {
		return nil, fmt.Errorf("observer %q: unknown type %q (known: %s)", name, cfg.Type, strings.Join(Types(), ", "))
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	// Constructors name the observer in their errors.
	return c(ctx, name, cfg, deps)
}

// Types lists the registered observer types, sorted.
func Types() []string {
	ts := make([]string, 0, len(Constructors))
	for t := range Constructors {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

// ObserverStats are an observer's own counters since it was built. They are
// monotonic, so the service can export each as a _total counter; fields that
// do not apply to an observer's type stay zero.
type ObserverStats struct {
	// SQL observers.
	Queries uint64 // statements sent
	Rows    uint64 // rows returned, good or bad
	BadRows uint64 // rows skipped: id not a UUID, wrong column types, negative count
	Errors  uint64 // statements that failed

	// Kafka observers.
	Records       uint64 // records consumed from the topic
	Matched       uint64 // ids extracted (every one becomes a sighting or is dropped)
	DecodeErrors  uint64 // records that should have carried ids and could not be read
	Oversized     uint64 // records skipped for exceeding max_record_bytes
	BufferDropped uint64 // sightings dropped because the buffer was full
	FetchErrors   uint64 // fetch errors reported by the client (it retries by itself)
}

// StatsReporter is implemented by observers that keep ObserverStats. Both
// built-in observers do.
type StatsReporter interface {
	Stats() ObserverStats
}

// logLimiter lets one log line through per interval and counts the ones it
// held back, so a broken stage polled every second cannot flood the log.
type logLimiter struct {
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many lines were held back since
// the last one that was let through.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
