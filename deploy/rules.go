package deploy

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Params are the knobs of the generated rules and dashboard. Every budget and
// objective an expression judges against comes from here (or from a gauge the
// canary exports), never from a literal written into one expression.
type Params struct {
	// TimeScale divides every duration in the rules: rate windows, `for`
	// clauses and the SLO period. 1 in production; the end-to-end test uses
	// 60, so that an hour of burn-rate window passes in a minute.
	TimeScale int
	// FreshnessObjective is the share of markers that must be queryable
	// within the freshness budget (SLO-Scout promises 99% within 60 s; the
	// budget itself is canary.freshness_budget, exported as
	// slo_canary_freshness_budget_seconds).
	FreshnessObjective float64
	// FreshnessStages is a regular expression of the stages the freshness
	// SLO is judged at: where "queryable" is observed. Stages behind
	// aggregation windows (capsules close after an hour) miss a 60 s budget
	// by design and must not page.
	FreshnessStages string
	// QueryObjective is the share of probe queries that must succeed within
	// their probe's budget (SLO-Scout promises 95% within 2 s).
	QueryObjective float64
	// SLOPeriod is the period the error budget is counted over.
	SLOPeriod time.Duration
	// CanaryJob is the job label of the canary's scrape target: the Service
	// name under the Prometheus Operator.
	CanaryJob string
	// LateWindow is canary.late_window: a marker declared lost and seen within
	// it is late, not lost, so loss alerts wait that long before judging.
	LateWindow time.Duration
	// ProduceFailureRatio and ObserverErrorRatio are the shares of failed
	// produces and failed observations the canary tolerates before its own
	// measurements are doubtful.
	ProduceFailureRatio float64
	ObserverErrorRatio  float64
	// MinCapacityHeadroom is the capacity headroom (sustainable rate over
	// bursts.contract_rate) below which a capacity search opens a ticket:
	// the contract promises bursts at twice the steady rate.
	MinCapacityHeadroom float64
	// MaxCapacityDrop is the share of the previous search's sustainable rate
	// the latest one may lose before it opens a ticket.
	MaxCapacityDrop float64
	// RunbookURL is the runbook document; each alert links to its section.
	RunbookURL string
	// IngestObjective is the share of the canary's markers Kafka must
	// acknowledge (within canary.produce_timeout): the ingest-availability
	// SLO. When the pipeline's Kafka refuses writes, the collectors' events
	// are lost too; this is how that pages.
	IngestObjective float64
	// BlindAfter is how long a canary that is up may go without an
	// acknowledged marker before SLOCanaryBlind fires.
	BlindAfter time.Duration
}

// DefaultParams are the production parameters: SLO-Scout's promises, the
// canary's defaults, and the runbook in this repository.
func DefaultParams() Params {
	return Params{
		TimeScale:           1,
		FreshnessObjective:  0.99,
		FreshnessStages:     "database",
		QueryObjective:      0.95,
		SLOPeriod:           30 * 24 * time.Hour,
		CanaryJob:           "slo-canary",
		LateWindow:          15 * time.Minute,
		ProduceFailureRatio: 0.05,
		ObserverErrorRatio:  0.5,
		MinCapacityHeadroom: 2,
		MaxCapacityDrop:     0.25,
		RunbookURL:          "https://github.com/slo-scout/slo-canary/blob/main/deploy/runbooks.md",
		IngestObjective:     0.999,
		BlindAfter:          10 * time.Minute,
	}
}

// Validate rejects parameters that would render nonsense.
func (p Params) Validate() error {
	switch {
	case p.TimeScale < 1:
		return fmt.Errorf("deploy: time scale %d is below 1", p.TimeScale)
	case !(p.FreshnessObjective > 0 && p.FreshnessObjective < 1):
		return fmt.Errorf("deploy: freshness objective %v is not within (0, 1)", p.FreshnessObjective)
	case !(p.QueryObjective > 0 && p.QueryObjective < 1):
		return fmt.Errorf("deploy: query objective %v is not within (0, 1)", p.QueryObjective)
	case p.FreshnessStages == "" || p.CanaryJob == "" || p.RunbookURL == "":
		return fmt.Errorf("deploy: freshness stages, canary job and runbook URL must be set")
	case p.SLOPeriod <= 0 || p.LateWindow <= 0:
		return fmt.Errorf("deploy: SLO period and late window must be positive")
	case !(p.IngestObjective > 0 && p.IngestObjective < 1):
		return fmt.Errorf("deploy: ingest objective %v is not within (0, 1)", p.IngestObjective)
	case p.BlindAfter <= 0:
		return fmt.Errorf("deploy: blind-after duration must be positive")
	case !(p.MinCapacityHeadroom > 0) || !(p.MaxCapacityDrop > 0 && p.MaxCapacityDrop < 1):
		return fmt.Errorf("deploy: capacity headroom %v must be positive and capacity drop %v within (0, 1)", p.MinCapacityHeadroom, p.MaxCapacityDrop)
	}
	if _, err := regexp.Compile(p.FreshnessStages); err != nil {
		return fmt.Errorf("deploy: freshness stages: %w", err)
	}
	return nil
}

// RuleGroup and Rule are the rules-file schema of Prometheus, in the order a
// reader expects the keys. They exist only to render; the tests decode the
// output into the Prometheus Operator's own types and promtool checks it.
type RuleGroup struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is a recording rule (Record set) or an alerting rule (Alert set).
type Rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Severities: page wakes someone up and is reserved for SLO budget burn;
// everything else opens a ticket.
const (
	SeverityPage   = "page"
	SeverityTicket = "ticket"
)

// Windows of the error-ratio recording rules, from the Google SRE workbook's
// multiwindow, multi-burn-rate alerts.
var sloWindows = []time.Duration{
	5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 3 * 24 * time.Hour,
}

// burn is one long/short window pair and the burn rate that trips it.
type burn struct {
	long, short time.Duration
	rate        float64
}

// The workbook's pairs: 2% of a 30-day budget in 1 h or 5% in 6 h pages; 10%
// in 1 d or 10% in 3 d opens a ticket. The short window makes the alert
// reset soon after the burn stops.
var (
	pageBurns   = []burn{{time.Hour, 5 * time.Minute, 14.4}, {6 * time.Hour, 30 * time.Minute, 6}}
	ticketBurns = []burn{{24 * time.Hour, 2 * time.Hour, 3}, {3 * 24 * time.Hour, 6 * time.Hour, 1}}
)

// sli describes one good/total SLI.
type sli struct {
	name      string // recording-rule infix: freshness, query_latency
	alert     string // alert-name infix: Freshness, QueryLatency
	good      string
	total     string
	by        string // the label the SLI is split by
	selector  string // restricts the series judged, may be empty
	objective float64
	subject   string // what is counted: markers, probe queries
	where     string // "at stage {{ $labels.stage }}"
	bad       string // what makes one bad
	causes    string // what to tell apart, ends the burn alerts' description
}

func (p Params) slis() []sli {
	return []sli{
		{
			name: "freshness", alert: "Freshness",
			good: "slo_canary_freshness_sli_good_total", total: "slo_canary_freshness_sli_total",
			by: "stage", selector: fmt.Sprintf("stage=~%q", p.FreshnessStages), objective: p.FreshnessObjective,
			subject: "markers", where: "at stage {{ $labels.stage }}",
			bad: "were not seen within the freshness budget (late or lost)",
		},
		{
			name: "query_latency", alert: "QueryLatency",
			good: "slo_canary_query_sli_good_total", total: "slo_canary_query_sli_total",
			by: "probe", objective: p.QueryObjective,
			subject: "queries", where: "of probe {{ $labels.probe }}",
			bad: "failed or took longer than the probe's latency budget",
		},
		{
			// Split by canary: each instance is its own path to Kafka, and
			// one whose network or config is broken is told apart.
			name: "ingest_availability", alert: "IngestAvailability",
			good: "slo_canary_ingest_sli_good_total", total: "slo_canary_ingest_sli_total",
			by: "instance", objective: p.IngestObjective,
			subject: "markers", where: "from canary {{ $labels.instance }}",
			bad: "were not acknowledged by Kafka",
			causes: "Either Kafka is down or refuses writes (then the collectors' events are lost too), " +
				"or the canary's own configuration or network keeps it from Kafka: slo_canary_ingest_errors_total by reason, " +
				"and whether the pipeline's own producers fail too, tell which.",
		},
	}
}

// ErrorRatioRecord names the recording rule of an SLI's error ratio over the
// nominal window w. Names keep the nominal window whatever the time scale,
// so the dashboard finds them in a scaled test too.
func ErrorRatioRecord(sliName string, w time.Duration) string {
	return fmt.Sprintf("slo_canary:%s_sli_error_ratio:rate%s", sliName, promDuration(w))
}

// ObjectiveRecord names the recording rule that holds an SLI's objective.
func ObjectiveRecord(sliName string) string {
	return fmt.Sprintf("slo_canary:%s_slo_objective:ratio", sliName)
}

// Rules renders every rule group.
func Rules(p Params) ([]RuleGroup, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	rec := RuleGroup{Name: "slo-canary-slo-recording"}
	alerts := RuleGroup{Name: "slo-canary-slo-alerts"}
	for _, s := range p.slis() {
		rec.Rules = append(rec.Rules, p.recordings(s)...)
		alerts.Rules = append(alerts.Rules,
			p.burnAlert(s, SeverityPage, "BudgetBurnFast", pageBurns),
			p.burnAlert(s, SeverityTicket, "BudgetBurnSlow", ticketBurns))
	}
	return []RuleGroup{rec, alerts,
		{Name: "slo-canary-pipeline-alerts", Rules: p.pipelineAlerts()},
		{Name: "slo-canary-health-alerts", Rules: p.healthAlerts()},
	}, nil
}

func (p Params) recordings(s sli) []Rule {
	sel := ""
	if s.selector != "" {
		sel = "{" + s.selector + "}"
	}
	rules := []Rule{{
		Record: ObjectiveRecord(s.name),
		Expr:   fmt.Sprintf("vector(%s)", formatFloat(s.objective)),
	}}
	for _, w := range sloWindows {
		rules = append(rules, Rule{
			Record: ErrorRatioRecord(s.name, w),
			// 1 - good/total rather than bad/total: the canary counts good
			// and total, and a total of zero leaves no ratio (NaN) instead
			// of a false 0% or 100%.
			Expr: fmt.Sprintf(`1 - (
  sum by (namespace, job, %[1]s) (rate(%[2]s%[4]s[%[5]s]))
  /
  sum by (namespace, job, %[1]s) (rate(%[3]s%[4]s[%[5]s]))
)`, s.by, s.good, s.total, sel, p.d(w)),
		})
	}
	return rules
}

func (p Params) burnAlert(s sli, severity, suffix string, burns []burn) Rule {
	// The objective is read from its recording rule, so that it is written
	// once in the rules whoever edits them.
	budget := fmt.Sprintf("(1 - %s)", ObjectiveRecord(s.name))
	var terms, desc []string
	for _, b := range burns {
		terms = append(terms, fmt.Sprintf(`(
  %[1]s > on () group_left () (%[3]s * %[4]s)
and
  %[2]s > on () group_left () (%[3]s * %[4]s)
)`, ErrorRatioRecord(s.name, b.long), ErrorRatioRecord(s.name, b.short), formatFloat(b.rate), budget))
		desc = append(desc, fmt.Sprintf("%sx over %s (confirmed over %s)", formatFloat(b.rate), p.d(b.long), p.d(b.short)))
	}
	name := "SLOScout" + s.alert + suffix
	pace := "fast enough to exhaust it within days"
	if severity == SeverityTicket {
		pace = "faster than the " + promDuration(p.scaled(p.SLOPeriod)) + " budget allows"
	}
	description := fmt.Sprintf("{{ $value | humanizePercentage }} of %s %s %s over the alert's long window "+
		"(objective %s good, error budget %s). Trips at a burn rate of %s.",
		s.subject, s.where, s.bad, formatPercent(s.objective), formatPercent(1-s.objective), strings.Join(desc, " or "))
	if s.causes != "" {
		description += " " + s.causes
	}
	return Rule{
		Alert:  name,
		Expr:   strings.Join(terms, "\nor\n"),
		Labels: map[string]string{"severity": severity, "slo": s.name},
		Annotations: p.annotations(name,
			fmt.Sprintf("SLO-Scout %s error budget is burning %s %s", strings.ReplaceAll(s.name, "_", " "), pace, s.where),
			description),
	}
}

func (p Params) annotations(alert, summary, description string) map[string]string {
	return map[string]string{
		"summary":     summary,
		"description": description,
		"runbook_url": p.RunbookURL + "#" + strings.ToLower(alert),
	}
}

// d scales a nominal duration and writes it as PromQL does.
func (p Params) d(nominal time.Duration) string { return promDuration(p.scaled(nominal)) }

func (p Params) scaled(nominal time.Duration) time.Duration {
	return (nominal / time.Duration(p.TimeScale)).Round(time.Millisecond)
}

// promDuration writes d in PromQL's duration syntax: 3d, 1h12m, 5s, 500ms.
func promDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.unit)
			d -= n * u.d
		}
	}
	return b.String()
}

// formatFloat writes f without float noise: 1 - 0.99 is 0.01, not
// 0.010000000000000009.
func formatFloat(f float64) string {
	return strconv.FormatFloat(math.Round(f*1e9)/1e9, 'f', -1, 64)
}

func formatPercent(f float64) string { return formatFloat(f*100) + "%" }
