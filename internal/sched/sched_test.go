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
