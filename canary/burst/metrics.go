package burst

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/slo-scout/slo-canary/canary"
)

// Burst verdicts, the bounded values of the verdict label.
const (
	VerdictPass    = "pass"
	VerdictFail    = "fail"
	VerdictAborted = "aborted"
)

var (
	burstVerdicts = []string{VerdictPass, VerdictFail, VerdictAborted}
	// AbortReasons are the bounded values of slo_canary_burst_aborts_total's
	// reason label.
	AbortReasons = []string{"unhealthy_at_start", "marker_lag", "group_lag_records", "group_lag_seconds",
		"produce_errors", "cap", "cancelled", ReasonMemberLost}
)

// Metrics are the series of scheduled and on-demand bursts. The last_*
// gauges describe the latest finished burst of each profile; before the first
// one, last_timestamp_seconds is 0 and the others mean nothing.
type Metrics struct {
	Running          prometheus.Gauge
	Bursts           *prometheus.CounterVec
	Aborts           *prometheus.CounterVec
	LastVerdict      *prometheus.GaugeVec
	LastLag          *lastLag
	LastLoss         *prometheus.GaugeVec
	LastRate         *prometheus.GaugeVec
	LastCatchUp      *prometheus.GaugeVec
	LastTimestamp    *prometheus.GaugeVec
	EventsSent       prometheus.Counter
	MarkersSent      prometheus.Counter
	ProduceFailures  *prometheus.CounterVec
	LastProcessRate  *prometheus.GaugeVec
	LastMarkersSeen  *prometheus.GaugeVec
	LastMarkersTotal *prometheus.GaugeVec

	// Capacity searches (Runner.Search).
	CapSustainable *prometheus.GaugeVec
	CapPrevious    *prometheus.GaugeVec
	CapHeadroom    *prometheus.GaugeVec
	CapTimestamp   *prometheus.GaugeVec
	CapSearches    *prometheus.CounterVec
	CapStepRate    *prometheus.GaugeVec
	CapStepLag     *prometheus.GaugeVec
	CapStepPassed  *prometheus.GaugeVec
	searchMu       sync.Mutex
	searchDone     map[string]float64 // the latest complete search's figure, per profile
}

// NewMetrics registers the burst series with reg, initialised at zero
// for every profile named.
func NewMetrics(reg prometheus.Registerer, profiles []string) *Metrics {
	f := promauto.With(reg)
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		Running: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "burst_running",
			Help: "1 while a burst runs (load, then the wait for its markers)."}),
		Bursts: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "bursts_total",
			Help: "Finished bursts by profile and verdict: pass, fail (a budget was breached), aborted (a guard tripped, or the pipeline was unhealthy at start)."},
			[]string{"profile", "verdict"}),
		Aborts: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "burst_aborts_total",
			Help: "Aborted bursts by reason."}, []string{"reason"}),
		LastVerdict: g("burst_last_verdict",
			"Verdict of the profile's latest burst: 1 pass, 0 fail or aborted. Meaningful once burst_last_timestamp_seconds is set.", "profile"),
		LastLag: newLastLag(),
		LastLoss: g("burst_last_loss_ratio",
			"Share of the latest burst's markers lost at the judged stage.", "profile"),
		LastRate: g("burst_last_achieved_rate",
			"Events per second the latest burst produced and had acknowledged, over its whole length.", "profile"),
		LastCatchUp: g("burst_last_catchup_seconds",
			"Time from the end of the latest burst's load until its last marker was visible at the judged stage.", "profile"),
		LastTimestamp: g("burst_last_timestamp_seconds",
			"Unix time the profile's latest burst finished.", "profile"),
		EventsSent: f.NewCounter(prometheus.CounterOpts{Namespace: "slo_canary", Name: "burst_events_sent_total",
			Help: "Burst events (load and markers) produced and acknowledged by Kafka."}),
		MarkersSent: f.NewCounter(prometheus.CounterOpts{Namespace: "slo_canary", Name: "burst_markers_sent_total",
			Help: "Markers produced inside bursts and acknowledged by Kafka; they are tracked, and counted in the stage series, like steady markers."}),
		ProduceFailures: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "burst_produce_failures_total",
			Help: "Burst events whose produce failed, by reason."}, []string{"reason"}),
		LastProcessRate: g("burst_last_processing_rate",
			"Events per second the pipeline's consumer groups committed on the ingest topic during the latest burst and its catch-up (0 when not countable).", "profile"),
		LastMarkersSeen: g("burst_last_markers_seen",
			"Markers of the latest burst seen at the judged stage.", "profile"),
		LastMarkersTotal: g("burst_last_markers",
			"Markers of the latest burst acknowledged by Kafka.", "profile"),
		CapSustainable: g("capacity_sustainable_events_per_second",
			"Highest rate the profile's latest complete capacity search sustained with every check passing (0: none did); an aborted search leaves it unchanged.", "profile"),
		CapPrevious: g("capacity_previous_sustainable_events_per_second",
			"capacity_sustainable_events_per_second as the search before the latest complete one found it (0 before there were two).", "profile"),
		CapHeadroom: g("capacity_headroom_ratio",
			"capacity_sustainable_events_per_second over bursts.contract_rate: 2 means the pipeline sustains twice its promised rate.", "profile"),
		CapTimestamp: g("capacity_last_search_timestamp_seconds",
			"Unix time the profile's latest capacity search finished, whatever its outcome (0: none yet).", "profile"),
		CapSearches: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "capacity_searches_total",
			Help: "Finished capacity searches by profile and outcome: found, at_least_max (every step up to max passed), none (no step passed), aborted (a guard, the time cap or a shutdown: no figure)."},
			[]string{"profile", "outcome"}),
		CapStepRate: g("capacity_last_search_step_rate_events_per_second",
			"Target rate of each step of the profile's latest capacity search, by step number.", "profile", "step"),
		CapStepLag: g("capacity_last_search_step_lag_p95_seconds",
			"Marker lag p95 of each step of the profile's latest capacity search, by step number.", "profile", "step"),
		CapStepPassed: g("capacity_last_search_step_passed",
			"1 if the step of the profile's latest capacity search passed, 0 if it failed.", "profile", "step"),
	}
	for _, r := range canary.ProduceFailureReasons {
		m.ProduceFailures.WithLabelValues(r)
	}
	for _, r := range AbortReasons {
		m.Aborts.WithLabelValues(r)
	}
	reg.MustRegister(m.LastLag)
	for _, p := range profiles {
		m.InitProfile(p)
	}
	return m
}

// InitProfile starts a profile's series at zero (a profile run on demand
// gets them on its first burst).
func (m *Metrics) InitProfile(p string) {
	for _, v := range burstVerdicts {
		m.Bursts.WithLabelValues(p, v)
	}
	m.LastLag.init(p)
	for _, g := range []*prometheus.GaugeVec{m.LastVerdict, m.LastLoss, m.LastRate, m.LastCatchUp, m.LastTimestamp,
		m.LastProcessRate, m.LastMarkersSeen, m.LastMarkersTotal} {
		g.WithLabelValues(p)
	}
}

// record publishes a finished burst.
func (m *Metrics) record(r *Report) {
	p := r.Profile
	m.InitProfile(p)
	m.Bursts.WithLabelValues(p, r.Verdict).Inc()
	pass := 0.0
	if r.Verdict == VerdictPass {
		pass = 1
	}
	m.LastVerdict.WithLabelValues(p).Set(pass)
	m.LastLag.set(p, r.Lag)
	m.LastLoss.WithLabelValues(p).Set(r.LossRatio)
	m.LastRate.WithLabelValues(p).Set(r.AchievedRate)
	m.LastCatchUp.WithLabelValues(p).Set(r.CatchUpSeconds)
	m.LastTimestamp.WithLabelValues(p).Set(float64(r.Finished.UnixNano()) / 1e9)
	rate := 0.0
	if r.Processing.EventsPerSecond != nil {
		rate = *r.Processing.EventsPerSecond
	}
	m.LastProcessRate.WithLabelValues(p).Set(rate)
	m.LastMarkersSeen.WithLabelValues(p).Set(float64(r.Markers.Seen))
	m.LastMarkersTotal.WithLabelValues(p).Set(float64(r.Markers.Acked))
	if r.Abort != nil {
		m.Aborts.WithLabelValues(r.Abort.Reason).Inc()
	}
}

// lastLag exports the latest burst's lag percentiles per profile as a
// summary, slo_canary_burst_last_lag_seconds{profile,quantile}: a gauge with a
// quantile label would be a lie to Prometheus's tooling (promtool rejects it).
// Its _count is the markers measured, its _sum their total lag.
type lastLag struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	last map[string]LagSummary
	sums map[string]float64
}

func newLastLag() *lastLag {
	return &lastLag{
		desc: prometheus.NewDesc("slo_canary_burst_last_lag_seconds",
			"Lag percentiles (0.5, 0.95, 0.99) of the markers sent during the profile's latest burst, at the judged stage.",
			[]string{"profile"}, nil),
		last: map[string]LagSummary{},
		sums: map[string]float64{},
	}
}

func (l *lastLag) init(profile string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.last[profile]; !ok {
		l.last[profile] = LagSummary{}
	}
}

func (l *lastLag) set(profile string, s LagSummary) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last[profile] = s
	l.sums[profile] = s.Sum
}

// Describe implements prometheus.Collector.
func (l *lastLag) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

// Collect implements prometheus.Collector.
func (l *lastLag) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, s := range l.last {
		ch <- prometheus.MustNewConstSummary(l.desc, uint64(s.Samples), l.sums[p],
			map[float64]float64{0.5: s.P50, 0.95: s.P95, 0.99: s.P99}, p)
	}
}

// InitSearchProfile starts a capacity search profile's series at zero.
func (m *Metrics) InitSearchProfile(p string) {
	for _, o := range searchOutcomes {
		m.CapSearches.WithLabelValues(p, o)
	}
	for _, g := range []*prometheus.GaugeVec{m.CapSustainable, m.CapPrevious, m.CapHeadroom, m.CapTimestamp} {
		g.WithLabelValues(p)
	}
}

// SeedPreviousSearch makes sustainable the figure the profile's next
// complete search is compared with (the previous search's), as if this
// process had run that search: a restart does not forget it. The series
// are left alone: on a replica that does not lead, a figure from its own
// past would stand beside the leader's as a current one.
func (m *Metrics) SeedPreviousSearch(profile string, sustainable float64) {
	m.searchMu.Lock()
	defer m.searchMu.Unlock()
	if m.searchDone == nil {
		m.searchDone = map[string]float64{}
	}
	if _, ok := m.searchDone[profile]; !ok {
		m.searchDone[profile] = sustainable
	}
}

// recordSearch publishes a finished capacity search. An aborted one counts,
// and moves the timestamp, but leaves the figures of the last complete one.
func (m *Metrics) recordSearch(s *SearchReport) {
	p := s.Profile
	m.InitSearchProfile(p)
	m.CapSearches.WithLabelValues(p, s.Outcome).Inc()
	m.CapTimestamp.WithLabelValues(p).Set(float64(s.Finished.UnixNano()) / 1e9)
	if s.Aborted {
		return
	}
	m.searchMu.Lock()
	defer m.searchMu.Unlock()
	if prev, ok := m.searchDone[p]; ok {
		m.CapPrevious.WithLabelValues(p).Set(prev)
	}
	v := deref(s.Sustainable)
	if m.searchDone == nil {
		m.searchDone = map[string]float64{}
	}
	m.searchDone[p] = v
	m.CapSustainable.WithLabelValues(p).Set(v)
	m.CapHeadroom.WithLabelValues(p).Set(deref(s.Headroom))
	for _, g := range []*prometheus.GaugeVec{m.CapStepRate, m.CapStepLag, m.CapStepPassed} {
		g.DeletePartialMatch(prometheus.Labels{"profile": p})
	}
	for i, st := range s.Steps {
		n := strconv.Itoa(i + 1)
		m.CapStepRate.WithLabelValues(p, n).Set(st.TargetRate)
		m.CapStepLag.WithLabelValues(p, n).Set(st.LagP95)
		passed := 0.0
		if st.Passed {
			passed = 1
		}
		m.CapStepPassed.WithLabelValues(p, n).Set(passed)
	}
}
