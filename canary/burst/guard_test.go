package burst_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/sched"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// kafkaOnly is a reference pipeline without a database and a canary judging
// bursts at the capsule topic: enough for guards and scheduling, and cheap.
func kafkaOnly(t *testing.T, mod func(*config.Config)) (*testbed.Pipeline, *config.Config, *canary.Service) {
	t.Helper()
	p := kafkaPipeline(t)
	c, svc := canaryOn(t, p, mod)
	return p, c, svc
}

// kafkaPipeline is kafkaOnly's pipeline: three partitions, no database.
func kafkaPipeline(t *testing.T) *testbed.Pipeline {
	t.Helper()
	p, err := testbed.NewPipeline(context.Background(), testbed.PipelineConfig{Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		p.Close()
	})
	return p
}

// canaryOn is kafkaOnly's canary, running on p.
func canaryOn(t *testing.T, p *testbed.Pipeline, mod func(*config.Config)) (*config.Config, *canary.Service) {
	t.Helper()
	c := config.Defaults()
	c.Kafka.Brokers = p.Brokers()
	c.Canary.Rate = 2
	c.Canary.Deadline = 20 * time.Second
	c.Canary.FreshnessBudget = 5 * time.Second
	c.Canary.Recovery.Enabled = false
	db := c.Observers["database"]
	db.Enabled = false
	c.Observers["database"] = db
	caps := c.Observers["capsules"]
	caps.Enabled, caps.Deadline, caps.PollInterval = true, 0, 100*time.Millisecond
	c.Observers["capsules"] = caps
	c.Bursts.Stage = "capsules"
	c.Bursts.Guard.Interval = 500 * time.Millisecond
	c.ConsumerLag.Groups = []string{"capsule-ingest-consumer"}
	if mod != nil {
		mod(&c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	svc, err := canary.New(context.Background(), canary.Options{Config: &c, Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	sdone := make(chan error, 1)
	go func() { sdone <- svc.Run(sctx) }()
	t.Cleanup(func() {
		scancel()
		<-sdone
	})
	testenv.WaitFor(t, 30*time.Second, "canary ready", func() bool { return svc.Ready() == nil })
	return &c, svc
}

// TestBurstGuardAborts: the pipeline stalls two seconds into a burst; the
// marker-lag guard (2 s) aborts it within one guard interval of the oldest
// unseen marker passing the threshold. A second burst, while the pipeline is
// still stalled, does not start at all.
func TestBurstGuardAborts(t *testing.T) {
	t.Parallel()
	p, cfg, svc := kafkaOnly(t, func(c *config.Config) { c.Bursts.Guard.MaxMarkerLag = 2 * time.Second })
	reg := prometheus.NewRegistry()
	m := burst.NewMetrics(reg, []string{"guarded"})
	r, err := burst.NewRunner(burst.Options{Service: svc, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	stalled := make(chan struct{})
	go func() {
		time.Sleep(2 * time.Second) // the fault's schedule
		p.Stall()
		close(stalled)
	}()
	defer p.Resume()
	rep, err := r.Run(context.Background(), "guarded", steps(t, "500/s for 60s"))
	<-stalled
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != burst.VerdictAborted || rep.Abort == nil || rep.Abort.Reason != "marker_lag" {
		t.Fatalf("verdict %s, abort %+v; want aborted by marker_lag", rep.Verdict, rep.Abort)
	}
	interval := cfg.Bursts.Guard.Interval.Seconds()
	// What the guard read is the oldest unseen marker's age: it passed the
	// threshold at most one interval (and a little scheduling) earlier.
	if over := rep.Abort.Value - rep.Abort.Threshold; over <= 0 || over > interval+0.25 {
		t.Errorf("aborted %.3fs after the lag passed the guard, want within one interval (%.1fs)", over, interval)
	}
	if el := rep.LoadEnd.Sub(rep.Started); el > 10*time.Second || rep.Events.Sent >= 30000 {
		t.Errorf("load ran %s, %d events: the abort did not stop it", el, rep.Events.Sent)
	}
	if !strings.Contains(strings.Join(rep.Reasons, "\n"), "max_marker_lag") {
		t.Errorf("reasons %q do not say why", rep.Reasons)
	}

	rep2, err := r.Run(context.Background(), "guarded", steps(t, "500/s for 60s"))
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Verdict != burst.VerdictAborted || rep2.Abort.Reason != "unhealthy_at_start" || rep2.Events.Sent != 0 {
		t.Errorf("second burst: verdict %s, abort %+v, %d events sent; want not started", rep2.Verdict, rep2.Abort, rep2.Events.Sent)
	}
	if got := testutil.ToFloat64(m.Bursts.WithLabelValues("guarded", "aborted")); got != 2 {
		t.Errorf("bursts_total{aborted} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.Aborts.WithLabelValues("marker_lag")); got != 1 {
		t.Errorf("burst_aborts_total{marker_lag} = %v", got)
	}
}

// TestBurstSchedule: two burst profiles on overlapping schedules never run
// together (the second is skipped and counted), and a burst that panics is
// counted while the scheduler goes on to run the next one.
func TestBurstSchedule(t *testing.T) {
	t.Parallel()
	_, _, svc := kafkaOnly(t, func(c *config.Config) {
		c.Bursts.Profiles = map[string]config.BurstProfile{
			"a": {Schedule: "@every 1s", Steps: []string{"200/s for 1500ms"}},
			"b": {Schedule: "@every 1s", Steps: []string{"200/s for 1500ms"}},
		}
	})
	reg := prometheus.NewRegistry()
	m := burst.NewMetrics(reg, []string{"a", "b"})
	var running, most, panics atomic.Int32
	var runs atomic.Int32
	r, err := burst.NewRunner(burst.Options{Service: svc, Metrics: m, Progress: func(p burst.Progress) {
		if p.Profile == "boom" {
			panic("boom")
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := r.Jobs()
	if err != nil || len(jobs) != 2 {
		t.Fatalf("jobs %v, %v", jobs, err)
	}
	sc := sched.New(reg, slog.New(slog.DiscardHandler))
	for _, j := range jobs {
		run := j.Run
		j.Run = func(ctx context.Context) error {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				old := most.Load()
				if n <= old || most.CompareAndSwap(old, n) {
					break
				}
			}
			defer runs.Add(1)
			return run(ctx)
		}
		if err := sc.Add(j); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	testenv.WaitFor(t, 30*time.Second, "three scheduled bursts", func() bool { return runs.Load() >= 3 })

	// A panicking burst, on demand in the same group, is recovered.
	boom := r.Job("boom", steps(t, "100/s for 3s"))
	ran, err := sc.TryRun(context.Background(), boom)
	for !ran { // a scheduled burst holds the group: try again when it ends
		time.Sleep(20 * time.Millisecond)
		ran, err = sc.TryRun(context.Background(), boom)
	}
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("panicking burst: %v", err)
	}
	panics.Store(int32(testenv.MetricValue(t, reg, "slo_canary_scheduled_runs_total", map[string]string{"task": "burst_boom", "result": "panic"})))
	before := runs.Load()
	testenv.WaitFor(t, 30*time.Second, "a burst after the panic", func() bool { return runs.Load() > before })
	cancel()
	<-done

	if most.Load() != 1 {
		t.Errorf("%d bursts ran at once", most.Load())
	}
	skipped := testenv.MetricValue(t, reg, "slo_canary_scheduled_runs_total", map[string]string{"task": "burst_a", "result": "skipped"}) +
		testenv.MetricValue(t, reg, "slo_canary_scheduled_runs_total", map[string]string{"task": "burst_b", "result": "skipped"})
	if skipped == 0 {
		t.Error("no skipped run counted, yet both profiles fire every second and a burst lasts longer")
	}
	if panics.Load() != 1 {
		t.Errorf("panics counted: %d, want 1", panics.Load())
	}
	if got := testutil.ToFloat64(m.Running); got != 0 {
		t.Errorf("burst_running = %v after the bursts", got)
	}
}
