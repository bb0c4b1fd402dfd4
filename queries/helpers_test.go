package queries

import (
	"context"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

// refAPI serves the reference SLO-Scout API with profile p.
func refAPI(t testing.TB, p testbed.APIProfile) (*testbed.API, string) {
	t.Helper()
	api, err := testbed.NewAPI(testbed.APIOptions{Profile: p, MaxHold: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return api, srv.URL
}

// configFor is the default configuration aimed at a reference API, with
// every probe and run disabled: tests enable what they use.
func configFor(api *testbed.API, base string) *config.Config {
	c := config.Defaults()
	c.Queries.BaseURL = base
	for name, p := range c.Queries.Probes {
		p.Enabled = false
		p.Rotate.JourneyIDs = api.JourneyIDs()
		p.Rotate.Services = api.Services()
		c.Queries.Probes[name] = p
	}
	for name, r := range c.Queries.Concurrency {
		r.Enabled = false
		r.Schedule = ""
		c.Queries.Concurrency[name] = r
	}
	return &c
}

func setProbe(c *config.Config, name string, f func(p *config.QueryProbe)) {
	p := c.Queries.Probes[name]
	f(&p)
	c.Queries.Probes[name] = p
}

// truthByID indexes the API's ground truth of answered requests by request
// id, once it holds every id of ids: the server records a request just after
// its client has the answer.
func truthByID(t testing.TB, api *testbed.API, ids []string) map[string]testbed.APIRecord {
	t.Helper()
	return truthFrom(t, api.Records, ids)
}

// truthFrom is truthByID for any source of records (an API in another
// process).
func truthFrom(t testing.TB, records func() []testbed.APIRecord, ids []string) map[string]testbed.APIRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := map[string]testbed.APIRecord{}
		for _, r := range records() {
			if r.ID != "" && r.Status != 0 {
				m[r.ID] = r
			}
		}
		missing := ""
		for _, id := range ids {
			if _, ok := m[id]; !ok {
				missing = id
				break
			}
		}
		if missing == "" {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s is not in the server's ground truth", missing)
		}
		time.Sleep(time.Millisecond)
	}
}

// matched pairs measured latencies with the server's handling times, request
// by request, and returns both sets and the per-request client overhead, all
// in seconds.
type matched struct {
	measured, truth, overhead []float64
}

func (m *matched) add(measured time.Duration, rec testbed.APIRecord) {
	m.measured = append(m.measured, measured.Seconds())
	m.truth = append(m.truth, rec.Handling.Seconds())
	m.overhead = append(m.overhead, (measured - rec.Handling).Seconds())
}

// compare fails the test unless measured p50 and p95 are within tol of the
// ground truth's.
func (m *matched) compare(t *testing.T, what string, tol time.Duration) {
	t.Helper()
	meas, truth := percentiles(slices.Clone(m.measured)), percentiles(slices.Clone(m.truth))
	over := percentiles(slices.Clone(m.overhead))
	t.Logf("%s: %d requests; measured p50 %.2fms p95 %.2fms; truth p50 %.2fms p95 %.2fms; client overhead p50 %.3fms p99 %.3fms max %.3fms",
		what, len(m.measured), 1e3*meas.P50, 1e3*meas.P95, 1e3*truth.P50, 1e3*truth.P95, 1e3*over.P50, 1e3*over.P99, 1e3*over.Max)
	for _, q := range []struct {
		name        string
		meas, truth float64
	}{{"p50", meas.P50, truth.P50}, {"p95", meas.P95, truth.P95}} {
		if d := q.meas - q.truth; d < -tol.Seconds() || d > tol.Seconds() {
			t.Errorf("%s: measured %s %.2fms, ground truth %.2fms: %.2fms apart, over %s", what, q.name, 1e3*q.meas, 1e3*q.truth, 1e3*d, tol)
		}
	}
	if over.P50 < 0 {
		t.Errorf("%s: measured latency below the server's own handling time (overhead p50 %.3fms)", what, 1e3*over.P50)
	}
}

// sampleLog collects RunLoad samples.
type sampleLog struct {
	mu      sync.Mutex
	samples []Sample
}

func (l *sampleLog) observe(s Sample) {
	l.mu.Lock()
	l.samples = append(l.samples, s)
	l.mu.Unlock()
}

// newProbe builds the probe name of c with clients-sized pools.
func newProbe(t testing.TB, c *config.Config, name string, clients int) probes.QueryProbe {
	t.Helper()
	p, err := probes.NewQuery(context.Background(), name, c.Queries.Probes[name],
		probes.QueryOptions{BaseURL: c.Queries.BaseURL, Auth: c.Queries.Auth, Clients: clients})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
