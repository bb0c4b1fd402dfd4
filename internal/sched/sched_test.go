package sched

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSchedulerExclusionAndAccounting(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(reg, slog.New(slog.DiscardHandler))
	started, release := make(chan struct{}), make(chan struct{})
	long := Job{Name: "nightly", Group: "burst", Run: func(ctx context.Context) error {
		close(started)
		<-release
		return nil
	}}
	other := Job{Name: "hourly", Group: "burst", Run: func(context.Context) error { t.Error("ran while its group was busy"); return nil }}
	for _, j := range []Job{long, other} {
		j.Spec = "@yearly"
		if err := s.Add(j); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan bool)
	go func() {
		ran, _ := s.TryRun(context.Background(), long)
		done <- ran
	}()
	<-started
	if ran, _ := s.TryRun(context.Background(), other); ran {
		t.Fatal("a second job of the same group ran while the first was running")
	}
	close(release)
	if !<-done {
		t.Fatal("the first job did not run")
	}
	if got := testutil.ToFloat64(s.runs.WithLabelValues("hourly", "skipped")); got != 1 {
		t.Errorf("skipped = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.runs.WithLabelValues("nightly", "success")); got != 1 {
		t.Errorf("success = %v, want 1", got)
	}
	// Once the group is free, the other job runs.
	free := Job{Name: "hourly", Group: "burst", Run: func(context.Context) error { return errors.New("budget breached") }}
	if ran, err := s.TryRun(context.Background(), free); !ran || err == nil {
		t.Fatalf("ran=%v err=%v, want a run that failed", ran, err)
	}
	if got := testutil.ToFloat64(s.runs.WithLabelValues("hourly", "failure")); got != 1 {
		t.Errorf("failure = %v, want 1", got)
	}
}

// TestSchedulerSurvivesPanics: a scheduled job that panics is counted, and the
// scheduler (and the daemon around it) keeps running and fires it again.
func TestSchedulerSurvivesPanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(reg, slog.New(slog.DiscardHandler))
	fired := make(chan struct{}, 10)
	if err := s.Add(Job{Name: "bad", Spec: "@every 1s", Run: func(context.Context) error {
		fired <- struct{}{}
		panic("bug in a burst")
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	for range 2 {
		select {
		case <-fired:
		case <-time.After(10 * time.Second):
			t.Fatal("job did not fire twice")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(s.runs.WithLabelValues("bad", "panic")); got < 2 {
		t.Errorf("panics counted %v, want at least 2", got)
	}
}

func TestSchedulerBadSpec(t *testing.T) {
	s := New(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	err := s.Add(Job{Name: "nightly", Spec: "every night", Run: func(context.Context) error { return nil }})
	if err == nil || !strings.Contains(err.Error(), `job nightly: schedule "every night"`) {
		t.Fatalf("err %v", err)
	}
}

// TestSchedulerStopCancelsRunningJobs: Run returns only after running jobs saw
// their context cancelled and returned.
func TestSchedulerStopCancelsRunningJobs(t *testing.T) {
	s := New(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	started, returned := make(chan struct{}), make(chan struct{})
	if err := s.Add(Job{Name: "long", Spec: "@every 1s", Run: func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		close(returned)
		return ctx.Err()
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	<-started
	cancel()
	<-done
	select {
	case <-returned:
	default:
		t.Fatal("Run returned before the running job did")
	}
}

// TestEverySchedulesAlignAmongReplicas: with LeaderOnly, "@every D" fires at
// the multiples of D since the Unix epoch, whenever the process started, so
// replicas started at different times share their ticks; without it, robfig's
// own schedule (D after the start) is kept, as a single process always had.
func TestEverySchedulesAlignAmongReplicas(t *testing.T) {
	a := aligned{every: 10 * time.Second}
	for _, start := range []string{"2026-12-06T18:00:03.25Z", "2026-12-06T18:00:07Z", "2026-12-06T18:00:09.999Z"} {
		at, err := time.Parse(time.RFC3339Nano, start)
		if err != nil {
			t.Fatal(err)
		}
		next := a.Next(at)
		if want := time.Date(2026, 12, 6, 18, 0, 10, 0, time.UTC); !next.Equal(want) {
			t.Errorf("after %s: next %s, want %s", start, next, want)
		}
		if want := time.Date(2026, 12, 6, 18, 0, 20, 0, time.UTC); !a.Next(next).Equal(want) {
			t.Errorf("after %s: next %s, want %s", next, a.Next(next), want)
		}
	}
	// Not a divisor of a minute: still the epoch's multiples.
	if got := (aligned{every: 7 * time.Second}).Next(time.Unix(700, 1)); got.Unix() != 707 {
		t.Errorf("@every 7s after 700.000000001: %d, want 707", got.Unix())
	}

	for _, tc := range []struct {
		leaderOnly bool
		aligned    bool
	}{{false, false}, {true, true}} {
		s := New(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		if tc.leaderOnly {
			s.LeaderOnly(always{})
		}
		if err := s.Add(Job{Name: "tick", Spec: "@every 10s", Run: func(context.Context) error { return nil }}); err != nil {
			t.Fatal(err)
		}
		_, isAligned := s.cron.Entries()[0].Schedule.(aligned)
		if isAligned != tc.aligned {
			t.Errorf("LeaderOnly %v: aligned schedule %v, want %v", tc.leaderOnly, isAligned, tc.aligned)
		}
	}
}

// always leads.
type always struct{}

func (always) Leading() (bool, bool)    { return true, true }
func (always) Holds() bool              { return true }
func (always) Changed() <-chan struct{} { return nil }
