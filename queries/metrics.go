package queries

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/slo-scout/slo-canary/probes"
)

// LatencyBuckets are the classic buckets of the query latency histogram: 5 ms
// to 30 s, dense around the budgets SLO-Scout promises (0.5 s, 1 s, 2 s, 3 s,
// 5 s). Native buckets sit beside them.
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 15, 20, 30}

// Verdicts are the verdict label values of concurrency_runs_total.
var Verdicts = []string{VerdictPass, VerdictFail}

// Metrics are the query probes' series. Counters and histograms start at zero
// for every probe, outcome, run and verdict. The evidence and last-run gauges
// appear once there is something to report: a 0 there would read as "no
// overhead" or "failed", not as "not measured yet".
//
// Percentiles computed here are gauges labelled "percentile", not
// "quantile": Prometheus's tooling reserves "quantile" for summaries
// (promtool check metrics rejects it on a gauge).
type Metrics struct {
	Latency        *prometheus.HistogramVec
	Requests       *prometheus.CounterVec
	SLIGood        *prometheus.CounterVec
	SLITotal       *prometheus.CounterVec
	Budget         *prometheus.GaugeVec
	Overhead       *prometheus.GaugeVec
	OverheadBudget prometheus.Gauge
	OverheadOK     *prometheus.GaugeVec // no labels: absent until WithLabelValues()
	RunLatency     *prometheus.GaugeVec
	RunSuccess     *prometheus.GaugeVec
	RunVerdict     *prometheus.GaugeVec
	RunTimestamp   *prometheus.GaugeVec
	RunRequests    *prometheus.GaugeVec
	Runs           *prometheus.CounterVec
}

// NewMetrics registers the query metrics with reg for the given probes (with
// their latency budgets) and concurrency runs.
func NewMetrics(reg prometheus.Registerer, budgets map[string]time.Duration, runs []string) *Metrics {
	f := promauto.With(reg)
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: name, Help: help}, labels)
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		Latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "slo_canary", Name: "query_latency_seconds",
			Help:                            "Latency of continuous query probes, every outcome, from when each request was due (open-loop). Exemplars carry the request id and the rotated journey or service.",
			Buckets:                         LatencyBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"probe"}),
		Requests: counter("query_requests_total", "Continuous query probe requests by outcome: success, http_5xx, http_4xx, timeout, bad_body (not the answer expected), connect_error.", "probe", "outcome"),
		SLIGood:  counter("query_sli_good_total", "Query probe requests that succeeded within the probe's latency budget (SLI good events).", "probe"),
		SLITotal: counter("query_sli_total", "Query probe requests judged against the probe's latency budget: every request (SLI total events).", "probe"),
		Budget:   gauge("query_latency_budget_seconds", "The latency budget a query probe's SLI counters judge against.", "probe"),
		Overhead: gauge("evidence_overhead_seconds", "Vector-search overhead: the latency percentile of the SLI probe with evidence minus the same percentile without, over the evidence window.", "percentile"),
		OverheadBudget: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "evidence_overhead_budget_seconds",
			Help: "The budget the evidence overhead is judged against, at the 95th percentile."}),
		OverheadOK:   gauge("evidence_overhead_within_budget", "1 if the evidence overhead at the 95th percentile is under its budget, 0 if not; absent until measured."),
		RunLatency:   gauge("concurrency_last_latency_seconds", "Latency percentiles (percentile 1: the maximum) of the latest concurrency run, open-loop: from when each request was due.", "run", "percentile"),
		RunSuccess:   gauge("concurrency_last_success_ratio", "Share of the latest concurrency run's requests that succeeded.", "run"),
		RunVerdict:   gauge("concurrency_last_verdict", "Verdict of the latest concurrency run against its budgets: 1 pass, 0 fail.", "run"),
		RunTimestamp: gauge("concurrency_last_run_timestamp_seconds", "Unix time the latest concurrency run ended.", "run"),
		RunRequests:  gauge("concurrency_last_requests", "Requests of the latest concurrency run, by outcome.", "run", "outcome"),
		Runs:         counter("concurrency_runs_total", "Concurrency runs completed, by verdict.", "run", "verdict"),
	}
	for probe, budget := range budgets {
		m.Latency.WithLabelValues(probe)
		for _, o := range probes.QueryOutcomes {
			m.Requests.WithLabelValues(probe, o)
		}
		m.SLIGood.WithLabelValues(probe)
		m.SLITotal.WithLabelValues(probe)
		m.Budget.WithLabelValues(probe).Set(budget.Seconds())
	}
	for _, run := range runs {
		for _, v := range Verdicts {
			m.Runs.WithLabelValues(run, v)
		}
	}
	return m
}
