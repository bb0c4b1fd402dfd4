package coord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/slo-scout/slo-canary/internal/sched"
	"github.com/slo-scout/slo-canary/internal/testenv"
)

const (
	testGroup   = "slo-canary-coordinator"
	testTopic   = "slo-canary-coordination"
	ingestTopic = "raw-telemetry"
	// testSession is the group session timeout of the tests: the longest a
	// crashed leader is still believed to lead.
	testSession = 1500 * time.Millisecond
)

// newCluster is a kfake cluster with the ingest topic, accepting the short
// session timeout of the tests.
func newCluster(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, []string) {
	t.Helper()
	return testenv.Kafka(t, append([]kfake.Opt{kfake.SeedTopics(4, ingestTopic), kfake.GroupMinSessionTimeout(100 * time.Millisecond)}, opts...)...)
}

// member is one replica's coordinator running in the test.
type member struct {
	*Coordinator
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	dial   *killableDialer
	once   sync.Once
}

// killableDialer dials the cluster until it is killed; then it closes every
// connection it made and refuses new ones: a replica that crashed (or lost
// the network) as far as the broker can tell, with no chance to leave.
type killableDialer struct {
	mu     sync.Mutex
	dead   bool
	conns  []net.Conn
	dialer net.Dialer
}

func (d *killableDialer) DialContext(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return nil, errors.New("killed")
	}
	conn, err := d.dialer.DialContext(ctx, network, host)
	if err == nil {
		d.conns = append(d.conns, conn)
	}
	return conn, err
}

func (d *killableDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	for _, c := range d.conns {
		c.Close()
	}
}

func startMember(t *testing.T, addrs []string, instance string) *member {
	t.Helper()
	reg := prometheus.NewRegistry()
	d := &killableDialer{}
	c, err := New(Config{
		KafkaOpts: []kgo.Opt{kgo.SeedBrokers(addrs...), kgo.Dialer(d.DialContext), kgo.RetryTimeout(2 * time.Second),
			kgo.RequestTimeoutOverhead(time.Second)},
		Group: testGroup, Topic: testTopic, Instance: instance, SessionTimeout: testSession,
		Registerer: reg, Logger: slog.New(slog.DiscardHandler).With("instance", instance),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{Coordinator: c, reg: reg, cancel: cancel, done: make(chan error, 1), dial: d}
	go func() { m.done <- c.Run(ctx) }()
	t.Cleanup(m.stop)
	return m
}

// stop ends the member's Run (it leaves the group) and waits for it.
func (m *member) stop() {
	m.once.Do(func() {
		m.cancel()
		<-m.done
	})
}

// stable reports whether the members agree on one view of exactly them, with
// one leader: the leader's instance, or "".
func stable(ms ...*member) string {
	var leader Member
	leaders := 0
	for _, m := range ms {
		view := m.Members()
		if len(view) != len(ms) {
			return ""
		}
		l, ok := m.Leader()
		if !ok || (leader != Member{} && l != leader) {
			return ""
		}
		leader = l
		if m.IsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		return ""
	}
	return leader.Instance
}

func waitStable(t *testing.T, within time.Duration, ms ...*member) string {
	t.Helper()
	var leader string
	testenv.WaitFor(t, within, fmt.Sprintf("%d members agreeing on one leader", len(ms)), func() bool {
		leader = stable(ms...)
		return leader != ""
	})
	return leader
}

func byInstance(ms []*member, instance string) (*member, []*member) {
	var rest []*member
	var found *member
	for _, m := range ms {
		if m.cfg.Instance == instance {
			found = m
		} else {
			rest = append(rest, m)
		}
	}
	return found, rest
}

func gauge(t *testing.T, m *member, name string) float64 {
	t.Helper()
	return testenv.MetricValue(t, m.reg, name, nil)
}

// TestMembershipAndLeadership: three replicas agree on one leader and the
// members; a leader that leaves hands over at once, one that crashes within
// the session timeout; the metrics follow.
func TestMembershipAndLeadership(t *testing.T) {
	testenv.VerifyNoLeaks(t)
	_, addrs := newCluster(t)
	ms := []*member{startMember(t, addrs, "canary-0"), startMember(t, addrs, "canary-1"), startMember(t, addrs, "canary-2")}
	leader := waitStable(t, 30*time.Second, ms...)
	leaders := 0.0
	for _, m := range ms {
		if got := gauge(t, m, "slo_canary_coordination_members"); got != 3 {
			t.Errorf("%s: members = %v, want 3", m.cfg.Instance, got)
		}
		leaders += gauge(t, m, "slo_canary_coordination_leader")
		if got := gauge(t, m, "slo_canary_coordination_rebalances_total"); got < 1 {
			t.Errorf("%s: rebalances = %v, want at least 1", m.cfg.Instance, got)
		}
	}
	if leaders != 1 {
		t.Errorf("leader gauges sum to %v, want 1", leaders)
	}

	// The leader leaves cleanly: the others rebalance without waiting for
	// its session to expire.
	old, rest := byInstance(ms, leader)
	changed := rest[0].Changed()
	left := time.Now()
	old.stop()
	<-changed
	next := waitStable(t, testSession, rest...)
	t.Logf("clean leave: %s -> %s in %v", leader, next, time.Since(left))
	if next == leader {
		t.Fatalf("the departed %s still leads", leader)
	}
	for _, m := range rest {
		if got := gauge(t, m, "slo_canary_coordination_members"); got != 2 {
			t.Errorf("%s: members = %v, want 2", m.cfg.Instance, got)
		}
	}
	if got := gauge(t, old, "slo_canary_coordination_leader"); got != 0 {
		t.Errorf("the departed leader's gauge is %v, want 0", got)
	}

	// The new leader crashes: the last one leads within the session
	// timeout (plus the rebalance it then runs on its own).
	crashed, last := byInstance(rest, next)
	crashedAt := time.Now()
	crashed.dial.kill()
	final := waitStable(t, 3*testSession, last...)
	t.Logf("crash: %s -> %s in %v", next, final, time.Since(crashedAt))
	if final != last[0].cfg.Instance {
		t.Fatalf("leader %q, want %q", final, last[0].cfg.Instance)
	}
}

// TestLeadershipSticks: a replica joining, even one whose instance sorts
// first, does not move leadership: scheduled jobs stay where they are.
func TestLeadershipSticks(t *testing.T) {
	_, addrs := newCluster(t)
	b := startMember(t, addrs, "canary-b")
	if got := waitStable(t, 30*time.Second, b); got != "canary-b" {
		t.Fatalf("leader %q", got)
	}
	c := startMember(t, addrs, "canary-c")
	a := startMember(t, addrs, "canary-a")
	if got := waitStable(t, 30*time.Second, a, b, c); got != "canary-b" {
		t.Fatalf("leader %q after two joined, want canary-b still", got)
	}
	if ga, gb, gc := a.Generation(), b.Generation(), c.Generation(); ga < 1 || ga != gb || gb != gc {
		t.Errorf("generations %d, %d, %d: want one, the same on every member", ga, gb, gc)
	}
	if got := a.Members(); !slices.EqualFunc(got, []string{"canary-a", "canary-b", "canary-c"}, func(m Member, s string) bool { return m.Instance == s }) {
		t.Errorf("members %v, want sorted by instance", got)
	}
}

// TestGroupOnlyOnCoordinationTopic: the coordination group subscribes to,
// is assigned and commits nothing but the coordination topic, which was
// created with one partition: it never reads as lagging on the ingest topic.
func TestGroupOnlyOnCoordinationTopic(t *testing.T) {
	_, addrs := newCluster(t)
	ms := []*member{startMember(t, addrs, "canary-0"), startMember(t, addrs, "canary-1")}
	waitStable(t, 30*time.Second, ms...)
	adm := kadm.NewClient(testenv.KafkaClient(t, addrs))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td, err := adm.ListTopics(ctx, testTopic)
	if err != nil || !td.Has(testTopic) {
		t.Fatalf("coordination topic: %v %v", td, err)
	}
	if n := len(td[testTopic].Partitions); n != 1 {
		t.Errorf("coordination topic has %d partitions, want 1", n)
	}
	groups, err := adm.DescribeGroups(ctx, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	g := groups[testGroup]
	if g.Err != nil || len(g.Members) != 2 || g.Protocol != protocolName {
		t.Fatalf("group %+v", g)
	}
	assigned := 0
	for _, m := range g.Members {
		join, ok := m.Join.AsConsumer()
		if !ok || !slices.Equal(join.Topics, []string{testTopic}) {
			t.Errorf("member %s subscribes to %v, want only %s", m.MemberID, join, testTopic)
		}
		a, ok := m.Assigned.AsConsumer()
		if !ok {
			t.Fatalf("member %s: assignment not a consumer assignment", m.MemberID)
		}
		for _, at := range a.Topics {
			if at.Topic != testTopic {
				t.Errorf("member %s assigned %s", m.MemberID, at.Topic)
			}
			assigned += len(at.Partitions)
		}
	}
	if assigned != 1 {
		t.Errorf("%d coordination partitions assigned, want 1 (to the leader)", assigned)
	}
	offs, err := adm.FetchOffsets(ctx, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	if len(offs) != 0 {
		t.Errorf("the coordination group committed offsets: %v", offs)
	}
	lags, err := adm.Lag(ctx, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lags.Sorted() {
		for _, ml := range l.Lag.Sorted() {
			if ml.Topic == ingestTopic {
				t.Errorf("lag reported on the ingest topic: %+v", ml)
			}
		}
	}
}

// TestTopicCannotBeCreated: a coordination topic that does not exist and
// cannot be created stops Run with an error that says what to do; one that
// exists needs no Create right.
func TestTopicCannotBeCreated(t *testing.T) {
	forbidCreate := func(c *kfake.Cluster) {
		c.ControlKey(int16(kmsg.CreateTopics), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			req := kreq.(*kmsg.CreateTopicsRequest)
			resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
			for _, rt := range req.Topics {
				st := kmsg.NewCreateTopicsResponseTopic()
				st.Topic = rt.Topic
				st.ErrorCode = kerr.TopicAuthorizationFailed.Code
				resp.Topics = append(resp.Topics, st)
			}
			return resp, nil, true
		})
	}
	t.Run("missing", func(t *testing.T) {
		c, addrs := newCluster(t)
		forbidCreate(c)
		co, err := New(Config{KafkaOpts: []kgo.Opt{kgo.SeedBrokers(addrs...)}, Group: testGroup, Topic: testTopic, Instance: "canary-0",
			Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = co.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), `coordination.topic "slo-canary-coordination" does not exist and could not be created`) ||
			!errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("exists", func(t *testing.T) {
		c, addrs := newCluster(t, kfake.SeedTopics(1, testTopic))
		forbidCreate(c)
		m := startMember(t, addrs, "canary-0")
		if got := waitStable(t, 30*time.Second, m); got != "canary-0" {
			t.Fatalf("leader %q", got)
		}
	})
}

// TestLeaveBoundedWhileJoinHangs: a member whose rejoin the broker does not
// answer (a rebalance that hangs, or a broker that stopped answering) still
// returns from Run within LeaveTimeout and a little once cancelled: the
// leave is given up on, and the join in flight with it. Before, Close waited
// for the join for as long as its request timeout lasts (the rebalance
// timeout plus kgo's overhead: 20 s here). Giving up leaks nothing.
func TestLeaveBoundedWhileJoinHangs(t *testing.T) {
	testenv.VerifyNoLeaks(t)
	c, addrs := newCluster(t)
	const leaveTimeout = 500 * time.Millisecond
	co, err := New(Config{KafkaOpts: []kgo.Opt{kgo.SeedBrokers(addrs...)}, Group: testGroup, Topic: testTopic, Instance: "canary-0",
		SessionTimeout: 10 * time.Second, LeaveTimeout: leaveTimeout})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- co.Run(ctx) }()
	m := &member{Coordinator: co}
	waitStable(t, 30*time.Second, m)

	// From now on the broker holds every JoinGroup without an answer.
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.JoinGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		once.Do(func() { close(held) })
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	t.Cleanup(func() { close(release) })
	co.client.Load().ForceRebalance()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the member did not rejoin")
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		t.Logf("Run returned %s after the cancel", time.Since(start).Round(time.Millisecond))
	case <-time.After(leaveTimeout + 3*time.Second):
		t.Fatalf("Run did not return within %s of the cancel (LeaveTimeout and 3 s) with a join in flight", leaveTimeout+3*time.Second)
	}
	if co.IsLeader() || co.Holds() {
		t.Error("the member still claims leadership after it left")
	}
}

var _ sched.TickLog = (*Coordinator)(nil)

// TestTicksAnnouncedAreReadBack: what the leader announces of its scheduled
// ticks, another replica reads back from the coordination topic, by job,
// from a time on; records of other kinds (a burst's) are ignored, and a read
// from a time with no record since returns at once, empty.
func TestTicksAnnouncedAreReadBack(t *testing.T) {
	testenv.VerifyNoLeaks(t)
	_, addrs := newCluster(t)
	ms := []*member{startMember(t, addrs, "canary-0"), startMember(t, addrs, "canary-1")}
	leader, rest := byInstance(ms, waitStable(t, 30*time.Second, ms...))
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	t0 := time.Unix(1_800_000_000, 0)
	for _, a := range []struct {
		job     string
		tick    time.Time
		outcome string
	}{{"burst", t0, "ran"}, {"burst", t0.Add(10 * time.Second), "group_busy"}, {"queries", t0, "no_leader"}} {
		if err := leader.Announce(ctx, a.job, a.tick, a.outcome); err != nil {
			t.Fatal(err)
		}
	}
	cl := leader.client.Load()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: testTopic, Partition: 0, Key: []byte("b1"), Value: []byte(`{"type":"start","burst":"b1"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got, err := rest[0].Announced(ctx, before)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[int64]bool{
		"burst":   {t0.UnixNano(): true, t0.Add(10 * time.Second).UnixNano(): true},
		"queries": {t0.UnixNano(): true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("announced ticks: %v, want %v", got, want)
	}
	got, err = rest[0].Announced(ctx, time.Now().Add(time.Minute))
	if err != nil || len(got) != 0 {
		t.Errorf("announced ticks from a minute ahead: %v, %v; want none", got, err)
	}
	if h := leader.Horizon(); h != 2*testSession+testSession/3 {
		t.Errorf("horizon %v, want twice the session timeout and a heartbeat", h)
	}
}
