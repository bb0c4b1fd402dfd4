package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Bursts configures scheduled full-rate bursts: load at an exact rate, with
// markers spread through it, judged against lag, loss and rate budgets. A
// burst is real load on the pipeline under test, so it is off by default.
type Bursts struct {
	// Enabled schedules the profiles. `slo-canary burst --once` and
	// `slo-canary gate` run a burst whatever it says.
	Enabled bool `mapstructure:"enabled"`
	// ReportDir receives a JSON report per scheduled burst; empty: none.
	ReportDir string `mapstructure:"report_dir"`
	// Stage is the observer whose sightings judge a burst (lag, loss,
	// catch-up) and whose marker freshness the guard watches.
	Stage string `mapstructure:"stage"`
	// MarkerShare is the fraction of burst events that are markers.
	MarkerShare float64 `mapstructure:"marker_share"`
	// MaxRate caps any step's rate, in events per second; MaxEvents caps the
	// events of one burst. Both are checked against the profiles at load
	// time and enforced again while a burst runs.
	MaxRate   float64                 `mapstructure:"max_rate"`
	MaxEvents int                     `mapstructure:"max_events"`
	Guard     BurstGuard              `mapstructure:"guard"`
	Budgets   BurstBudgets            `mapstructure:"budgets"`
	Load      BurstLoad               `mapstructure:"load"`
	Profiles  map[string]BurstProfile `mapstructure:"profiles"`

	// ContractRate is the steady rate the pipeline promises, N/s or N/min:
	// a capacity search's headroom is its sustainable rate over this.
	ContractRate string `mapstructure:"contract_rate"`

	// ScaleOut splits a scheduled burst across the replicas of the
	// coordination group by the ingest topic's partitions: each produces
	// its share, the leader judges the whole (docs/replicas.md).
	ScaleOut bool `mapstructure:"scale_out"`
}

// BurstGuard aborts a burst, or keeps one from starting, when the pipeline is
// already in trouble: a burst must not turn a slow pipeline into an outage.
// A zero threshold turns its check off.
type BurstGuard struct {
	Interval time.Duration `mapstructure:"interval"`
	// MaxMarkerLag: the age of the oldest marker not yet seen at the stage.
	MaxMarkerLag time.Duration `mapstructure:"max_marker_lag"`
	// MaxGroupLagRecords and MaxGroupLag: the largest lag of any watched
	// consumer group (consumer_lag), in records and in time.
	MaxGroupLagRecords int           `mapstructure:"max_group_lag_records"`
	MaxGroupLag        time.Duration `mapstructure:"max_group_lag"`
	// MaxProduceErrorRatio: failed produces over attempts within one interval.
	MaxProduceErrorRatio float64 `mapstructure:"max_produce_error_ratio"`
}

// BurstBudgets are what a burst must meet to pass; the defaults are
// SLO-Scout's ingest promises.
type BurstBudgets struct {
	LagP50 time.Duration `mapstructure:"lag_p50"`
	LagP95 time.Duration `mapstructure:"lag_p95"`
	LagP99 time.Duration `mapstructure:"lag_p99"`
	// MaxLoss is the largest acceptable share of burst markers lost (0: none).
	MaxLoss float64 `mapstructure:"max_loss"`
	// RateTolerance is how far each step's achieved rate may fall from its
	// target, as a fraction (0.005: within 0.5%).
	RateTolerance float64 `mapstructure:"rate_tolerance"`
}

// BurstLoad shapes the load events: valid TelemetryEvents flagged synthetic,
// with some variety so the pipeline does realistic work.
type BurstLoad struct {
	ServiceNames []string `mapstructure:"service_names"`
	// Templates are log messages; placeholders are filled per event: {int},
	// {ms}, {ip}, {email}, {uuid}, {hex}, {word}, {path}, {text} (0-200
	// bytes of filler, for size variety).
	Templates []string `mapstructure:"templates"`
	// Severities are LEVEL=weight pairs; an empty list sends null.
	Severities []string `mapstructure:"severities"`
	// severities are Severities parsed, once, by Validate.
	severities []Severity
	// TraceShare is the fraction of events sent as traces, with trace_id and
	// span_id set.
	TraceShare float64 `mapstructure:"trace_share"`
}

// BurstProfile is one kind of burst: what load, and when.
type BurstProfile struct {
	// Schedule is a cron expression (5 fields, UTC, or @daily and the like);
	// empty: the profile runs only on demand.
	Schedule string `mapstructure:"schedule"`
	// Steps run one after the other, each "RATE for DURATION", with RATE as
	// N/s or N/min: "100000/min for 5m".
	Steps []string `mapstructure:"steps"`
	// Search, when its max is set, makes the profile a capacity search
	// instead of fixed steps: the highest rate the pipeline sustains.
	Search BurstSearch `mapstructure:"search"`
}

// BurstSearch configures a capacity search: steps of StepDuration, doubling
// from Start while they pass, then bisecting between the last pass and the
// first fail until they are within Precision of each other, never above Max
// (nor bursts.max_rate).
type BurstSearch struct {
	// Start and Max are rates, N/s or N/min; Max turns the search on. Start
	// defaults to a sixteenth of Max.
	Start string `mapstructure:"start"`
	Max   string `mapstructure:"max"`
	// StepDuration is how long each step's load is held; 0: 1m.
	StepDuration time.Duration `mapstructure:"step_duration"`
	// Precision is how close the last pass and the first fail must be, as a
	// fraction of the first fail; 0: 0.1.
	Precision float64 `mapstructure:"precision"`
	// Timeout caps the whole search, drains included; 0: 1h.
	Timeout time.Duration `mapstructure:"timeout"`
	// BacklogTolerance is how fast the watched consumer groups may fall
	// behind during a step, and how far the sink's processing rate may fall
	// short of the produce rate, as a fraction of the step's rate; 0: 0.05.
	BacklogTolerance float64 `mapstructure:"backlog_tolerance"`
	// LagGrowthTolerance is how fast the judged stage's marker lag may grow
	// during a step, in seconds per second of load: a pipeline processing
	// at 1/(1+x) of the rate falls behind by x of the time; 0: 0.02.
	LagGrowthTolerance float64 `mapstructure:"lag_growth_tolerance"`
}

// Search defaults, for zero fields.
const (
	DefaultSearchStepDuration     = time.Minute
	DefaultSearchPrecision        = 0.1
	DefaultSearchTimeout          = time.Hour
	DefaultSearchBacklogTolerance = 0.05
	DefaultSearchLagGrowth        = 0.02
)

// DefaultContractRate is SLO-Scout's steady throughput promise.
const DefaultContractRate = "100000/min"

// Search is a parsed BurstSearch, defaults applied.
type Search struct {
	Start, Max       float64 // events per second
	StepDuration     time.Duration
	Precision        float64
	Timeout          time.Duration
	BacklogTolerance float64
	LagGrowth        float64 // LagGrowthTolerance
}

// Enabled says whether the profile is a capacity search.
func (s BurstSearch) Enabled() bool { return s.Max != "" || s.Start != "" }

// Parse reads the search's rates and applies the defaults. key prefixes the
// errors (bursts.profiles.NAME.search).
func (s BurstSearch) Parse(key string) (Search, error) {
	out := Search{StepDuration: s.StepDuration, Precision: s.Precision, Timeout: s.Timeout,
		BacklogTolerance: s.BacklogTolerance, LagGrowth: s.LagGrowthTolerance}
	if s.Max == "" {
		return out, fmt.Errorf("%s.max: must be set: the highest rate to try, N/s or N/min", key)
	}
	var err error
	if out.Max, err = ParseRate(s.Max); err != nil {
		return out, fmt.Errorf("%s.max: %w", key, err)
	}
	out.Start = out.Max / 16
	if s.Start != "" {
		if out.Start, err = ParseRate(s.Start); err != nil {
			return out, fmt.Errorf("%s.start: %w", key, err)
		}
	}
	if out.Start > out.Max {
		return out, fmt.Errorf("%s.start: %s is above max %s", key, FormatRate(out.Start), FormatRate(out.Max))
	}
	if out.StepDuration == 0 {
		out.StepDuration = DefaultSearchStepDuration
	}
	if out.Precision == 0 {
		out.Precision = DefaultSearchPrecision
	}
	if out.Timeout == 0 {
		out.Timeout = DefaultSearchTimeout
	}
	if out.BacklogTolerance == 0 {
		out.BacklogTolerance = DefaultSearchBacklogTolerance
	}
	if out.LagGrowth == 0 {
		out.LagGrowth = DefaultSearchLagGrowth
	}
	return out, out.Check(key)
}

// Check checks a parsed search's values (after flags changed them too).
func (s Search) Check(key string) error {
	switch {
	case !(s.Start > 0) || !(s.Max > 0) || math.IsInf(s.Max, 0):
		return fmt.Errorf("%s: start and max must be positive rates", key)
	case s.Start > s.Max:
		return fmt.Errorf("%s.start: %s is above max %s", key, FormatRate(s.Start), FormatRate(s.Max))
	case s.StepDuration <= 0:
		return fmt.Errorf("%s.step_duration: must be positive, got %s", key, s.StepDuration)
	case !(s.Precision > 0 && s.Precision < 1):
		return fmt.Errorf("%s.precision: must be a fraction within (0, 1), got %v", key, s.Precision)
	case s.Timeout <= 0:
		return fmt.Errorf("%s.timeout: must be positive, got %s", key, s.Timeout)
	case !(s.BacklogTolerance > 0 && s.BacklogTolerance < 1):
		return fmt.Errorf("%s.backlog_tolerance: must be a fraction within (0, 1), got %v", key, s.BacklogTolerance)
	case !(s.LagGrowth > 0 && s.LagGrowth < 1):
		return fmt.Errorf("%s.lag_growth_tolerance: must be a fraction within (0, 1), got %v", key, s.LagGrowth)
	}
	return nil
}

// CheckSearch checks a search against the caps: its max within
// bursts.max_rate, and one step of max within bursts.max_events.
func (b Bursts) CheckSearch(key string, s Search) error {
	if err := s.Check(key); err != nil {
		return err
	}
	if s.Max > b.MaxRate {
		return fmt.Errorf("%s.max: %s (%.0f events/s) is above bursts.max_rate %v events/s", key, FormatRate(s.Max), s.Max, b.MaxRate)
	}
	if n := (Step{Rate: s.Max, Duration: s.StepDuration}).Events(); n > int64(b.MaxEvents) {
		return fmt.Errorf("%s: a step at max sends %d events, above bursts.max_events %d", key, n, b.MaxEvents)
	}
	return nil
}

// Contract is ContractRate in events per second (0 if it does not parse).
func (b Bursts) Contract() float64 {
	r, _ := ParseRate(b.ContractRate) // Validate rejects a bad one
	return r
}

// ConsumerLag watches the pipeline's consumer groups.
type ConsumerLag struct {
	Enabled  bool          `mapstructure:"enabled"`
	Groups   []string      `mapstructure:"groups"`
	Interval time.Duration `mapstructure:"interval"`
	// Timeout bounds one refresh (describe, offsets, one small fetch per
	// lagging partition).
	Timeout time.Duration `mapstructure:"timeout"`
}

// ContractSteps is SLO-Scout's throughput promise as a burst: 100,000
// events/min for 5 minutes, then twice that for 1 minute. The gate runs it
// when no profile is configured.
var ContractSteps = []string{"100000/min for 5m", "200000/min for 1m"}

// BurstsDefaults are the defaults of the bursts section.
func BurstsDefaults() Bursts {
	return Bursts{
		Enabled:     false,
		ReportDir:   "",
		Stage:       "database",
		MarkerShare: 0.002,
		MaxRate:     10000,
		MaxEvents:   2000000,
		Guard: BurstGuard{
			Interval:             5 * time.Second,
			MaxMarkerLag:         5 * time.Minute,
			MaxGroupLagRecords:   5000000,
			MaxGroupLag:          10 * time.Minute,
			MaxProduceErrorRatio: 0.01,
		},
		Budgets: BurstBudgets{
			LagP50:        30 * time.Second,
			LagP95:        60 * time.Second,
			LagP99:        90 * time.Second,
			MaxLoss:       0,
			RateTolerance: 0.005,
		},
		Load: BurstLoad{
			ServiceNames: []string{"slo-canary-load"},
			Templates: []string{
				"GET {path} completed with status 200 in {ms}ms",
				"user {email} logged in from {ip}",
				"order {uuid} placed with {int} items for {int} cents",
				"cache miss for key {hex}, fetching from origin",
				"payment {uuid} declined by issuer: {word}",
				"slow query took {ms}ms: SELECT * FROM {word} WHERE id = {int} {text}",
				"worker {int} heartbeat",
				"retrying request to {ip} after error: connection reset by peer {text}",
			},
			Severities: []string{"DEBUG=15", "INFO=70", "WARN=10", "ERROR=5"},
			// As Validate parses them (a loaded default config equals these).
			severities: []Severity{{"DEBUG", 15}, {"INFO", 70}, {"WARN", 10}, {"ERROR", 5}},
			TraceShare: 0.3,
		},
		// No profile by default: nil, as a file without any loads.
		Profiles:     nil,
		ContractRate: DefaultContractRate,
	}
}

// ConsumerLagDefaults watch the contract's consumer groups: Flink's
// fingerprinting job and the backend's capsule consumer. Not the
// capsule-ingest-consumer SLO-Scout's performance README names instead of
// the latter: a group that does not exist is reported down, and at most one
// of the two does, so naming both would raise SLOScoutConsumerGroupDown on
// every healthy install.
func ConsumerLagDefaults() ConsumerLag {
	return ConsumerLag{
		Enabled:  true,
		Groups:   []string{"fingerprinting-job", "capsule-consumer"},
		Interval: 30 * time.Second,
		Timeout:  10 * time.Second,
	}
}

// Step is one parsed burst step.
type Step struct {
	Rate     float64 // events per second
	Duration time.Duration
}

// Events is how many events the step sends.
func (s Step) Events() int64 { return int64(math.Round(s.Rate * s.Duration.Seconds())) }

func (s Step) String() string { return FormatRate(s.Rate) + " for " + FormatDuration(s.Duration) }

// ParseRate reads "N/s" or "N/min" (also "N/m", "N/h") as events per second.
func ParseRate(s string) (float64, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("rate %q: want N/s or N/min, such as 100000/min", s)
	}
	n, err := strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(num), "_", ""), 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) || n <= 0 {
		return 0, fmt.Errorf("rate %q: %q is not a positive number", s, num)
	}
	switch strings.TrimSpace(unit) {
	case "s", "sec":
		return n, nil
	case "min", "m":
		return n / 60, nil
	case "h":
		return n / 3600, nil
	}
	return 0, fmt.Errorf("rate %q: unknown unit %q (s or min)", s, unit)
}

// FormatRate writes a rate the way ParseRate reads it, per minute when that
// is a whole number.
func FormatRate(perSec float64) string {
	if m := perSec * 60; m == math.Trunc(m) && m >= 60 && math.Mod(m, 60) != 0 {
		return strconv.FormatFloat(m, 'f', -1, 64) + "/min"
	}
	return strconv.FormatFloat(perSec, 'f', -1, 64) + "/s"
}

// ParseStep reads "RATE for DURATION".
func ParseStep(s string) (Step, error) {
	r, d, ok := strings.Cut(s, " for ")
	if !ok {
		return Step{}, fmt.Errorf("step %q: want \"RATE for DURATION\", such as \"100000/min for 5m\"", s)
	}
	rate, err := ParseRate(r)
	if err != nil {
		return Step{}, fmt.Errorf("step %q: %w", s, err)
	}
	dur, err := time.ParseDuration(strings.TrimSpace(d))
	if err != nil || dur <= 0 {
		return Step{}, fmt.Errorf("step %q: duration %q must be positive, with a unit (30s, 5m)", s, strings.TrimSpace(d))
	}
	return Step{Rate: rate, Duration: dur}, nil
}

// ParseSteps parses every step of a profile.
func ParseSteps(steps []string) ([]Step, error) {
	out := make([]Step, 0, len(steps))
	for _, s := range steps {
		st, err := ParseStep(s)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// CheckSteps checks parsed steps against the caps. key names what is checked
// in the error (a config key or a flag).
func (b Bursts) CheckSteps(key string, steps []Step) error {
	if len(steps) == 0 {
		return fmt.Errorf("%s: no steps: a burst needs at least one \"RATE for DURATION\"", key)
	}
	var total int64
	for i, st := range steps {
		if st.Rate > b.MaxRate {
			return fmt.Errorf("%s[%d]: rate %s (%.0f events/s) is above bursts.max_rate %v events/s", key, i, FormatRate(st.Rate), st.Rate, b.MaxRate)
		}
		total += st.Events()
	}
	if total > int64(b.MaxEvents) {
		return fmt.Errorf("%s: %d events in total, above bursts.max_events %d", key, total, b.MaxEvents)
	}
	return nil
}

// ParsedSeverities are Severities as Validate last parsed them (nil if they
// did not parse): set Severities, then Validate.
func (l BurstLoad) ParsedSeverities() []Severity { return l.severities }

// Severity is one parsed LEVEL=weight entry of bursts.load.severities.
type Severity struct {
	Level  string
	Weight int
}

// ParseSeverities reads LEVEL=weight pairs.
func ParseSeverities(list []string) ([]Severity, error) {
	var out []Severity
	for _, s := range list {
		lvl, w, ok := strings.Cut(s, "=")
		n, err := strconv.Atoi(strings.TrimSpace(w))
		lvl = strings.TrimSpace(lvl)
		if !ok || err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want LEVEL=weight with a positive integer weight, such as INFO=70", s)
		}
		if !slices.Contains(severityLevels, lvl) {
			return nil, fmt.Errorf("%q: unknown level %q (one of: %s)", s, lvl, strings.Join(severityLevels, ", "))
		}
		out = append(out, Severity{Level: lvl, Weight: n})
	}
	return out, nil
}

var severityLevels = []string{"DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

// Placeholders are the names a load template may use, in braces.
var Placeholders = []string{"int", "ms", "ip", "email", "uuid", "hex", "word", "path", "text"}

// checkTemplate reports the first unknown or unclosed placeholder.
func checkTemplate(t string) error {
	for rest := t; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return nil
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Errorf("unclosed placeholder in %q", t)
		}
		if name := rest[i+1 : i+j]; !slices.Contains(Placeholders, name) {
			return fmt.Errorf("unknown placeholder {%s} in %q (known: %s)", name, t, strings.Join(Placeholders, ", "))
		}
		rest = rest[i+j+1:]
	}
}

func (b *Bursts) validate(p *problems, c *Config) {
	if !(b.MarkerShare > 0 && b.MarkerShare <= 1) {
		p.add("bursts.marker_share", "must be within (0, 1], got %v", b.MarkerShare)
	}
	if !(b.MaxRate > 0) || math.IsInf(b.MaxRate, 0) {
		p.add("bursts.max_rate", "must be a positive number of events per second, got %v", b.MaxRate)
	}
	if b.MaxEvents < 1 {
		p.add("bursts.max_events", "must be at least 1, got %d", b.MaxEvents)
	}
	if _, err := ParseRate(b.ContractRate); err != nil {
		p.add("bursts.contract_rate", "%v", err)
	}
	if b.ScaleOut && !c.Coordination.Enabled {
		p.add("bursts.scale_out", "needs coordination.enabled: the replicas share a burst through the coordination group")
	}
	if b.Enabled {
		if o, ok := c.Observers[b.Stage]; !ok || !o.Enabled {
			p.add("bursts.stage", "%q is not an enabled observer: bursts are judged at one (enabled: %s)", b.Stage, strings.Join(c.EnabledObservers(), ", "))
		}
	} else if b.Stage == "" {
		p.add("bursts.stage", "must not be empty")
	}
	g := b.Guard
	p.positive("bursts.guard.interval", g.Interval)
	if g.MaxMarkerLag < 0 {
		p.add("bursts.guard.max_marker_lag", "must not be negative (0: off), got %s", g.MaxMarkerLag)
	}
	if g.MaxGroupLagRecords < 0 {
		p.add("bursts.guard.max_group_lag_records", "must not be negative (0: off), got %d", g.MaxGroupLagRecords)
	}
	if g.MaxGroupLag < 0 {
		p.add("bursts.guard.max_group_lag", "must not be negative (0: off), got %s", g.MaxGroupLag)
	}
	if !(g.MaxProduceErrorRatio >= 0 && g.MaxProduceErrorRatio <= 1) {
		p.add("bursts.guard.max_produce_error_ratio", "must be within [0, 1] (0: off), got %v", g.MaxProduceErrorRatio)
	}
	bu := b.Budgets
	p.positive("bursts.budgets.lag_p50", bu.LagP50)
	p.positive("bursts.budgets.lag_p95", bu.LagP95)
	p.positive("bursts.budgets.lag_p99", bu.LagP99)
	if !(bu.MaxLoss >= 0 && bu.MaxLoss <= 1) {
		p.add("bursts.budgets.max_loss", "must be a fraction within [0, 1], got %v", bu.MaxLoss)
	}
	if !(bu.RateTolerance >= 0 && bu.RateTolerance < 1) {
		p.add("bursts.budgets.rate_tolerance", "must be a fraction within [0, 1), got %v", bu.RateTolerance)
	}
	l := b.Load
	if len(l.ServiceNames) == 0 {
		p.add("bursts.load.service_names", "empty: at least one service name is required")
	}
	for i, s := range l.ServiceNames {
		if s == "" {
			p.add(fmt.Sprintf("bursts.load.service_names[%d]", i), "must not be empty")
		}
	}
	if len(l.Templates) == 0 {
		p.add("bursts.load.templates", "empty: at least one message template is required")
	}
	for i, t := range l.Templates {
		if err := checkTemplate(t); err != nil {
			p.add(fmt.Sprintf("bursts.load.templates[%d]", i), "%v", err)
		}
	}
	sev, err := ParseSeverities(l.Severities)
	if err != nil {
		p.add("bursts.load.severities", "%v", err)
	}
	b.Load.severities = sev
	if !(l.TraceShare >= 0 && l.TraceShare <= 1) {
		p.add("bursts.load.trace_share", "must be within [0, 1], got %v", l.TraceShare)
	}
	scheduled := 0
	for _, name := range slices.Sorted(maps.Keys(b.Profiles)) {
		pr := b.Profiles[name]
		key := "bursts.profiles." + name
		if !observerNameRE.MatchString(name) {
			p.add("bursts.profiles", "invalid name %q: it must match %s (it becomes a metric label value)", name, observerNameRE)
			continue
		}
		if pr.Schedule != "" {
			scheduled++
			if _, err := cron.ParseStandard(pr.Schedule); err != nil {
				p.add(key+".schedule", "invalid cron expression %q: %v (5 fields, UTC, or @hourly, @daily, @every 6h)", pr.Schedule, err)
			}
		}
		if pr.Search.Enabled() {
			if len(pr.Steps) > 0 {
				p.add(key, "has both steps and a search: a profile is one or the other")
				continue
			}
			s, err := pr.Search.Parse(key + ".search")
			if err == nil {
				err = b.CheckSearch(key+".search", s)
			}
			if err != nil {
				*p = append(*p, err)
			}
			continue
		}
		steps, err := ParseSteps(pr.Steps)
		if err != nil {
			p.add(key+".steps", "%v", err)
			continue
		}
		if err := b.CheckSteps(key+".steps", steps); err != nil {
			*p = append(*p, err)
		}
	}
	if b.Enabled && scheduled == 0 {
		p.add("bursts.enabled", "true, but no profile under bursts.profiles has a schedule")
	}
}

func (cl ConsumerLag) validate(p *problems) {
	if !cl.Enabled {
		return
	}
	if len(cl.Groups) == 0 {
		p.add("consumer_lag.groups", "empty while consumer_lag.enabled: name at least one group, or disable it")
	}
	for i, g := range cl.Groups {
		if strings.TrimSpace(g) == "" {
			p.add(fmt.Sprintf("consumer_lag.groups[%d]", i), "must not be empty")
		}
	}
	p.positive("consumer_lag.interval", cl.Interval)
	p.positive("consumer_lag.timeout", cl.Timeout)
}

// Profile returns the named profile's steps, parsed. An empty name with no
// profile configured gives ContractSteps, named "contract".
func (b Bursts) Profile(name string) (string, []Step, error) {
	if name == "" {
		switch len(b.Profiles) {
		case 0:
			steps, err := ParseSteps(ContractSteps)
			return "contract", steps, err
		case 1:
			for n := range b.Profiles {
				name = n
			}
		default:
			return "", nil, fmt.Errorf("several burst profiles are configured (%s): name one", strings.Join(slices.Sorted(maps.Keys(b.Profiles)), ", "))
		}
	}
	pr, ok := b.Profiles[name]
	if !ok {
		return "", nil, fmt.Errorf("no burst profile %q under bursts.profiles", name)
	}
	if pr.Search.Enabled() {
		return "", nil, fmt.Errorf("burst profile %q is a capacity search (bursts.profiles.%s.search): run it with slo-canary capacity", name, name)
	}
	steps, err := ParseSteps(pr.Steps)
	if err != nil {
		return "", nil, fmt.Errorf("bursts.profiles.%s.steps: %w", name, err)
	}
	return name, steps, nil
}

// SearchProfile returns the named profile's search, parsed. An empty name
// picks the only profile with a search.
func (b Bursts) SearchProfile(name string) (string, Search, error) {
	if name == "" {
		var names []string
		for _, n := range slices.Sorted(maps.Keys(b.Profiles)) {
			if b.Profiles[n].Search.Enabled() {
				names = append(names, n)
			}
		}
		switch len(names) {
		case 0:
			return "", Search{}, errors.New("no burst profile has a search (bursts.profiles.<name>.search)")
		case 1:
			name = names[0]
		default:
			return "", Search{}, fmt.Errorf("several burst profiles have a search (%s): name one", strings.Join(names, ", "))
		}
	}
	pr, ok := b.Profiles[name]
	if !ok {
		return "", Search{}, fmt.Errorf("no burst profile %q under bursts.profiles", name)
	}
	if !pr.Search.Enabled() {
		return "", Search{}, fmt.Errorf("burst profile %q has no search (bursts.profiles.%s.search)", name, name)
	}
	s, err := pr.Search.Parse("bursts.profiles." + name + ".search")
	return name, s, err
}
