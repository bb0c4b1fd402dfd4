// Package coord makes the canary's replicas a group through Kafka's own
// consumer-group protocol: they join one consumer group (coordination.group),
// subscribed to a coordination topic and never to the ingest topic, and a
// custom group balancer hands every member the same view of the group: who
// is in it and which one leads. Scheduled singletons (bursts, capacity
// searches, query concurrency runs) run on the leader only; steady markers
// run everywhere. No election of our own, no extra service, no Kubernetes
// API: the broker decides membership, the balancer derives the rest.
package coord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a Coordinator.
type Config struct {
	// KafkaOpts connect to the cluster (seed brokers, TLS, SASL): the
	// canary's shared options. The coordinator adds its group options.
	KafkaOpts []kgo.Opt
	Group     string // coordination.group
	Topic     string // coordination.topic
	Instance  string // canary.instance: this replica's name in the group
	// SessionTimeout is how long the broker waits for a silent member before
	// it rebalances without it: the longest a crashed leader is still
	// believed to lead. Heartbeats go every third of it (at most 3 s).
	SessionTimeout time.Duration
	// LeaveTimeout bounds the leave when Run returns: a broker that does
	// not acknowledge it by then (gone, or not answering) is given up on,
	// and the others rebalance after the session timeout instead of at
	// once. 0: the session timeout, past which the broker has dropped this
	// member anyway.
	LeaveTimeout time.Duration
	// Timeout bounds the creation of the coordination topic at start.
	Timeout    time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Member is one replica in the group.
type Member struct {
	ID       string `json:"id"`       // Kafka's member id, new on every join of a process
	Instance string `json:"instance"` // canary.instance
}

// Coordinator is one replica's membership in the coordination group. Run
// joins; the methods read the latest view and are safe for concurrent use.
type Coordinator struct {
	cfg Config
	log *slog.Logger

	members   prometheus.Gauge
	leaderG   prometheus.Gauge
	rebalance prometheus.Counter

	mu      sync.Mutex
	view    grant // zero: no view (not joined, or rebalancing)
	stable  bool  // view is current: no rebalance under way
	led     bool  // led in the latest view; kept through a revoke for the next claim
	changed chan struct{}
	gen     int32 // the group generation of view
	client  atomic.Pointer[kgo.Client]
}

// New builds a coordinator; nothing connects until Run.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Group == "" || cfg.Topic == "" || cfg.Instance == "" {
		return nil, errors.New("coordination: group, topic and instance must be set")
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.LeaveTimeout <= 0 {
		cfg.LeaveTimeout = cfg.SessionTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	f := promauto.With(cfg.Registerer)
	return &Coordinator{
		cfg: cfg,
		log: cfg.Logger,
		members: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "coordination_members",
			Help: "Replicas in the coordination group, as of the latest rebalance (0 until joined)."}),
		leaderG: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "coordination_leader",
			Help: "1 while this replica leads the coordination group and runs the scheduled jobs."}),
		rebalance: f.NewCounter(prometheus.CounterOpts{Namespace: "slo_canary", Name: "coordination_rebalances_total",
			Help: "Rebalances of the coordination group this replica completed (each one a new view of the members)."}),
		changed: make(chan struct{}),
	}, nil
}

// Run creates the coordination topic if it is missing, joins the group and
// stays in it until ctx is cancelled; then it leaves, so that the others
// rebalance at once rather than after the session timeout, waiting at most
// LeaveTimeout for the broker.
func (c *Coordinator) Run(ctx context.Context) error {
	if err := c.ensureTopic(ctx); err != nil {
		return err
	}
	hb := min(3*time.Second, c.cfg.SessionTimeout/3)
	// The client's own context: cancelled only if the leave times out, to
	// abort what kgo runs on it (a join in flight).
	cctx, abort := context.WithCancel(context.Background())
	defer abort()
	opts := append(slices.Clone(c.cfg.KafkaOpts),
		kgo.WithContext(cctx),
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(c.cfg.Topic),
		kgo.Balancers(&balancer{c: c}),
		kgo.DisableAutoCommit(), // the group never holds offsets: nothing to read as lag
		// The ticks announced go to partition 0 (Announce).
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.SessionTimeout(c.cfg.SessionTimeout),
		kgo.RebalanceTimeout(c.cfg.SessionTimeout),
		kgo.HeartbeatInterval(hb),
		kgo.OnPartitionsRevoked(func(context.Context, *kgo.Client, map[string][]int32) { c.revoked(false) }),
		kgo.OnPartitionsLost(func(context.Context, *kgo.Client, map[string][]int32) { c.revoked(true) }),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("coordination client: %w", err)
	}
	c.client.Store(cl)
	c.log.Info("joining the coordination group", "group", c.cfg.Group, "topic", c.cfg.Topic, "instance", c.cfg.Instance,
		"session_timeout", c.cfg.SessionTimeout)
	for {
		// The records are nobody's business yet: polling keeps the
		// client's buffer empty.
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(topic string, p int32, err error) {
			c.log.Warn("coordination topic fetch failed", "topic", topic, "partition", p, "err", err)
		})
	}
	c.leave(cl, abort)
	c.revoked(true)
	return nil
}

// leave leaves the group (the revoke callback clears leadership) and closes
// the client, waiting at most LeaveTimeout for the broker. kgo's Close
// alone has no deadline: it waits for a join in flight (sent on the
// client's context, so that a final commit could follow it) and then for
// the leave, each for as long as its timeouts and retries last against a
// broker that accepts connections but does not answer: well past a pod's
// termination grace period. So the leave goes first, bounded; if it times
// out, abort cancels the client's context, which fails whatever is still in
// flight, and Close returns without the broker.
func (c *Coordinator) leave(cl *kgo.Client, abort context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LeaveTimeout)
	defer cancel()
	err := cl.LeaveGroupContext(ctx)
	if ctx.Err() != nil {
		abort()
	}
	cl.Close()
	switch {
	case ctx.Err() != nil:
		c.log.Warn("left the coordination group: gave up waiting for the broker; the others rebalance after the session timeout",
			"group", c.cfg.Group, "after", c.cfg.LeaveTimeout, "err", err, "session_timeout", c.cfg.SessionTimeout)
	case err != nil:
		c.log.Warn("left the coordination group: the leave failed; the others rebalance after the session timeout",
			"group", c.cfg.Group, "err", err, "session_timeout", c.cfg.SessionTimeout)
	default:
		c.log.Info("left the coordination group", "group", c.cfg.Group)
	}
}

// ensureTopic creates the coordination topic with one partition unless it
// exists. Without the right to create it, an existing topic is enough.
func (c *Coordinator) ensureTopic(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	cl, err := kgo.NewClient(c.cfg.KafkaOpts...)
	if err != nil {
		return fmt.Errorf("coordination client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	_, err = adm.CreateTopic(ctx, 1, -1, nil, c.cfg.Topic)
	switch {
	case err == nil:
		c.log.Info("coordination topic created", "topic", c.cfg.Topic, "partitions", 1)
		return nil
	case errors.Is(err, kerr.TopicAlreadyExists):
		return nil
	}
	if td, lerr := adm.ListTopics(ctx, c.cfg.Topic); lerr == nil && td.Has(c.cfg.Topic) && td[c.cfg.Topic].Err == nil {
		c.log.Debug("coordination topic exists; creating it failed", "topic", c.cfg.Topic, "err", err)
		return nil
	}
	return fmt.Errorf("coordination.topic %q does not exist and could not be created: %w "+
		"(create it with one partition, or grant the canary Create on it)", c.cfg.Topic, err)
}

// assigned takes the view a rebalance handed this member.
func (c *Coordinator) assigned(g grant) {
	c.mu.Lock()
	c.view, c.stable = g, true
	c.gen = -1
	if cl := c.client.Load(); cl != nil {
		// The join that this assignment ends set the generation already.
		_, c.gen = cl.GroupMetadata()
	}
	c.led = g.Leader == g.Self
	c.members.Set(float64(len(g.Members)))
	c.leaderG.Set(b2f(c.led))
	c.rebalance.Inc()
	c.notifyLocked()
	leader, _ := c.leaderLocked()
	c.mu.Unlock()
	c.log.Info("coordination group balanced", "members", len(g.Members), "leader", leader.Instance, "leading", g.Leader == g.Self)
	instances := map[string]bool{}
	for _, m := range g.Members {
		if instances[m.Instance] {
			c.log.Error("two replicas share one canary.instance: each counts the other's markers as foreign; give every replica its own",
				"instance", m.Instance)
		}
		instances[m.Instance] = true
	}
}

// revoked ends the current view: a rebalance started (nobody leads until it
// ends), or the session was lost (this member may no longer claim it led).
func (c *Coordinator) revoked(lost bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	wasLeading := c.stable && c.view.Leader == c.view.Self
	c.stable = false
	if lost {
		c.led = false
		c.view = grant{}
		c.members.Set(0)
	}
	c.leaderG.Set(0)
	c.notifyLocked()
	if wasLeading {
		c.log.Info("coordination leadership released", "lost", lost)
	}
}

func (c *Coordinator) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// ledIn reports whether this member may claim, when it joins again, that it
// led in generation gen: it led in its latest view and did not lose its
// session since.
func (c *Coordinator) ledIn(gen int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.led && gen >= 0
}

// IsLeader reports whether this replica leads now: it holds a current view
// that names it. During a rebalance nobody leads.
func (c *Coordinator) IsLeader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stable && c.view.Leader == c.view.Self
}

// Leader returns the leading member of the current view; false while there
// is none (not joined yet, or a rebalance under way).
func (c *Coordinator) Leader() (Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leaderLocked()
}

func (c *Coordinator) leaderLocked() (Member, bool) {
	if !c.stable {
		return Member{}, false
	}
	for _, m := range c.view.Members {
		if m.ID == c.view.Leader {
			return m, true
		}
	}
	return Member{}, false
}

// Members returns the members of the current view, sorted by instance; nil
// while there is none.
func (c *Coordinator) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stable {
		return nil
	}
	return slices.Clone(c.view.Members)
}

// Self returns this replica's member id in the current view ("" without one).
func (c *Coordinator) Self() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stable {
		return ""
	}
	return c.view.Self
}

// Generation returns the Kafka group generation of the current view (-1
// without one): the same number on every member, new with every rebalance.
func (c *Coordinator) Generation() int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stable {
		return -1
	}
	return c.gen
}

// Changed returns a channel closed at the next change of the view: a
// rebalance starting or ending, leadership gained or lost. Call it again
// after it fires for the change after that.
func (c *Coordinator) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Leading reports whether this replica leads (self) and whether any member
// does (false while there is no current view): the scheduler's
// sched.Leadership.
func (c *Coordinator) Leading() (self, any bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, any = c.leaderLocked()
	return any && c.view.Leader == c.view.Self, any
}

// Holds reports whether this replica led in its latest view and has kept
// its session since: a run it started as the leader may go on through a
// rebalance that keeps it leading, and stops once another leads or the
// session is lost (the broker may then have handed leadership on).
func (c *Coordinator) Holds() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.led
}
