package queries

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestServiceNoGoroutineLeak: a service that ran its continuous probes, the
// evidence overhead loop and a concurrency run on demand against the
// reference API leaves no goroutine (probe clients, idle HTTP connections,
// run workers) behind once Run has returned.
func TestServiceNoGoroutineLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	api, err := testbed.NewAPI(testbed.APIOptions{MaxHold: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close() // deferred after VerifyNone: closed before it checks

	c := configFor(api, srv.URL)
	for _, name := range []string{"sli", "sli_evidence"} {
		setProbe(c, name, func(p *config.QueryProbe) { p.Enabled, p.Interval = true, 20*time.Millisecond })
	}
	r := config.ConcurrencyRunDefaults()
	r.Clients, r.Rate, r.Duration = 4, 40, 200*time.Millisecond
	c.Queries.Concurrency["leak"] = r
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), Options{Config: c, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	res, ran, err := s.RunNow(ctx, "leak")
	if err != nil || !ran || res.Requests == 0 {
		cancel()
		<-done
		t.Fatalf("run on demand: ran %v, %+v, %v", ran, res, err)
	}
	testenv.WaitFor(t, 10*time.Second, "both continuous probes answered 3 times", func() bool {
		return testutil.ToFloat64(s.metrics.SLITotal.WithLabelValues("sli")) >= 3 &&
			testutil.ToFloat64(s.metrics.SLITotal.WithLabelValues("sli_evidence")) >= 3
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
