package burst_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/canary/coord"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// replica is one canary of a scaled-out test: its marker service, its
// membership of the coordination group, and a burst runner that follows the
// leader's announcements.
type replica struct {
	inst  string
	cfg   *config.Config
	co    *coord.Coordinator
	reg   *prometheus.Registry
	m     *burst.Metrics
	run   *burst.Runner
	leave func() // leaves the coordination group
}

func startReplica(t *testing.T, p *testbed.Pipeline, inst string, follow bool, mod func(*config.Config)) *replica {
	t.Helper()
	c, svc := canaryOn(t, p, func(c *config.Config) {
		c.Canary.Instance = inst
		c.Coordination.Enabled = true
		c.Coordination.SessionTimeout = 6 * time.Second
		c.Bursts.ScaleOut = true
		c.Bursts.MarkerShare = 0.05
		c.Bursts.Budgets.RateTolerance = 0.1 // a second-long step on a loaded machine: see TestGate
		if mod != nil {
			mod(c)
		}
	})
	reg := prometheus.NewRegistry()
	co, err := coord.New(coord.Config{KafkaOpts: kafkaOpts(t, c), Group: c.Coordination.Group, Topic: c.Coordination.Topic,
		Instance: inst, SessionTimeout: c.Coordination.SessionTimeout, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	rep := &replica{inst: inst, cfg: c, co: co, reg: reg, m: burst.NewMetrics(reg, nil)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- co.Run(ctx) }()
	var once sync.Once
	rep.leave = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(rep.leave)
	rep.run, err = burst.NewRunner(burst.Options{Service: svc, Metrics: rep.m, Membership: co,
		CoordinationTopic: c.Coordination.Topic})
	if err != nil {
		t.Fatal(err)
	}
	if follow {
		fctx, fcancel := context.WithCancel(context.Background())
		fdone := make(chan error, 1)
		go func() { fdone <- rep.run.Follow(fctx) }()
		t.Cleanup(func() {
			fcancel()
			if err := <-fdone; err != nil {
				t.Errorf("%s: Follow: %v", inst, err)
			}
		})
	}
	return rep
}

// waitGroup waits until the replicas agree on a group of them all and
// returns the leader.
func waitGroup(t *testing.T, rs ...*replica) *replica {
	t.Helper()
	var leader *replica
	testenv.WaitFor(t, 30*time.Second, "one group with one leader", func() bool {
		leader = nil
		for _, r := range rs {
			if len(r.co.Members()) != len(rs) {
				return false
			}
			if r.co.IsLeader() {
				if leader != nil {
					return false
				}
				leader = r
			}
		}
		return leader != nil
	})
	return leader
}

func (r *replica) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return testenv.MetricValue(t, r.reg, name, labels)
}

// burstEvents counts the ingest topic's records of burst run (load events
// and markers) by partition and by the instance that sent them.
func burstEvents(t *testing.T, c *config.Config, run string) map[int32]map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(testenv.KafkaClient(t, c.Kafka.Brokers))
	ends, err := adm.ListEndOffsets(ctx, c.Canary.Topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl := testenv.KafkaClient(t, c.Kafka.Brokers, kgo.ConsumeTopics(c.Canary.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	out := map[int32]map[string]int64{}
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("ingest topic not read to its end: %v left", left)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Offset+1 >= left[rec.Partition] {
				delete(left, rec.Partition)
			}
			ev, err := canary.Decode(canary.Encoding(c.Canary.Encoding), rec.Value)
			if err != nil || ev.Attributes[canary.AttrRun] != run {
				return
			}
			if out[rec.Partition] == nil {
				out[rec.Partition] = map[string]int64{}
			}
			out[rec.Partition][ev.Attributes[canary.AttrInstance]]++
		})
	}
	return out
}

// TestScaleOutBurst: two replicas share a burst by partitions: every
// partition gets load from exactly one of them, each at its share of the
// rate, the events add up to rate x duration, and the leader writes the one
// report and verdict, from the merged figures; the other exports no burst.
func TestScaleOutBurst(t *testing.T) {
	p := kafkaPipeline(t)
	rs := []*replica{startReplica(t, p, "canary-0", true, nil), startReplica(t, p, "canary-1", true, nil)}
	leader := waitGroup(t, rs...)
	other := rs[0]
	if other == leader {
		other = rs[1]
	}
	if g0, g1 := rs[0].co.Generation(), rs[1].co.Generation(); g0 < 1 || g0 != g1 {
		t.Fatalf("generations %d and %d, want one", g0, g1)
	}
	rep, err := leader.run.Run(context.Background(), "wide", steps(t, "300/s for 2s"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != burst.VerdictPass {
		t.Fatalf("verdict %s: %v", rep.Verdict, rep.Reasons)
	}
	if rep.Events.Planned != 600 || rep.Events.Sent != 600 || rep.Events.Acked != 600 {
		t.Errorf("events %+v, want 600 planned, sent and acknowledged", rep.Events)
	}
	want := map[string][]int32{"canary-0": {0, 2}, "canary-1": {1}}
	if !maps.EqualFunc(rep.Assignment, want, slices.Equal[[]int32]) || rep.Generation != leader.co.Generation() {
		t.Errorf("assignment %v generation %d, want %v in %d", rep.Assignment, rep.Generation, want, leader.co.Generation())
	}
	if len(rep.Steps) != 1 || rep.Steps[0].TargetRate != 300 || rep.Steps[0].Sent != 600 {
		t.Errorf("steps %+v", rep.Steps)
	}
	var perSec int64
	for _, s := range rep.PerSecond {
		perSec += s.Sent
	}
	if perSec != 600 {
		t.Errorf("per-second sends add up to %d: %+v", perSec, rep.PerSecond)
	}
	if m := rep.Markers; m.Acked < 25 || m.Seen != m.Acked || rep.Lag.Samples != int(m.Seen) {
		t.Errorf("markers %+v, lag %+v: want every marker of both members seen, and measured", m, rep.Lag)
	}

	// What reached the topic: each partition from one member only, at its
	// share (two partitions and one of three).
	got := burstEvents(t, leader.cfg, rep.ID)
	byInstance := map[string]int64{}
	for part, senders := range got {
		if len(senders) != 1 {
			t.Errorf("partition %d got load from %v, want one member", part, senders)
		}
		for inst, n := range senders {
			if !slices.Contains(want[inst], part) {
				t.Errorf("%s produced to partition %d, not its own", inst, part)
			}
			byInstance[inst] += n
		}
	}
	if len(got) != 3 || byInstance["canary-0"] != 400 || byInstance["canary-1"] != 200 {
		t.Errorf("events by instance %v over %d partitions, want 400 and 200 over 3", byInstance, len(got))
	}

	// One report, one verdict: the leader's series only.
	if n := leader.metric(t, "slo_canary_bursts_total", map[string]string{"profile": "wide", "verdict": "pass"}); n != 1 {
		t.Errorf("leader: bursts_total{pass} = %v", n)
	}
	if n, err := testutil.GatherAndCount(other.reg, "slo_canary_bursts_total", "slo_canary_burst_last_timestamp_seconds"); err != nil || n != 0 {
		t.Errorf("%s exports %d series of a burst of its own (%v)", other.inst, n, err)
	}
	if a, b := leader.metric(t, "slo_canary_burst_events_sent_total", nil), other.metric(t, "slo_canary_burst_events_sent_total", nil); a+b != 600 {
		t.Errorf("events sent: leader %v + other %v, want 600 in all", a, b)
	}
}

// TestScaleOutMemberLost: a member that leaves the group mid-burst makes the
// leader abort with member_lost, and stop the others.
func TestScaleOutMemberLost(t *testing.T) {
	p := kafkaPipeline(t)
	rs := []*replica{startReplica(t, p, "canary-0", true, nil), startReplica(t, p, "canary-1", true, nil)}
	leader := waitGroup(t, rs...)
	other := rs[0]
	if other == leader {
		other = rs[1]
	}
	running := func() bool { return testutil.ToFloat64(other.m.Running) == 1 }
	go func() {
		t0 := time.Now()
		for !running() && time.Since(t0) < 30*time.Second {
			time.Sleep(20 * time.Millisecond) // polls a condition; WaitFor cannot run off the test's goroutine
		}
		other.leave()
	}()
	rep, err := leader.run.Run(context.Background(), "wide", steps(t, "200/s for 30s"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != burst.VerdictAborted || rep.Abort == nil || rep.Abort.Reason != burst.ReasonMemberLost {
		t.Fatalf("verdict %s, abort %+v; want aborted by member_lost", rep.Verdict, rep.Abort)
	}
	if el := rep.LoadEnd.Sub(rep.Started); el > 20*time.Second {
		t.Errorf("load ran %s: the abort did not stop it", el)
	}
	if n := leader.metric(t, "slo_canary_burst_aborts_total", map[string]string{"reason": "member_lost"}); n != 1 {
		t.Errorf("burst_aborts_total{member_lost} = %v", n)
	}
	testenv.WaitFor(t, 10*time.Second, "the member's share stopped", func() bool {
		return other.metric(t, "slo_canary_burst_running", nil) == 0
	})
}

// TestScaleOutLeaderLost: a member whose burst's leader leaves the group
// stops its share within one guard interval of the group's new view, on its
// own: the leader here is the test, which announces a burst and never says
// stop.
func TestScaleOutLeaderLost(t *testing.T) {
	p := kafkaPipeline(t)
	// The guard interval is above the heartbeat interval (a third of the
	// session timeout): a member learns of a rebalance at its next heartbeat.
	interval := 4 * time.Second
	lead := startReplica(t, p, "canary-0", false, func(c *config.Config) { c.Bursts.Guard.Interval = interval })
	member := startReplica(t, p, "canary-1", true, func(c *config.Config) { c.Bursts.Guard.Interval = interval })
	if waitGroup(t, lead, member) != lead {
		t.Fatal("canary-0 does not lead")
	}
	me, _ := lead.co.Leader()
	cl := testenv.KafkaClient(t, lead.cfg.Kafka.Brokers, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		lead.cfg.Coordination.Topic: {0: kgo.NewOffset().AtStart()}}))
	start := burst.Message{Type: burst.MsgStart, Burst: "test.b1", Profile: "wide", Steps: []string{"200/s for 60s"},
		Start: time.Now().Add(500 * time.Millisecond), Assignment: map[string][]int32{"canary-1": {0, 1, 2}},
		Members: lead.co.Members(), Generation: lead.co.Generation(), Leader: me, From: "canary-0"}
	data, err := json.Marshal(start)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Produce(t, cl, &kgo.Record{Topic: lead.cfg.Coordination.Topic, Key: []byte(start.Burst), Value: data})
	testenv.WaitFor(t, 30*time.Second, "the member's share running", func() bool {
		return member.metric(t, "slo_canary_burst_running", nil) == 1
	})
	left := time.Now()
	lead.leave()
	var res *burst.Partial
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for res == nil {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no result from the member")
		}
		fs.EachRecord(func(rec *kgo.Record) {
			var m burst.Message
			if json.Unmarshal(rec.Value, &m) == nil && m.Type == burst.MsgResult && m.Burst == start.Burst {
				res = m.Result
			}
		})
	}
	a := res.Report.Abort
	if a == nil || a.Reason != burst.ReasonMemberLost {
		t.Fatalf("the member's share: abort %+v, want member_lost", a)
	}
	stopped := res.Report.LoadEnd.Sub(left)
	t.Logf("the member stopped %v after the leader left: %s", stopped, a.Detail)
	if stopped > interval {
		t.Errorf("the member stopped %v after the leader left, want within one guard interval (%v)", stopped, interval)
	}
	if res.Report.Events.Sent >= 12000 {
		t.Errorf("the member sent %d events: it did not stop", res.Report.Events.Sent)
	}
}
