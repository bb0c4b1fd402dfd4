package burst_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/canary/grouplag"
	"github.com/slo-scout/slo-canary/config"
)

// TestBurstNoGoroutineLeak: a burst that ran to its verdict, and one
// cancelled during its load (a shutdown), leave no goroutine behind: not the
// guard, the progress reporter, the pacer's producer client or the lag
// watcher's client. The pipeline and the canary service run throughout;
// they are stopped too before the check, which covers them as well.
func TestBurstNoGoroutineLeak(t *testing.T) {
	// Registered first, so it runs last: after kafkaOnly's cleanups have
	// stopped the canary service and the pipeline. Their steady goroutines
	// come and go (polls, connections), so they cannot be taken as current.
	current := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, current) })
	_, c, svc := kafkaOnly(t, func(c *config.Config) { c.Bursts.MarkerShare = 0.05 })

	reg := prometheus.NewRegistry()
	gl, err := grouplag.New(grouplag.Config{
		KafkaOpts: kafkaOpts(t, c), Groups: c.ConsumerLag.Groups, Interval: 200 * time.Millisecond, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	glctx, glcancel := context.WithCancel(context.Background())
	gldone := make(chan error, 1)
	go func() { gldone <- gl.Run(glctx) }()
	defer func() { glcancel(); <-gldone }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelOnProgress atomic.Bool
	r, err := burst.NewRunner(burst.Options{
		Service: svc, GroupLag: gl, Metrics: burst.NewMetrics(reg, nil),
		Progress: func(p burst.Progress) {
			if cancelOnProgress.Load() && p.Sent > 0 {
				cancel()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}

	rep, err := r.Run(context.Background(), "leak", steps(t, "200/s for 1s"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Abort != nil || rep.Markers.Seen == 0 || rep.Markers.Seen != rep.Markers.Acked {
		t.Fatalf("first burst: abort %+v, markers %+v", rep.Abort, rep.Markers)
	}

	cancelOnProgress.Store(true)
	rep, err = r.Run(ctx, "leak", steps(t, "200/s for 20s"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Abort == nil || rep.Abort.Reason != "cancelled" {
		t.Fatalf("second burst: abort %+v, want cancelled", rep.Abort)
	}
}
