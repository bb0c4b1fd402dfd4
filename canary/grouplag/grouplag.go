// Package grouplag watches consumer groups of the pipeline: their lag per
// topic and partition, in records and in seconds, exported as metrics and
// read by the burst guards.
package grouplag

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a Watcher.
type Config struct {
	// KafkaOpts connect to the cluster; Watcher builds its own client.
	KafkaOpts  []kgo.Opt
	Groups     []string
	Interval   time.Duration // between refreshes in Run
	Timeout    time.Duration // bounds one refresh
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
}

// Group statuses: why a group has no lag to show.
const (
	StatusOK        = "ok"         // exists and has committed offsets
	StatusNotFound  = "not_found"  // the coordinator does not know it
	StatusNoCommits = "no_commits" // known, but has committed nothing
	StatusError     = "error"      // could not be read this time
)

// groupStates are Kafka's consumer-group states, the bounded values of the
// state label; anything else is reported as Unknown.
var groupStates = []string{"Stable", "PreparingRebalance", "CompletingRebalance", "Empty", "Dead", "Unknown"}

// Snapshot is one refresh.
type Snapshot struct {
	At     time.Time
	Groups []Group // in configured order
}

// Group is one group's lag.
type Group struct {
	Group  string
	Status string // StatusOK, StatusNotFound, StatusNoCommits, StatusError
	State  string // Kafka's group state
	Err    error
	Topics []Topic // sorted by topic
}

// Topic is a group's lag on one topic.
type Topic struct {
	Topic   string
	Records int64 // summed over partitions
	// Seconds is the largest age over partitions of the first record not yet
	// committed; 0 where nothing is behind. SecondsKnown is false when no
	// lagging partition's record could be read.
	Seconds      float64
	SecondsKnown bool
	Committed    int64 // committed offsets summed over partitions: progress
	Partitions   []Partition
}

// Partition is a group's lag on one partition.
type Partition struct {
	Partition int32
	Committed int64 // -1: nothing committed on this partition
	End       int64
	Lag       int64 // records
	// Seconds is now minus the timestamp of the record at the committed
	// offset, when Lag > 0 and that record could be fetched.
	Seconds      float64
	SecondsKnown bool
}

// MaxRecords is the largest per-topic lag of any group that is up.
func (s Snapshot) MaxRecords() (int64, string) {
	var best int64
	var who string
	for _, g := range s.Groups {
		for _, t := range g.Topics {
			if g.Status == StatusOK && t.Records > best {
				best, who = t.Records, g.Group+"/"+t.Topic
			}
		}
	}
	return best, who
}

// MaxSeconds is the largest lag in time of any group that is up.
func (s Snapshot) MaxSeconds() (float64, string) {
	var best float64
	var who string
	for _, g := range s.Groups {
		for _, t := range g.Topics {
			if g.Status == StatusOK && t.SecondsKnown && t.Seconds > best {
				best, who = t.Seconds, g.Group+"/"+t.Topic
			}
		}
	}
	return best, who
}

// Committed sums, over the groups that are up, their committed offsets on
// topic: its difference over time is the pipeline's processing rate.
func (s Snapshot) Committed(topic string) (int64, bool) {
	var sum int64
	found := false
	for _, g := range s.Groups {
		for _, t := range g.Topics {
			if g.Status == StatusOK && t.Topic == topic {
				sum += t.Committed
				found = true
			}
		}
	}
	return sum, found
}

// Watcher watches consumer groups: lag per topic and partition in records
// (kadm's Lag: describe, offset fetch, list offsets) and in seconds, from the
// timestamp of the first record not yet committed. The seconds cost at most
// one small fetch per lagging partition per refresh: the fetch asks for one
// byte, and the broker answers with the single batch holding that offset.
type Watcher struct {
	cfg Config
	cl  *kgo.Client
	adm *kadm.Client

	mu     sync.Mutex // serialises refreshes
	latest Snapshot
	series map[string]map[[2]string]bool // group -> (topic, partition) series set last time

	up        *prometheus.GaugeVec
	state     *prometheus.GaugeVec
	records   *prometheus.GaugeVec
	seconds   *prometheus.GaugeVec
	errors    *prometheus.CounterVec
	refreshed prometheus.Gauge
}

// New builds the client and the metrics; it does not touch the
// network. Close releases the client.
func New(cfg Config) (*Watcher, error) {
	if len(cfg.Groups) == 0 {
		return nil, errors.New("consumer lag: no groups to watch")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	cl, err := kgo.NewClient(cfg.KafkaOpts...)
	if err != nil {
		return nil, fmt.Errorf("consumer lag: kafka client: %w", err)
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	l := &Watcher{
		cfg: cfg, cl: cl, adm: kadm.NewClient(cl), series: map[string]map[[2]string]bool{},
		up: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "consumer_group_up",
			Help: "1 if the consumer group exists and has committed offsets, 0 if it does not exist, has committed nothing, or could not be read (see consumer_group_state)."}, []string{"group"}),
		state: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "consumer_group_state",
			Help: "1 for the consumer group's current state (Stable, PreparingRebalance, CompletingRebalance, Empty, Dead for a group that does not exist, Unknown), 0 for the others."}, []string{"group", "state"}),
		records: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "consumer_group_lag_records",
			Help: "Records between the group's committed offset and the end of the partition."}, []string{"group", "topic", "partition"}),
		seconds: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "consumer_group_lag_seconds",
			Help: "Age of the oldest record the group has not committed on the topic (max over partitions, from record timestamps); 0 when caught up."}, []string{"group", "topic"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "consumer_group_lag_errors_total",
			Help: "Refreshes that could not read the group's lag, in whole or in part."}, []string{"group"}),
		refreshed: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "consumer_group_lag_last_refresh_timestamp_seconds",
			Help: "Unix time of the latest refresh of consumer-group lag."}),
	}
	for _, g := range cfg.Groups {
		l.up.WithLabelValues(g)
		l.errors.WithLabelValues(g)
		for _, s := range groupStates {
			l.state.WithLabelValues(g, s)
		}
	}
	return l, nil
}

// Close releases the Kafka client.
func (l *Watcher) Close() { l.cl.Close() }

// Run refreshes every Interval until ctx is cancelled.
func (l *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := l.Refresh(ctx); err != nil && ctx.Err() == nil {
			l.cfg.Logger.Warn("consumer-group lag refresh failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Latest returns the latest refresh (zero before the first).
func (l *Watcher) Latest() Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.latest
}

// Refresh reads every group's lag now, updates the metrics and returns it.
// Concurrent calls are serialised. The error is for a refresh that read
// nothing; a group that could not be read is reported in its Group.
func (l *Watcher) Refresh(ctx context.Context) (Snapshot, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	lags, err := l.adm.Lag(ctx, l.cfg.Groups...)
	now := l.cfg.Now()
	snap := Snapshot{At: now}
	if err != nil {
		for _, g := range l.cfg.Groups {
			l.errors.WithLabelValues(g).Inc()
			snap.Groups = append(snap.Groups, Group{Group: g, Status: StatusError, State: "Unknown", Err: err})
		}
		l.publish(snap)
		return snap, fmt.Errorf("consumer lag: %w", err)
	}
	want := map[tpKey]int64{} // first uncommitted offset of each lagging partition
	for _, g := range l.cfg.Groups {
		info := l.group(g, lags[g])
		for _, t := range info.Topics {
			for _, p := range t.Partitions {
				if p.Lag > 0 {
					want[tpKey{t.Topic, p.Partition}] = p.End - p.Lag
				}
			}
		}
		snap.Groups = append(snap.Groups, info)
	}
	stamps, ferr := l.timestamps(ctx, want)
	if ferr != nil {
		l.cfg.Logger.Debug("consumer lag: record timestamps", "err", ferr)
	}
	for gi := range snap.Groups {
		g := &snap.Groups[gi]
		for ti := range g.Topics {
			t := &g.Topics[ti]
			lagging, read := false, false
			for pi := range t.Partitions {
				p := &t.Partitions[pi]
				if p.Lag <= 0 {
					p.SecondsKnown = true
					continue
				}
				lagging = true
				ts, ok := stamps[tpoKey{tpKey{t.Topic, p.Partition}, p.End - p.Lag}]
				if !ok {
					continue
				}
				read = true
				p.Seconds, p.SecondsKnown = max(now.Sub(ts).Seconds(), 0), true
				t.Seconds = max(t.Seconds, p.Seconds)
			}
			// With some lagging partitions unread, Seconds is a lower bound.
			t.SecondsKnown = !lagging || read
		}
	}
	l.publish(snap)
	l.latest = snap
	return snap, nil
}

type tpKey struct {
	topic     string
	partition int32
}

type tpoKey struct {
	tpKey
	offset int64
}

// group turns kadm's answer for one group into a Group.
func (l *Watcher) group(name string, dl kadm.DescribedGroupLag) Group {
	info := Group{Group: name, State: dl.State}
	if !slices.Contains(groupStates, info.State) {
		info.State = "Unknown"
	}
	if err := dl.Error(); err != nil {
		if errors.Is(err, kerr.GroupIDNotFound) {
			info.Status, info.State = StatusNotFound, "Dead"
			return info
		}
		info.Status, info.Err = StatusError, err
		l.errors.WithLabelValues(name).Inc()
		return info
	}
	if dl.State == "Dead" {
		// Kafka describes a group it never heard of as Dead, not as an error.
		info.Status = StatusNotFound
		return info
	}
	committed := false
	partial := false
	for _, ml := range dl.Lag.Sorted() {
		// A partition assigned but never committed is counted by kadm from
		// the log start: real lag, kept.
		if ml.Err != nil {
			partial = true
			continue
		}
		if ml.Commit.At >= 0 {
			committed = true
		}
		n := len(info.Topics)
		if n == 0 || info.Topics[n-1].Topic != ml.Topic {
			info.Topics = append(info.Topics, Topic{Topic: ml.Topic})
			n++
		}
		t := &info.Topics[n-1]
		t.Records += ml.Lag
		if ml.Commit.At >= 0 {
			t.Committed += ml.Commit.At
		}
		t.Partitions = append(t.Partitions, Partition{Partition: ml.Partition, Committed: ml.Commit.At, End: ml.End.Offset, Lag: ml.Lag})
	}
	if partial {
		l.errors.WithLabelValues(name).Inc()
	}
	if !committed {
		info.Status, info.Topics = StatusNoCommits, nil
		return info
	}
	info.Status = StatusOK
	return info
}

// publish sets the metrics from snap. Series of partitions or topics that
// went away are deleted, so a stale lag does not linger.
func (l *Watcher) publish(snap Snapshot) {
	l.refreshed.Set(float64(snap.At.UnixNano()) / 1e9)
	for _, g := range snap.Groups {
		up := 0.0
		if g.Status == StatusOK {
			up = 1
		}
		l.up.WithLabelValues(g.Group).Set(up)
		for _, s := range groupStates {
			v := 0.0
			if s == g.State {
				v = 1
			}
			l.state.WithLabelValues(g.Group, s).Set(v)
		}
		if g.Status == StatusError {
			continue // keep the last known lag rather than invent one
		}
		now := map[[2]string]bool{}
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				part := strconv.Itoa(int(p.Partition))
				l.records.WithLabelValues(g.Group, t.Topic, part).Set(float64(p.Lag))
				now[[2]string{t.Topic, part}] = true
			}
			if t.SecondsKnown {
				l.seconds.WithLabelValues(g.Group, t.Topic).Set(t.Seconds)
			}
			now[[2]string{t.Topic, ""}] = true
		}
		for k := range l.series[g.Group] {
			if now[k] {
				continue
			}
			if k[1] == "" {
				l.seconds.DeleteLabelValues(g.Group, k[0])
			} else {
				l.records.DeleteLabelValues(g.Group, k[0], k[1])
			}
		}
		l.series[g.Group] = now
	}
}
