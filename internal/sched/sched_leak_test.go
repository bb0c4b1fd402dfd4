package sched_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/slo-scout/slo-canary/internal/sched"
)

// TestSchedulerNoGoroutineLeak: cancelling Run while a job is running
// cancels the job, waits for it and leaves no goroutine of cron or of the job
// behind.
func TestSchedulerNoGoroutineLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := sched.New(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	err := s.Add(sched.Job{Name: "hold", Spec: "@every 1s", Run: func(ctx context.Context) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		select {
		case ended <- ctx.Err():
		default:
		}
		return ctx.Err()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("the job did not start")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	// Run waited for the job: its end is already recorded.
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("job ended with %v, want context.Canceled", err)
		}
	default:
		t.Fatal("Run returned before the running job did")
	}
}
