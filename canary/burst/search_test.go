package burst_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/canary/grouplag"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// testCapacity is the reference pipeline's processing capacity in the search
// tests: 8,000 events/s, or 2,000/s under the race detector, which slows the
// producer and the pipeline below 8,000/s on a small machine.
func testCapacity() float64 {
	if raceOn {
		return 2000
	}
	return 8000
}

// capacityBed is a reference pipeline with a processing capacity, kfake and
// a real PostgreSQL, a canary judging at the database, a consumer-group lag
// watcher and a runner.
type capacityBed struct {
	p   *testbed.Pipeline
	cfg *config.Config
	svc *canary.Service
	r   *burst.Runner
	reg *prometheus.Registry
	m   *burst.Metrics
}

func newCapacityBed(t *testing.T, faults testbed.Faults, mod func(*config.Config)) *capacityBed {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 3, PostgresDSN: dsn, Faults: faults, CommitInterval: 100 * time.Millisecond})
	c := config.Defaults()
	c.Kafka.Brokers = p.Brokers()
	c.Canary.Rate = 2
	c.Canary.Deadline = 8 * time.Second
	c.Canary.FreshnessBudget = 5 * time.Second
	c.Canary.Recovery.Enabled = false
	db := c.Observers["database"]
	db.SQL.DSN, db.PollInterval = dsn, 100*time.Millisecond
	c.Observers["database"] = db
	c.Bursts.Stage = "database"
	c.Bursts.MaxRate = 20000
	c.Bursts.Guard.Interval = 500 * time.Millisecond
	c.Bursts.Budgets.LagP50, c.Bursts.Budgets.LagP95, c.Bursts.Budgets.LagP99 = 3*time.Second, 4*time.Second, 5*time.Second
	// Steps of a few seconds: the pacer's own lateness on a busy machine is
	// a percent of them (TestGate's reason too).
	c.Bursts.Budgets.RateTolerance = 0.1
	c.Bursts.MarkerShare = 0.005
	c.ConsumerLag.Groups = []string{"capsule-ingest-consumer"}
	if mod != nil {
		mod(&c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	svc, err := canary.New(context.Background(), canary.Options{Config: &c, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	gl, err := grouplag.New(grouplag.Config{KafkaOpts: kafkaOpts(t, &c), Groups: c.ConsumerLag.Groups, Interval: time.Second, Timeout: 5 * time.Second, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gl.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	testenv.WaitFor(t, 30*time.Second, "canary ready", func() bool { return svc.Ready() == nil })
	m := burst.NewMetrics(reg, nil)
	r, err := burst.NewRunner(burst.Options{Service: svc, GroupLag: gl, Metrics: m,
		StepDone: func(s burst.SearchStep) {
			t.Logf("step %.0f/s: achieved %.0f/s, passed %v %s, lag p95 %.2fs, backlog %+.0f/s, sink %.0f/s, group lag %v..%v, %.1fs",
				s.TargetRate, s.AchievedRate, s.Passed, s.FailedCheck, s.LagP95, ptr(s.BacklogGrowth), ptr(s.SinkRate), ptrI(s.GroupLagStart), ptrI(s.GroupLagEnd), s.Seconds)
		}})
	if err != nil {
		t.Fatal(err)
	}
	return &capacityBed{p: p, cfg: &c, svc: svc, r: r, reg: reg, m: m}
}

func ptr(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

func ptrI(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}

func searchSpec(start, maxRate float64) config.Search {
	return config.Search{Start: start, Max: maxRate, StepDuration: 2 * time.Second, Precision: 0.1,
		Timeout: 3 * time.Minute, BacklogTolerance: 0.05}
}

// TestSearchFindsCapacity: against a pipeline that processes testCapacity
// events/s, the search reports a sustainable rate within 10% below it and a
// first failing rate above it, failed on backlog or lag, and no step above
// max.
func TestSearchFindsCapacity(t *testing.T) {
	c := testCapacity()
	b := newCapacityBed(t, testbed.Faults{Capacity: c}, nil)
	maxRate := 2 * c
	rep, err := b.r.Search(context.Background(), "cap", searchSpec(c/4, maxRate))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Summary())
	if rep.Aborted || rep.Sustainable == nil || rep.FirstFailing == nil {
		t.Fatalf("report %+v", rep)
	}
	if s := *rep.Sustainable; s > c || s < 0.9*c {
		t.Errorf("sustainable %.0f/s, want within 10%% below %.0f/s", s, c)
	}
	if f := *rep.FirstFailing; f <= c {
		t.Errorf("first failing %.0f/s, want above the capacity %.0f/s", f, c)
	}
	if rep.FailedCheck != burst.CheckBacklog && rep.FailedCheck != burst.CheckLag {
		t.Errorf("failed_check %q, want backlog or lag", rep.FailedCheck)
	}
	for _, s := range rep.Steps {
		if s.TargetRate > maxRate || s.AchievedRate > maxRate*1.1 {
			t.Errorf("step at %.0f/s (achieved %.0f/s) above max %.0f/s", s.TargetRate, s.AchievedRate, maxRate)
		}
	}
}
