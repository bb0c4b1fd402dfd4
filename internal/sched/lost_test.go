package sched

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

// tickLog is the group's shared record of the ticks (the coordination
// topic, in memory).
type tickLog struct {
	mu  sync.Mutex
	rec []announced
}

type announced struct {
	job, outcome, by string
	tick             time.Time
}

// view is one replica's view of the group: a Leadership and its TickLog.
type view struct {
	log    *tickLog
	self   string
	mu     sync.Mutex
	leader string // "" during a rebalance
	change chan struct{}
}

func (v *view) Leading() (bool, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.leader == v.self, v.leader != ""
}
func (v *view) Holds() bool { self, _ := v.Leading(); return self }
func (v *view) Changed() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.change
}
func (v *view) LeaderInstance() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.leader
}
func (v *view) Horizon() time.Duration { return time.Minute }

func (v *view) lead(leader string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.leader = leader
	close(v.change)
	v.change = make(chan struct{})
}

func (v *view) Announce(_ context.Context, job string, tick time.Time, outcome string) error {
	v.log.mu.Lock()
	defer v.log.mu.Unlock()
	v.log.rec = append(v.log.rec, announced{job: job, outcome: outcome, by: v.self, tick: tick})
	return nil
}

func (v *view) Announced(_ context.Context, since time.Time) (map[string]map[int64]bool, error) {
	v.log.mu.Lock()
	defer v.log.mu.Unlock()
	out := map[string]map[int64]bool{}
	for _, r := range v.log.rec {
		// Stamped when written, at or after the tick.
		if r.tick.Before(since) {
			continue
		}
		if out[r.job] == nil {
			out[r.job] = map[int64]bool{}
		}
		out[r.job][r.tick.UnixNano()] = true
	}
	return out, nil
}

func (tl *tickLog) outcomes(job string) map[string][]string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	out := map[string][]string{}
	for _, r := range tl.rec {
		if r.job == job {
			out[r.outcome] = append(out[r.outcome], fmt.Sprintf("%s@%s", r.by, r.tick.Format("15:04:05")))
		}
	}
	return out
}

// member is one replica's scheduler with its view, its scheduler's context
// set as Run sets it, without cron: the test fires the ticks.
type member struct {
	*Scheduler
	v    *view
	reg  *prometheus.Registry
	ran  []time.Time
	logs *strings.Builder
}

func newMember(t *testing.T, tl *tickLog, self, leader string, now time.Time) *member {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &strings.Builder{}
	s := New(reg, slog.New(slog.NewTextHandler(logs, nil)))
	v := &view{log: tl, self: self, leader: leader, change: make(chan struct{})}
	s.LeaderOnly(v)
	s.now = func() time.Time { return now }
	m := &member{Scheduler: s, v: v, reg: reg, logs: logs}
	s.ctx = context.Background()
	close(s.ready)
	return m
}

// fire fires the job for tick, remembering the ticks it ran.
func (m *member) fire(tick time.Time) {
	m.Scheduler.fire(Job{Name: "burst", Group: "burst", Run: func(context.Context) error { m.ran = append(m.ran, tick); return nil }}, tick)
}

func (m *member) skipped(reason string) float64 {
	return testutil.ToFloat64(m.skip.WithLabelValues("burst", reason))
}

func (m *member) runsSkipped() float64 {
	return testutil.ToFloat64(m.runs.WithLabelValues("burst", "skipped"))
}

// TestTicksLeftByALostLeader: the ticks a dead leader left, which the others
// skipped as not_leader while they still believed it led, are counted once,
// as leader_lost, by the replica that takes the lead over; ticks announced
// (run by the old leader, counted no_leader by another replica, or counted
// leader_lost by an earlier new leader) are not; a clean handover counts
// nothing.
func TestTicksLeftByALostLeader(t *testing.T) {
	base := time.Unix(1_800_000_000, 0).UTC() // a multiple of 10 s
	tick := func(i int) time.Time { return base.Add(time.Duration(i) * 10 * time.Second) }
	takeover := tick(4).Add(-time.Second)

	type want struct{ lost, skipped float64 }
	for _, tc := range []struct {
		name string
		// ranTo: the old leader canary-0 runs ticks 0..ranTo-1, then dies
		// (4: a clean handover, it ran every tick before it left).
		ranTo int
		// noLeader: the tick at which canary-2 (not canary-1) was already
		// in the rebalance, -1 if none.
		noLeader int
		want     map[string]want // by instance
	}{
		{"leader killed after tick 1", 2, -1, map[string]want{"canary-1": {2, 2}, "canary-2": {0, 0}}},
		{"clean handover", 4, -1, map[string]want{"canary-1": {0, 0}, "canary-2": {0, 0}}},
		{"a tick another counted no_leader", 2, 3, map[string]want{"canary-1": {1, 1}, "canary-2": {0, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := &tickLog{}
			old := newMember(t, tl, "canary-0", "canary-0", takeover)
			rs := []*member{newMember(t, tl, "canary-1", "canary-0", takeover), newMember(t, tl, "canary-2", "canary-0", takeover)}
			for i := range 4 {
				if i < tc.ranTo {
					old.fire(tick(i))
				}
				for _, r := range rs {
					if r.v.self == "canary-2" && i == tc.noLeader {
						r.v.lead("")
					}
					r.fire(tick(i))
				}
			}
			if len(old.ran) != tc.ranTo {
				t.Fatalf("the old leader ran %v", old.ran)
			}
			// canary-1 takes the lead over.
			for _, r := range rs {
				r.v.lead("canary-1")
			}
			rs[0].settle(context.Background(), takeover)
			// Then canary-1 is killed as well, and canary-2 takes over:
			// nothing is left to count twice.
			rs[0].fire(tick(4))
			rs[1].fire(tick(4))
			rs[0].v.lead("")
			rs[1].v.lead("canary-2")
			rs[1].settle(context.Background(), takeover.Add(10*time.Second))
			for _, r := range rs {
				w := tc.want[r.v.self]
				if got := r.skipped(skipLeaderLost); got != w.lost {
					t.Errorf("%s: leader_lost %v, want %v (log %v)", r.v.self, got, w.lost, tl.outcomes("burst"))
				}
				if got := r.runsSkipped(); got != w.skipped {
					t.Errorf("%s: runs skipped %v, want %v", r.v.self, got, w.skipped)
				}
			}
			if tc.want["canary-1"].lost > 0 {
				logs := rs[0].logs.String()
				for _, s := range []string{"its leader was lost", "previous_leader=[canary-0]", "job=burst"} {
					if !strings.Contains(logs, s) {
						t.Errorf("canary-1's log lacks %q:\n%s", s, logs)
					}
				}
			}
			// Announced by canary-1, so that no later leader counts them.
			got := tl.outcomes("burst")[skipLeaderLost]
			if len(got) != int(tc.want["canary-1"].lost) || slices.ContainsFunc(got, func(s string) bool { return !strings.HasPrefix(s, "canary-1@") }) {
				t.Errorf("leader_lost announced: %v", got)
			}
			if len(rs[0].ran) != 1 || !rs[0].ran[0].Equal(tick(4)) {
				t.Errorf("canary-1 ran %v, want tick 4 only", rs[0].ran)
			}
		})
	}
}

// TestTakeoverSettlesTheTicksLeft: a running scheduler counts the ticks left
// to a lost leader as it sees itself take the lead over, before any run of
// its own, and only then.
func TestTakeoverSettlesTheTicksLeft(t *testing.T) {
	testenv.VerifyNoLeaks(t)
	tick := time.Unix(1_800_000_000, 0).UTC()
	s := New(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	v := &view{log: &tickLog{}, self: "canary-1", leader: "canary-0", change: make(chan struct{})}
	s.LeaderOnly(v)
	s.now = func() time.Time { return tick.Add(15 * time.Second) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	j := Job{Name: "burst", Run: func(context.Context) error { return nil }}
	s.fire(j, tick)
	s.fire(j, tick.Add(10*time.Second))
	lost := func() float64 { return testutil.ToFloat64(s.skip.WithLabelValues("burst", skipLeaderLost)) }
	v.lead("") // a rebalance: nobody leads, nothing is settled yet
	v.lead("canary-2")
	if got := lost(); got != 0 {
		t.Fatalf("leader_lost %v before this replica leads", got)
	}
	v.lead("canary-1")
	testenv.WaitFor(t, 10*time.Second, "the two ticks counted leader_lost", func() bool { return lost() == 2 })
	v.lead("")
	v.lead("canary-1") // a rebalance that keeps it leading: nothing more
	s.fire(j, tick.Add(20*time.Second))
	if got := lost(); got != 2 {
		t.Errorf("leader_lost %v after a rebalance that kept the lead, want 2", got)
	}
}

// TestTickedKnowsTheTickItFiresFor: a job started by cron knows its
// scheduled time whether or not cron has computed the next one yet.
func TestTickedKnowsTheTickItFiresFor(t *testing.T) {
	tk := &ticked{Schedule: aligned{every: 10 * time.Second}}
	at := func(ms int64) time.Time { return time.UnixMilli(ms) }
	tk.Next(at(3_000))
	if got := tk.due(at(10_002)); !got.Equal(at(10_000)) {
		t.Errorf("before cron's next: due %v, want 10 s", got)
	}
	tk.Next(at(10_002))
	if got := tk.due(at(10_005)); !got.Equal(at(10_000)) {
		t.Errorf("after cron's next: due %v, want 10 s", got)
	}
}
