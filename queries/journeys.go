package queries

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/probes"
)

// discoveryMetrics are the series of journey discovery, registered only
// while a probe takes its journeys from it.
type discoveryMetrics struct {
	// NotMeasuring is 1 while a probe has no journey id to query: its
	// requests are not sent (outcome no_journeys) and its SLI counts
	// nothing. SLOCanaryQueryProbesNotMeasuring is judged on it.
	NotMeasuring *prometheus.GaugeVec
	Known        prometheus.Gauge
	Refreshes    *prometheus.CounterVec
}

func newDiscoveryMetrics(reg prometheus.Registerer, users []string) *discoveryMetrics {
	f := promauto.With(reg)
	m := &discoveryMetrics{
		NotMeasuring: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "query_probe_not_measuring",
			Help: "1 while a query probe that takes its journeys from journey discovery has none to query: its requests are not sent (outcome no_journeys) and count in no SLI; 0 while it measures. Only for such probes."},
			[]string{"probe"}),
		Known: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "query_journeys_discovered",
			Help: "Journey ids journey discovery (queries.journey_discovery) knows now, for the probes that rotate through them."}),
		Refreshes: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "query_journey_discoveries_total",
			Help: "Journey discovery refreshes by result: found (journeys), none (every service answered, no journey), error (a request failed; the journeys found before are kept)."},
			[]string{"result"}),
	}
	for _, p := range users {
		m.NotMeasuring.WithLabelValues(p)
	}
	for _, r := range probes.DiscoveryResults {
		m.Refreshes.WithLabelValues(r)
	}
	return m
}

// newDiscovery builds journey discovery for the probes of q that use it,
// with its metrics on reg (nil: none); nil if no enabled probe does.
func newDiscovery(q config.Queries, reg prometheus.Registerer, log *slog.Logger) (*probes.JourneyDiscovery, *discoveryMetrics, error) {
	var users []string
	for _, name := range q.EnabledProbes() {
		if q.Probes[name].DiscoversJourneys() {
			users = append(users, name)
		}
	}
	if len(users) == 0 {
		return nil, nil, nil
	}
	var m *discoveryMetrics
	opts := probes.JourneyDiscoveryOptions{BaseURL: q.BaseURL, Auth: q.Auth, Logger: log}
	if reg != nil {
		m = newDiscoveryMetrics(reg, users)
		opts.Observe = func(result string, known int) {
			m.Refreshes.WithLabelValues(result).Inc()
			m.Known.Set(float64(known))
		}
	}
	d, err := probes.NewJourneyDiscovery(q.JourneyDiscovery, opts)
	if err != nil {
		return nil, nil, err
	}
	return d, m, nil
}

// errNoJourneys: a concurrency run's probe takes its journeys from
// discovery, and there are none to query.
var errNoJourneys = errors.New("no journey ids to query")

// runJourneys returns the journey ids a concurrency run of probe pc
// rotates through: nil if it lists its own; else those of running (the
// daemon's discovery), or of one discovery made now. None is an error: a
// run that could send nothing measures nothing.
func runJourneys(ctx context.Context, q config.Queries, pc config.QueryProbe, running func() []string, log *slog.Logger) ([]string, error) {
	if !pc.DiscoversJourneys() {
		return nil, nil
	}
	var ids []string
	if running != nil {
		ids = running()
	} else {
		d, err := probes.NewJourneyDiscovery(q.JourneyDiscovery, probes.JourneyDiscoveryOptions{BaseURL: q.BaseURL, Auth: q.Auth, Logger: log})
		if err != nil {
			return nil, err
		}
		defer d.Close()
		if _, err := d.Refresh(ctx); err != nil {
			return nil, fmt.Errorf("%w: journey discovery (%s) failed: %w", errNoJourneys, d, err)
		}
		ids = d.IDs()
		if len(ids) == 0 {
			return nil, fmt.Errorf("%w: journey discovery (%s) found none", errNoJourneys, d)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: journey discovery has found none", errNoJourneys)
	}
	return ids, nil
}
