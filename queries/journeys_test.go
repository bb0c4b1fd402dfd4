package queries

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

// hidingAPI serves the reference API, whose journeys answers are empty
// while hide is set: SLO-Scout before it has discovered any journey. It
// records the journey of every SLI request.
type hidingAPI struct {
	*testbed.API
	base  string
	hide  atomic.Bool
	mu    sync.Mutex
	asked []string // journey_id of each SLI request
}

func newHidingAPI(t *testing.T) *hidingAPI {
	t.Helper()
	api, err := testbed.NewAPI(testbed.APIOptions{MaxHold: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a := &hidingAPI{API: api}
	h := api.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/journeys":
			if a.hide.Load() {
				w.Write([]byte(`{"journeys":[],"total_count":0}`))
				return
			}
		case "/api/v1/sli":
			a.mu.Lock()
			a.asked = append(a.asked, r.URL.Query().Get("journey_id"))
			a.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	a.base = srv.URL
	return a
}

// journeysAsked returns the distinct journeys SLI requests asked for.
func (a *hidingAPI) journeysAsked() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, j := range a.asked {
		if !slices.Contains(out, j) {
			out = append(out, j)
		}
	}
	return out
}

// discoveringConfig is configFor with the SLI probe enabled and taking its
// journeys from discovery of the API's services, refreshed every refresh.
func discoveringConfig(t *testing.T, api *testbed.API, base string, refresh time.Duration) *config.Config {
	t.Helper()
	c := configFor(api, base)
	c.Queries.Evidence = config.Evidence{}
	setProbe(c, "sli", func(p *config.QueryProbe) {
		p.Enabled, p.Interval = true, 20*time.Millisecond
		p.Rotate.JourneyIDs = nil
	})
	c.Queries.JourneyDiscovery.Services = api.Services()
	c.Queries.JourneyDiscovery.Refresh = refresh
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNoJourneysNotCounted: while discovery finds no journey, the SLI probe
// sends nothing; its requests end as no_journeys, count in neither side of
// the query SLI nor in the latency histogram, and not_measuring is 1. Once
// journeys appear, it queries them and measures again.
func TestNoJourneysNotCounted(t *testing.T) {
	t.Parallel()
	api := newHidingAPI(t)
	api.hide.Store(true)
	c := discoveringConfig(t, api.API, api.base, 50*time.Millisecond)

	reg := prometheus.NewRegistry()
	s, err := New(context.Background(), Options{Config: c, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	m, dm := s.metrics, s.dm
	noJourneys := m.Requests.WithLabelValues("sli", probes.OutcomeNoJourneys)
	testenv.WaitFor(t, 10*time.Second, "5 no_journeys requests", func() bool { return testutil.ToFloat64(noJourneys) >= 5 })
	if n := testutil.ToFloat64(m.SLITotal.WithLabelValues("sli")); n != 0 {
		t.Errorf("SLI total %v while not measuring", n)
	}
	if n := testutil.ToFloat64(m.SLIGood.WithLabelValues("sli")); n != 0 {
		t.Errorf("SLI good %v while not measuring", n)
	}
	if n := histogramCount(t, m, "sli"); n != 0 {
		t.Errorf("%d latencies observed while not measuring", n)
	}
	if v := testutil.ToFloat64(dm.NotMeasuring.WithLabelValues("sli")); v != 1 {
		t.Errorf("not_measuring %v, want 1", v)
	}
	if v := testutil.ToFloat64(dm.Refreshes.WithLabelValues(probes.DiscoveryNone)); v < 1 {
		t.Errorf("discoveries{none} %v", v)
	}
	if n := api.Stats().ByEndpoint["sli"]; n != 0 {
		t.Errorf("%d SLI requests sent without a journey", n)
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready while not measuring: %v (the metrics say it, not readiness)", err)
	}

	// Journeys appear: the probe finds them within the retry and measures.
	api.hide.Store(false)
	testenv.WaitFor(t, 10*time.Second, "5 measured requests", func() bool { return testutil.ToFloat64(m.SLIGood.WithLabelValues("sli")) >= 5 })
	if v := testutil.ToFloat64(dm.NotMeasuring.WithLabelValues("sli")); v != 0 {
		t.Errorf("not_measuring %v, want 0", v)
	}
	if v := testutil.ToFloat64(dm.Known); v != float64(len(api.JourneyIDs())) {
		t.Errorf("journeys discovered %v, want %d", v, len(api.JourneyIDs()))
	}
	for _, j := range api.journeysAsked() {
		if !slices.Contains(api.JourneyIDs(), j) {
			t.Errorf("SLI request for journey %q, not one the API knows", j)
		}
	}
}

// histogramCount is how many latencies the probe's histogram holds.
func histogramCount(t *testing.T, m *Metrics, probe string) uint64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Latency.WithLabelValues(probe).(prometheus.Histogram).Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram().GetSampleCount()
}

// TestDiscoveredJourneysRunOnce: a concurrency run whose probe discovers
// its journeys queries real ones; with none to be had, it does not run.
func TestDiscoveredJourneysRunOnce(t *testing.T) {
	t.Parallel()
	api := newHidingAPI(t)
	c := discoveringConfig(t, api.API, api.base, time.Minute)
	r := config.ConcurrencyRunDefaults()
	r.Clients, r.Rate, r.Duration, r.BudgetP95 = 5, 100, 200*time.Millisecond, time.Second
	c.Queries.Concurrency["small"] = r

	rep, err := RunOnce(context.Background(), c, OnceOptions{Runs: []string{"small"}})
	if err != nil || !rep.Passed() || rep.Runs[0].Outcomes[probes.OutcomeSuccess] != 20 {
		t.Fatalf("run: %+v %v", rep, err)
	}
	used := api.journeysAsked()
	if len(used) < 2 || slices.ContainsFunc(used, func(j string) bool { return !slices.Contains(api.JourneyIDs(), j) }) {
		t.Errorf("the run queried journeys %q, want several of %q", used, api.JourneyIDs())
	}

	api.hide.Store(true)
	before := api.Stats().ByEndpoint["sli"]
	_, err = RunOnce(context.Background(), c, OnceOptions{Runs: []string{"small"}})
	if err == nil || !strings.Contains(err.Error(), "no journey ids to query") || !strings.Contains(err.Error(), "found none") {
		t.Errorf("run without journeys: %v", err)
	}
	if n := api.Stats().ByEndpoint["sli"] - before; n != 0 {
		t.Errorf("%d SLI requests sent without a journey", n)
	}
}
