package burst

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/atomicfile"
)

// Report is everything a burst measured, and its verdict. It is written
// as JSON (WriteJSON) and turned into JUnit test cases by the gate.
type Report struct {
	Profile string `json:"profile"`
	ID      string `json:"id"` // also the marker run and the load events' slo_canary.run
	Verdict string `json:"verdict"`
	// Reasons say why the verdict is not pass, one line each.
	Reasons []string `json:"reasons,omitempty"`
	Abort   *Abort   `json:"abort,omitempty"`
	Stage   string   `json:"stage"`

	Started  time.Time `json:"started"`
	LoadEnd  time.Time `json:"load_end"` // the last event handed over
	Finished time.Time `json:"finished"` // every marker resolved, or the wait gave up

	Steps     []StepReport   `json:"steps"`
	PerSecond []SecondReport `json:"per_second"`
	Events    EventCounts    `json:"events"`
	Markers   MarkerCounts   `json:"markers"`
	Lag       LagSummary     `json:"lag_seconds"`
	// Other stages' lag at the time the burst finished; they may still be
	// waiting for markers (an aggregation window), so they are not judged.
	OtherStages map[string]LagSummary `json:"other_stages,omitempty"`

	LossRatio      float64    `json:"loss_ratio"`
	AchievedRate   float64    `json:"achieved_rate"` // acknowledged events per second over the whole load
	CatchUpSeconds float64    `json:"catchup_seconds"`
	Processing     Processing `json:"processing"`
	// LagGrowth is how fast the judged stage's marker lag grew over the
	// load after its first quarter: seconds of lag gained per second of
	// load, the least-squares slope of the markers' lags against their send
	// times. 0 while the pipeline keeps up; 0.05 when it falls behind by 5%
	// of the time, as one processing at 1/1.05 of the rate does. Null with
	// fewer than minTrendMarkers markers seen in that window, and in a
	// scaled-out burst's merged report.
	LagGrowth *float64 `json:"lag_growth_seconds_per_second,omitempty"`

	// A scaled-out burst's membership generation and partitions by member
	// instance (docs/replicas.md); absent for a burst run alone.
	Generation int32              `json:"generation,omitempty"`
	Assignment map[string][]int32 `json:"assignment,omitempty"`

	Budgets config.BurstBudgets `json:"-"`
	Checks  []Check             `json:"checks"`
}

// Abort says why a burst stopped early, or did not start.
type Abort struct {
	Reason    string    `json:"reason"` // one of AbortReasons
	Detail    string    `json:"detail"`
	Value     float64   `json:"value,omitempty"`     // what the guard read
	Threshold float64   `json:"threshold,omitempty"` // its limit
	At        time.Time `json:"at"`
}

// StepReport is one step as run.
type StepReport struct {
	Rate         string  `json:"rate"`
	TargetRate   float64 `json:"target_rate"` // events per second
	Duration     string  `json:"duration"`
	Planned      int64   `json:"planned_events"`
	Sent         int64   `json:"sent_events"` // handed to the producer
	Failed       int64   `json:"failed_events"`
	Elapsed      float64 `json:"elapsed_seconds"`
	AchievedRate float64 `json:"achieved_rate"` // (sent - failed) / elapsed
	Deviation    float64 `json:"deviation"`     // |achieved - target| / target
	Completed    bool    `json:"completed"`
	// MaxBehindSeconds is the longest the pacer ran behind its schedule
	// (scheduling hiccups; events due meanwhile went out at once after).
	MaxBehindSeconds float64 `json:"max_behind_seconds"`
}

// SecondReport is one wall-clock second of the load.
type SecondReport struct {
	Second    int     `json:"second"`
	Target    float64 `json:"target"` // events the schedule puts in this second
	Sent      int64   `json:"sent"`
	Deviation float64 `json:"deviation"`
	// MaxBehindSeconds is the most the pacer ran late within the second.
	MaxBehindSeconds float64 `json:"max_behind_seconds"`
}

// EventCounts count burst events, load and markers together.
type EventCounts struct {
	Planned  int64            `json:"planned"`
	Sent     int64            `json:"sent"`
	Acked    int64            `json:"acked"`
	Failed   int64            `json:"failed"`
	ByReason map[string]int64 `json:"failed_by_reason,omitempty"`
}

// MarkerCounts account for the burst's markers at the judged stage.
type MarkerCounts struct {
	Sent       int64 `json:"sent"`
	Acked      int64 `json:"acked"`
	Seen       int64 `json:"seen"`
	Lost       int64 `json:"lost"`
	Late       int64 `json:"late"`
	Duplicates int64 `json:"duplicates"`
	OutOfOrder int64 `json:"out_of_order"`
	Unresolved int64 `json:"unresolved"` // neither seen nor lost when the wait ended
}

// LagSummary is the lag distribution of a burst's markers at a stage.
type LagSummary struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	Sum     float64 `json:"-"`
}

// Processing is how fast the pipeline took the burst in.
type Processing struct {
	// MarkersPerSecond: burst markers seen at the stage per second, between
	// the first and the last sighting.
	MarkersPerSecond float64 `json:"markers_per_second"`
	// EventsPerSecond: growth of the committed offsets of the watched
	// consumer groups on the ingest topic, from the burst's start until its
	// markers were all resolved; null when no watched group consumes it.
	EventsPerSecond *float64 `json:"events_per_second"`
	// PeakEventsPerSecond: the fastest guard interval.
	PeakEventsPerSecond *float64 `json:"peak_events_per_second,omitempty"`
}

// Check is one budget judged.
type Check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Unit   string  `json:"unit"`
	Pass   bool    `json:"pass"`
	Detail string  `json:"detail,omitempty"`
}

func (c Check) String() string {
	rel := "<="
	if !c.Pass {
		rel = ">"
	}
	s := fmt.Sprintf("%s %s %s %s", c.Name, fmtVal(c.Value, c.Unit), rel, fmtVal(c.Limit, c.Unit))
	if c.Detail != "" {
		s += " (" + c.Detail + ")"
	}
	return s
}

func fmtVal(v float64, unit string) string {
	switch unit {
	case "s":
		return fmt.Sprintf("%.3fs", v)
	case "ratio":
		return fmt.Sprintf("%.4f%%", 100*v)
	default:
		return fmt.Sprintf("%g%s", v, unit)
	}
}

// judge fills Checks, Verdict and Reasons.
func (r *Report) judge() {
	b := r.Budgets
	add := func(c Check) {
		r.Checks = append(r.Checks, c)
		if !c.Pass {
			r.Reasons = append(r.Reasons, c.String())
		}
	}
	lagCheck := func(name string, v float64, limit time.Duration) {
		add(Check{Name: name, Value: v, Limit: limit.Seconds(), Unit: "s", Pass: r.Lag.Samples > 0 && v <= limit.Seconds()})
	}
	lagCheck("lag_p50", r.Lag.P50, b.LagP50)
	lagCheck("lag_p95", r.Lag.P95, b.LagP95)
	lagCheck("lag_p99", r.Lag.P99, b.LagP99)
	add(Check{Name: "loss", Value: r.LossRatio, Limit: b.MaxLoss, Unit: "ratio", Pass: r.LossRatio <= b.MaxLoss,
		Detail: fmt.Sprintf("%d of %d markers lost", r.Markers.Lost, r.Markers.Acked)})
	if r.Markers.Acked == 0 {
		add(Check{Name: "markers", Value: 0, Limit: 1, Pass: false, Detail: "no burst marker was acknowledged: nothing was measured"})
	}
	if r.Markers.Unresolved > 0 {
		add(Check{Name: "unresolved_markers", Value: float64(r.Markers.Unresolved), Limit: 0, Pass: false,
			Detail: "markers neither seen nor declared lost when the wait ended"})
	}
	for i, s := range r.Steps {
		add(Check{Name: fmt.Sprintf("rate_step_%d", i+1), Value: s.Deviation, Limit: b.RateTolerance, Unit: "ratio",
			Pass:   s.Completed && s.Deviation <= b.RateTolerance,
			Detail: fmt.Sprintf("achieved %.1f/s of %.1f/s", s.AchievedRate, s.TargetRate)})
	}
	switch {
	case r.Abort != nil:
		r.Verdict = VerdictAborted
		r.Reasons = append([]string{"aborted: " + r.Abort.Detail}, r.Reasons...)
	case len(r.Reasons) > 0:
		r.Verdict = VerdictFail
	default:
		r.Verdict = VerdictPass
	}
}

// Summary is a one-line account of the burst.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "burst %s: %s; %d events at %.1f/s; markers %d/%d seen, %d lost; lag p50 %.2fs p95 %.2fs p99 %.2fs; catch-up %.2fs",
		r.Profile, strings.ToUpper(r.Verdict), r.Events.Acked, r.AchievedRate, r.Markers.Seen, r.Markers.Acked, r.Markers.Lost,
		r.Lag.P50, r.Lag.P95, r.Lag.P99, r.CatchUpSeconds)
	if r.Processing.EventsPerSecond != nil {
		fmt.Fprintf(&b, "; pipeline %.1f events/s", *r.Processing.EventsPerSecond)
	}
	return b.String()
}

// WriteJSON writes the report to path, atomically.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("burst report: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, append(data, '\n'))
}

// ReportPath is where a scheduled burst's report goes in dir.
func (r *Report) ReportPath(dir string) string {
	return filepath.Join(dir, fmt.Sprintf("burst-%s-%s.json", r.Profile, r.Started.UTC().Format("20060102T150405Z")))
}

// lagSummary summarises lags (seconds), nearest rank as the demo's summary.
func lagSummary(lags []float64) LagSummary {
	if len(lags) == 0 {
		return LagSummary{}
	}
	s := LagSummary{Samples: len(lags), Max: lags[len(lags)-1]}
	for _, v := range lags {
		s.Sum += v
	}
	s.P50 = canary.Quantile(lags, 0.50).Seconds()
	s.P95 = canary.Quantile(lags, 0.95).Seconds()
	s.P99 = canary.Quantile(lags, 0.99).Seconds()
	return s
}

func deviation(got, want float64) float64 {
	if want == 0 {
		return 0
	}
	return math.Abs(got-want) / want
}

// WriteJSON writes the search report to path, atomically.
func (s *SearchReport) WriteJSON(path string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("capacity report: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, append(data, '\n'))
}

// ReportPath is where a scheduled search's report goes in dir.
func (s *SearchReport) ReportPath(dir string) string {
	return filepath.Join(dir, fmt.Sprintf("capacity-%s-%s.json", s.Profile, s.Started.UTC().Format("20060102T150405Z")))
}

// LatestSearch reads the newest complete search of profile (one that was not
// aborted and gave a figure) from the reports in dir. Their names carry the
// search's start time (ReportPath), so they are read newest first, up to the
// first complete one. It returns nil without an error when there is none,
// and skips, naming them in skipped, report files it cannot read: one bad
// file does not hide the others.
func LatestSearch(dir, profile string) (latest *SearchReport, skipped []error, err error) {
	files, err := filepath.Glob(filepath.Join(dir, "capacity-"+profile+"-*.json"))
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(files)
	for _, f := range slices.Backward(files) {
		data, err := os.ReadFile(f)
		if err != nil {
			skipped = append(skipped, err)
			continue
		}
		var r SearchReport
		if err := json.Unmarshal(data, &r); err != nil {
			skipped = append(skipped, fmt.Errorf("%s: %w", f, err))
			continue
		}
		if r.Profile == profile && !r.Aborted && r.Sustainable != nil {
			return &r, skipped, nil
		}
	}
	return nil, skipped, nil
}
