package sched_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary/coord"
	"github.com/slo-scout/slo-canary/internal/sched"
	"github.com/slo-scout/slo-canary/internal/testenv"
)

// replica is one scheduler gated by its coordinator, as a daemon with
// coordination.enabled runs them.
type replica struct {
	name   string
	co     *coord.Coordinator
	reg    *prometheus.Registry
	leave  context.CancelFunc // stops the coordinator only
	cancel context.CancelFunc // stops both
	wg     sync.WaitGroup
}

func (r *replica) stop() {
	r.cancel()
	r.wg.Wait()
}

// ticks records which replica ran the job at each fire time.
type ticks struct {
	mu  sync.Mutex
	ran map[int64][]string // unix second -> replicas
}

func (tk *ticks) add(at time.Time, name string) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	sec := at.Round(time.Second).Unix()
	tk.ran[sec] = append(tk.ran[sec], name)
}

func (tk *ticks) get(sec int64) []string {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return append([]string(nil), tk.ran[sec]...)
}

func startReplica(t *testing.T, addrs []string, name string, tk *ticks, job func(ctx context.Context) error) *replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	co, err := coord.New(coord.Config{
		KafkaOpts: []kgo.Opt{kgo.SeedBrokers(addrs...)}, Group: "slo-canary-coordinator", Topic: "slo-canary-coordination",
		Instance: name, SessionTimeout: 1500 * time.Millisecond, Registerer: reg, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := sched.New(reg, slog.New(slog.DiscardHandler))
	s.LeaderOnly(co)
	if err := s.Add(sched.Job{Name: "burst_tick", Group: "burst", Spec: "@every 1s", Run: func(ctx context.Context) error {
		tk.add(time.Now(), name)
		if job != nil {
			return job(ctx)
		}
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cctx, leave := context.WithCancel(ctx)
	r := &replica{name: name, co: co, reg: reg, cancel: cancel, leave: leave}
	r.wg.Add(2)
	go func() { defer r.wg.Done(); _ = co.Run(cctx) }()
	go func() { defer r.wg.Done(); _ = s.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func leaderOf(t *testing.T, rs ...*replica) *replica {
	t.Helper()
	var leader *replica
	testenv.WaitFor(t, 30*time.Second, "one leader that all replicas agree on", func() bool {
		leader = nil
		for _, r := range rs {
			self, any := r.co.Leading()
			if !any || len(r.co.Members()) != len(rs) {
				return false
			}
			if self {
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

// expectOnce waits for n whole seconds after from and checks that the job
// ran on exactly one replica, want, at each.
func expectOnce(t *testing.T, tk *ticks, from time.Time, n int, want string) {
	t.Helper()
	first := from.Truncate(time.Second).Unix() + 2 // a tick surely after from
	for sec := first; sec < first+int64(n); sec++ {
		testenv.WaitFor(t, 5*time.Second, "the tick after", func() bool { return time.Now().Unix() > sec+1 })
		if got := tk.get(sec); len(got) != 1 || got[0] != want {
			t.Errorf("tick %d ran on %v, want once on %s", sec, got, want)
		}
	}
}

// TestScheduledJobsRunOnTheLeaderOnly: two replicas with coordination, a
// job due every second: it runs on exactly one replica per fire time, the
// other counts it left to the leader; when the leader leaves, the other
// takes the ticks over, never running one twice.
func TestScheduledJobsRunOnTheLeaderOnly(t *testing.T) {
	testenv.VerifyNoLeaks(t)
	_, addrs := testenv.Kafka(t, kfake.GroupMinSessionTimeout(100*time.Millisecond))
	tk := &ticks{ran: map[int64][]string{}}
	a := startReplica(t, addrs, "canary-a", tk, nil)
	b := startReplica(t, addrs, "canary-b", tk, nil)
	leader := leaderOf(t, a, b)
	other := b
	if leader == b {
		other = a
	}
	expectOnce(t, tk, time.Now(), 3, leader.name)
	if n := testenv.MetricValue(t, other.reg, "slo_canary_scheduled_skipped_total", map[string]string{"task": "burst_tick", "reason": "not_leader"}); n < 3 {
		t.Errorf("the other replica counted %v ticks left to the leader, want at least 3", n)
	}

	left := time.Now()
	leader.stop()
	if got := leaderOf(t, other); got != other {
		t.Fatal("the remaining replica does not lead")
	}
	// Every tick since the leader left ran at most once.
	for sec := left.Unix() - 1; sec <= time.Now().Unix(); sec++ {
		if got := tk.get(sec); len(got) > 1 {
			t.Errorf("tick %d ran on %v during the handover", sec, got)
		}
	}
	expectOnce(t, tk, time.Now(), 3, other.name)
}

// TestRunningJobStopsWhenLeadershipIsLost: a long job started by the leader
// is cancelled with ErrLeadershipLost once another replica leads.
func TestRunningJobStopsWhenLeadershipIsLost(t *testing.T) {
	_, addrs := testenv.Kafka(t, kfake.GroupMinSessionTimeout(100*time.Millisecond))
	tk := &ticks{ran: map[int64][]string{}}
	started := make(chan string, 10)
	stopped := make(chan error, 10)
	long := func(name string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			started <- name
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return ctx.Err()
		}
	}
	a := startReplica(t, addrs, "canary-a", tk, long("canary-a"))
	leaderOf(t, a)
	if got := <-started; got != "canary-a" {
		t.Fatalf("started on %s", got)
	}
	b := startReplica(t, addrs, "canary-b", tk, long("canary-b"))
	if got := leaderOf(t, a, b); got != a {
		t.Fatalf("leadership moved to %s when canary-b joined", got.name)
	}
	select {
	case err := <-stopped:
		t.Fatalf("the running job stopped on a rebalance that kept its leader: %v", err)
	default:
	}
	// canary-a leaves the group while its scheduler keeps running: its job
	// stops, and canary-b leads and runs the next tick.
	a.leave()
	if err := <-stopped; !errors.Is(err, sched.ErrLeadershipLost) {
		t.Fatalf("the job stopped with %v, want ErrLeadershipLost", err)
	}
	if got := <-started; got != "canary-b" {
		t.Fatalf("the next run started on %s, want canary-b", got)
	}
	if n := testenv.MetricValue(t, a.reg, "slo_canary_scheduled_runs_total", map[string]string{"task": "burst_tick", "result": "failure"}); n != 1 {
		t.Errorf("canary-a counted %v failed runs, want 1 (the run it had to stop)", n)
	}
}
