package canary

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/probes"
)

// observerStats exports the observers' own counters (probes.StatsReporter)
// at scrape time: records read, and every kind of bad input skipped, so that
// nothing an observer drops goes uncounted.
type observerStats struct {
	stages  []*stage
	records *prometheus.Desc
	bad     *prometheus.Desc
	queries *prometheus.Desc
}

// BadInputKinds are the kind label values of slo_canary_observer_bad_input_total.
var BadInputKinds = []string{"decode_error", "bad_row", "oversized", "buffer_dropped", "fetch_error"}

func newObserverStats(stages []*stage) *observerStats {
	return &observerStats{
		stages: stages,
		records: prometheus.NewDesc("slo_canary_observer_records_total",
			"Records or rows the stage's observer read (Kafka records consumed, SQL rows returned).", []string{"stage"}, nil),
		bad: prometheus.NewDesc("slo_canary_observer_bad_input_total",
			"Input the stage's observer skipped, by kind: undecodable records, bad rows, oversized records, sightings dropped from a full buffer, fetch errors.",
			[]string{"stage", "kind"}, nil),
		queries: prometheus.NewDesc("slo_canary_observer_queries_total",
			"SQL statements the stage's observer sent.", []string{"stage"}, nil),
	}
}

func (c *observerStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.records
	ch <- c.bad
	ch <- c.queries
}

func (c *observerStats) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.stages {
		r, ok := st.obs.(probes.StatsReporter)
		if !ok {
			continue
		}
		s := r.Stats()
		ch <- prometheus.MustNewConstMetric(c.records, prometheus.CounterValue, float64(s.Records+s.Rows), st.name)
		ch <- prometheus.MustNewConstMetric(c.queries, prometheus.CounterValue, float64(s.Queries), st.name)
		for i, v := range []uint64{s.DecodeErrors, s.BadRows, s.Oversized, s.BufferDropped, s.FetchErrors} {
			ch <- prometheus.MustNewConstMetric(c.bad, prometheus.CounterValue, float64(v), st.name, BadInputKinds[i])
		}
	}
}
