package canary

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// LagBuckets are the classic buckets of every marker-lag histogram: from 50 ms
// to 15 min, dense around the freshness budget (60 s) and the lag percentiles
// the contract judges (30 s, 60 s, 90 s). Native buckets sit beside them.
var LagBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 75, 90, 120, 180, 300, 600, 900}

// ProduceBuckets judge the produce-ack hop: from 1 ms to 30 s.
var ProduceBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Reasons are the bounded label values of the reason labels. Every one is
// initialised at zero so that the first failure alerts.
var (
	ProduceFailureReasons = []string{"timeout", "buffer_full", "broker", "auth", "shutdown", "other"}
	NotSentReasons        = []string{"tracker_full", "encode"}
	ObserverErrorReasons  = []string{"timeout", "connect", "query", "decode", "auth", "other"}
	UntrackedReasons      = []string{"canary_stopped"}
)

// histOpts gives a histogram native buckets beside the classic ones.
func histOpts(name, help string, buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{
		Namespace:                       "slo_canary",
		Name:                            name,
		Help:                            help,
		Buckets:                         buckets,
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}
}

// Metrics are the canary's own series. Stage labels are fixed at construction
// and every series starts at zero.
type Metrics struct {
	Sent             prometheus.Counter
	NotSent          *prometheus.CounterVec
	ProduceFailures  *prometheus.CounterVec
	ProduceLatency   prometheus.Histogram
	Partitions       prometheus.Gauge
	Recovered        *prometheus.CounterVec
	CheckpointErrors prometheus.Counter
	CheckpointTS     prometheus.Gauge
	Untracked        *prometheus.CounterVec
	Lag              *prometheus.HistogramVec
	Observed         *prometheus.CounterVec
	Lost             *prometheus.CounterVec
	Late             *prometheus.CounterVec
	Duplicate        *prometheus.CounterVec
	OutOfOrder       *prometheus.CounterVec
	Unmeasured       *prometheus.CounterVec
	Unknown          *prometheus.CounterVec
	FreshGood        *prometheus.CounterVec
	FreshTotal       *prometheus.CounterVec
	Polls            *prometheus.CounterVec
	PollErrors       *prometheus.CounterVec
	PollDuration     *prometheus.HistogramVec
	ClockSkew        *prometheus.GaugeVec
	FreshnessBudget  prometheus.Gauge
	StageDeadline    *prometheus.GaugeVec
	StageReady       *prometheus.GaugeVec
	LastMarkerSentTS prometheus.Gauge
	IngestUp         prometheus.Gauge
	IngestErrors     *prometheus.CounterVec
	IngestSLITotal   prometheus.Counter
	IngestSLIGood    prometheus.Counter
}

// NewMetrics registers the canary's metrics with reg for the given stages.
func NewMetrics(reg prometheus.Registerer, stages []string) *Metrics {
	f := promauto.With(reg)
	stage := []string{"stage"}
	m := &Metrics{
		Sent: f.NewCounter(prometheus.CounterOpts{Namespace: "slo_canary", Name: "markers_sent_total",
			Help: "Markers produced and acknowledged by Kafka."}),
		NotSent: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "markers_not_sent_total",
			Help: "Markers the canary chose not to send, by reason (tracker_full: the cap on tracked markers was reached)."}, []string{"reason"}),
		ProduceFailures: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "produce_failures_total",
			Help: "Marker produce attempts that failed, by reason."}, []string{"reason"}),
		ProduceLatency: f.NewHistogram(histOpts("produce_latency_seconds",
			"Time from a marker's send to its acknowledgement by Kafka (acks=all).", ProduceBuckets)),
		Partitions: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "ingest_partitions",
			Help: "Partitions of the ingest topic that receive markers, from the latest metadata."}),
		Recovered: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "markers_recovered_total",
			Help: "Markers sent before this start and tracked again, by source: the checkpoint (state file) or the ingest topic."}, []string{"source"}),
		CheckpointErrors: f.NewCounter(prometheus.CounterOpts{Namespace: "slo_canary", Name: "checkpoint_failures_total",
			Help: "Failed writes or reads of the state file."}),
		CheckpointTS: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "checkpoint_last_success_timestamp_seconds",
			Help: "Unix time of the latest successful checkpoint of the tracker to the state file."}),
		Untracked: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "markers_untracked_total",
			Help: "Markers whose fate the canary cannot judge because of the canary itself, by reason; never blamed on the pipeline."}, []string{"reason"}),
		Lag: f.NewHistogramVec(histOpts("marker_lag_seconds",
			"End-to-end lag from a marker's send to its first sighting at the stage. Exemplars carry the marker id.", LagBuckets), stage),
		Observed: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "markers_observed_total",
			Help: "Markers seen at the stage before their deadline (measured or unmeasured)."}, stage),
		Lost: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "markers_lost_total",
			Help: "Markers not seen at the stage by their deadline. Net loss is lost minus late."}, stage),
		Late: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "markers_late_total",
			Help: "Markers seen at the stage after being declared lost."}, stage),
		Duplicate: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "markers_duplicate_total",
			Help: "Extra copies of markers seen at the stage."}, stage),
		OutOfOrder: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "markers_out_of_order_total",
			Help: "Markers first seen at the stage after a later marker of the same partition."}, stage),
		Unmeasured: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "markers_unmeasured_total",
			Help: "Markers sent before a canary restart that reached the stage while the canary was down: not lost, lag unknown, left out of the freshness SLI."}, stage),
		Unknown: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "unknown_sightings_total",
			Help: "Sightings of ids the tracker does not hold (foreign events, or markers evicted after their late window)."}, stage),
		FreshGood: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "freshness_sli_good_total",
			Help: "Markers seen at the stage within the freshness budget (SLI good events)."}, stage),
		FreshTotal: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "freshness_sli_total",
			Help: "Markers judged against the freshness budget at the stage: seen (in time or not) plus lost (SLI total events)."}, stage),
		Polls: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "observer_polls_total",
			Help: "Observations attempted at the stage."}, stage),
		PollErrors: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "observer_errors_total",
			Help: "Failed observations at the stage, by reason."}, []string{"stage", "reason"}),
		PollDuration: f.NewHistogramVec(histOpts("observer_poll_duration_seconds",
			"Duration of one observation at the stage (e.g. one SQL poll).", ProduceBuckets), stage),
		ClockSkew: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "stage_clock_skew_seconds",
			Help: "Latest difference between the stage's own timestamp of a marker and the canary's clock when it saw it (positive: the stage's clock runs ahead). Measured, never subtracted."}, stage),
		FreshnessBudget: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "freshness_budget_seconds",
			Help: "The freshness budget the SLI counters judge against."}),
		StageDeadline: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "stage_deadline_seconds",
			Help: "Time after which a marker not seen at the stage is lost."}, stage),
		StageReady: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "stage_ready",
			Help: "1 while the stage is measured: its observer has answered successfully, and markers are acknowledged by Kafka (slo_canary_ingest_up; with canary.rate 0, the observer alone)."}, stage),
		LastMarkerSentTS: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "last_marker_sent_timestamp_seconds",
			Help: "Unix time of the latest acknowledged marker."}),
		IngestUp: f.NewGauge(prometheus.GaugeOpts{Namespace: "slo_canary", Name: "ingest_up",
			Help: "1 while markers are produced and acknowledged on every known partition of the ingest topic; 0 while none is known, the latest marker of some partition failed, or none was acknowledged yet. The log says why (\"marker injection failing\")."}),
		IngestErrors: f.NewCounterVec(prometheus.CounterOpts{Namespace: "slo_canary", Name: "ingest_errors_total",
			Help: "Markers the canary meant to send that Kafka did not acknowledge, by reason: connect (no broker reachable), auth (SASL or TLS refused, or not authorised), unknown_topic, no_partitions (the metadata lists none), produce (any other produce failure)."}, []string{"reason"}),
		IngestSLITotal: f.NewCounter(prometheus.CounterOpts{Namespace: "slo_canary", Name: "ingest_sli_total",
			Help: "Markers the canary meant to send (SLI total events): one per known partition per round; while no partition is known, max(1, the last known partition count) per round."}),
		IngestSLIGood: f.NewCounter(prometheus.CounterOpts{Namespace: "slo_canary", Name: "ingest_sli_good_total",
			Help: "Markers acknowledged by Kafka (SLI good events)."}),
	}
	for _, r := range ProduceFailureReasons {
		m.ProduceFailures.WithLabelValues(r)
	}
	for _, r := range IngestErrorReasons {
		m.IngestErrors.WithLabelValues(r)
	}
	for _, r := range NotSentReasons {
		m.NotSent.WithLabelValues(r)
	}
	for _, src := range []string{"checkpoint", "ingest_topic"} {
		m.Recovered.WithLabelValues(src)
	}
	for _, r := range UntrackedReasons {
		m.Untracked.WithLabelValues(r)
	}
	for _, s := range stages {
		m.Lag.WithLabelValues(s)
		for _, v := range []*prometheus.CounterVec{m.Observed, m.Lost, m.Late, m.Duplicate, m.OutOfOrder,
			m.Unmeasured, m.Unknown, m.FreshGood, m.FreshTotal, m.Polls} {
			v.WithLabelValues(s)
		}
		for _, r := range ObserverErrorReasons {
			m.PollErrors.WithLabelValues(s, r)
		}
		m.PollDuration.WithLabelValues(s)
		m.StageReady.WithLabelValues(s)
	}
	return m
}
