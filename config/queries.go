package config

import (
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/robfig/cron/v3"
)

// Queries configures the query probes: SLO-Scout's API (and, optionally,
// TimescaleDB) timed continuously at a low rate, and under scheduled
// concurrency, open-loop.
type Queries struct {
	// Enabled runs the continuous probes and schedules the concurrency runs.
	// `slo-canary queries --once` runs the concurrency runs whatever it says.
	Enabled bool `mapstructure:"enabled"`
	// BaseURL is where HTTP probe paths are resolved.
	BaseURL string    `mapstructure:"base_url"`
	Auth    QueryAuth `mapstructure:"auth"`
	// Probes by name; the name is the "probe" metric label.
	Probes map[string]QueryProbe `mapstructure:"probes"`
	// JourneyDiscovery is where probes that use {journey_id} and list no
	// rotate.journey_ids take their journeys from.
	JourneyDiscovery JourneyDiscovery `mapstructure:"journey_discovery"`
	Evidence         Evidence         `mapstructure:"evidence"`
	// Concurrency runs by name; the name is the "run" metric label.
	Concurrency map[string]ConcurrencyRun `mapstructure:"concurrency"`
}

// QueryAuth is how HTTP probes authenticate: a static bearer token, or a
// signing key from which they mint short-lived HS256 JWTs, as SLO-Scout
// expects (iss, aud, sub, iat, exp). Secrets only from the environment or
// their *_file keys.
type QueryAuth struct {
	Token             Secret        `mapstructure:"token"`
	TokenFile         string        `mapstructure:"token_file"`
	JWTSigningKey     Secret        `mapstructure:"jwt_signing_key"`
	JWTSigningKeyFile string        `mapstructure:"jwt_signing_key_file"`
	JWTIssuer         string        `mapstructure:"jwt_issuer"`
	JWTAudience       string        `mapstructure:"jwt_audience"`
	JWTSubject        string        `mapstructure:"jwt_subject"`
	JWTTTL            time.Duration `mapstructure:"jwt_ttl"`
}

// QueryProbe is one timed query: an HTTP request or a read-only SQL query.
type QueryProbe struct {
	Enabled bool   `mapstructure:"enabled"`
	Type    string `mapstructure:"type"` // http or sql
	// Method, Path, Params and Headers make the HTTP request. Path is resolved
	// against queries.base_url (or is a whole URL); Params are "name=value"
	// and Headers "Name: value". Path, param values and header values may hold
	// {journey_id} and {service}, filled in turn from Rotate's lists.
	Method  string      `mapstructure:"method"`
	Path    string      `mapstructure:"path"`
	Params  []string    `mapstructure:"params"`
	Rotate  QueryRotate `mapstructure:"rotate"`
	Headers []string    `mapstructure:"headers"`
	// ExpectStatus lists the statuses that may succeed: "200", or a class
	// such as "2xx".
	ExpectStatus []string `mapstructure:"expect_status"`
	// ExpectJSON is a dotted path (slis, data.items, items.0.id) that must be
	// present in the JSON body and non-empty; "" checks no body.
	ExpectJSON string `mapstructure:"expect_json"`
	// Timeout bounds one request (or SQL query).
	Timeout time.Duration `mapstructure:"timeout"`
	// Interval is the mean time between continuous requests, jittered.
	Interval time.Duration `mapstructure:"interval"`
	// Budget is the latency SLI threshold: a request is good if it succeeds
	// within it.
	Budget time.Duration `mapstructure:"budget"`
	// SQL is the database connection and the query of an sql probe: the
	// observers' sql section, with a query that takes no parameters.
	SQL SQLObserver `mapstructure:"sql"`
}

// QueryRotate lists the values placeholders take, in turn, so that a probe
// does not keep hitting one cache entry. An empty JourneyIDs under a probe
// that uses {journey_id} means: the journeys queries.journey_discovery finds.
type QueryRotate struct {
	JourneyIDs []string `mapstructure:"journey_ids"`
	Services   []string `mapstructure:"services"`
}

// JourneyDiscovery asks SLO-Scout which journeys exist, so that the SLI
// probes query real ones without a list kept by hand: GET Path with
// service_name (each of Services) and environment, every Refresh. The
// probes rotate through every journey id the answers hold; with none, their
// requests are not sent and end as no_journeys, outside the query SLI.
type JourneyDiscovery struct {
	// Path is SLO-Scout's journeys endpoint, under queries.base_url (or a
	// whole URL).
	Path string `mapstructure:"path"`
	// Services are the service_name values asked for: the services whose
	// journeys the probes query.
	Services []string `mapstructure:"services"`
	// Environment is the environment parameter: prod, staging or dev.
	Environment string `mapstructure:"environment"`
	// Refresh is how often the list is asked for again; while it is empty,
	// every 30 s (or Refresh, if shorter).
	Refresh time.Duration `mapstructure:"refresh"`
	// Timeout bounds one request.
	Timeout time.Duration `mapstructure:"timeout"`
}

// DiscoversJourneys reports whether probe p takes its journey ids from
// queries.journey_discovery: an http probe that uses {journey_id} and lists
// none.
func (p QueryProbe) DiscoversJourneys() bool {
	if p.Type != "http" || len(p.Rotate.JourneyIDs) > 0 {
		return false
	}
	for _, s := range append(append([]string{p.Path}, p.Params...), p.Headers...) {
		names, _ := TemplatePlaceholders(s) // validation reports errors
		if slices.Contains(names, "journey_id") {
			return true
		}
	}
	return false
}

// Evidence pairs two SLI probes, with and without evidence, whose latency
// difference is SLO-Scout's vector-search overhead.
type Evidence struct {
	With    string `mapstructure:"with"`
	Without string `mapstructure:"without"`
	// Window is how far back the matched percentiles of both probes reach.
	Window time.Duration `mapstructure:"window"`
	// Budget is the largest acceptable overhead at the 95th percentile.
	Budget time.Duration `mapstructure:"budget"`
}

// ConcurrencyRun is a scheduled open-loop load on one probe: Rate requests per
// second over Clients concurrent clients for Duration, each request's latency
// measured from when it was due.
type ConcurrencyRun struct {
	Enabled bool `mapstructure:"enabled"`
	// Schedule is a cron expression (5 fields, UTC, or @daily and the like);
	// empty: the run happens only on demand.
	Schedule string        `mapstructure:"schedule"`
	Probe    string        `mapstructure:"probe"`
	Clients  int           `mapstructure:"clients"`
	Duration time.Duration `mapstructure:"duration"`
	Rate     float64       `mapstructure:"rate"`
	// Budgets; 0 leaves one unjudged.
	BudgetP95       time.Duration `mapstructure:"budget_p95"`
	BudgetP99       time.Duration `mapstructure:"budget_p99"`
	MinSuccessRatio float64       `mapstructure:"min_success_ratio"`
}

var queryProbeType = reflect.TypeFor[QueryProbe]()

// QueryPlaceholders are the names a probe's path, params and headers may use
// in braces, and the rotation list each is filled from.
var QueryPlaceholders = map[string]string{"journey_id": "rotate.journey_ids", "service": "rotate.services"}

// QueryMethods are the HTTP methods a probe may use.
var QueryMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// PlaceholderJourneyID stands in for a real journey: SLO-Scout answers it
// with no SLIs, so a probe that lists it fails (bad_body). Earlier defaults
// listed it; the defaults now discover journeys (queries.journey_discovery).
const PlaceholderJourneyID = "00000000-0000-0000-0000-000000000000"

// Warnings lists what in c is valid but almost certainly not meant: each
// names its key. check-config prints them; the daemon logs them at start and
// on every reload.
func (c *Config) Warnings() []string {
	var w []string
	if c.Queries.Enabled {
		for _, name := range c.Queries.EnabledProbes() {
			p := c.Queries.Probes[name]
			if p.Type == "http" && slices.Contains(p.Rotate.JourneyIDs, PlaceholderJourneyID) {
				w = append(w, fmt.Sprintf("queries.probes.%s.rotate.journey_ids: holds the placeholder %s, which SLO-Scout answers with no SLIs: the probe fails (bad_body) until real journey ids are listed",
					name, PlaceholderJourneyID))
			}
		}
	}
	if strings.EqualFold(c.Kafka.SASL.Mechanism, "plain") && !c.Kafka.TLS.Enabled {
		w = append(w, "kafka.sasl.mechanism: plain without kafka.tls.enabled sends the password in clear text")
	}
	if c.Kafka.TLS.Enabled && c.Kafka.TLS.InsecureSkipVerify {
		w = append(w, "kafka.tls.insecure_skip_verify: the brokers' certificates are not verified; anyone on the path can read and change the canary's traffic")
	}
	for _, v := range c.ignoredEnv {
		w = append(w, v.String())
	}
	return w
}

// DefaultSQLProbeQuery counts recent events, bounded on the hypertable's time
// column so that TimescaleDB reads only the newest chunks.
const DefaultSQLProbeQuery = `SELECT count(*) FROM telemetry_events WHERE "timestamp" > now() - interval '5 minutes'`

// QueriesDefaults probe SLO-Scout's backend as its Helm chart names it.
func QueriesDefaults() Queries {
	sli := func(evidence string, budget time.Duration) QueryProbe {
		p := QueryProbeDefaults()
		p.Type = "http"
		p.Path = "/api/v1/sli"
		p.Params = []string{"journey_id={journey_id}", "include_evidence=" + evidence}
		// No journey ids: queries.journey_discovery finds them.
		p.ExpectJSON = "slis"
		p.Budget = budget
		return p
	}
	journeys := QueryProbeDefaults()
	journeys.Type = "http"
	journeys.Path = "/api/v1/journeys"
	journeys.Params = []string{"service_name={service}", "environment=prod"}
	journeys.Rotate.Services = []string{"slo-canary"}
	// total_count, not journeys: a service without journeys yet is an
	// answer, not a failure.
	journeys.ExpectJSON = "total_count"
	health := QueryProbeDefaults()
	health.Type = "http"
	health.Path = "/health"
	health.ExpectJSON = "status"
	health.Budget = time.Second
	db := QueryProbeDefaults()
	db.Enabled = false
	db.Type = "sql"
	db.Method = ""
	db.ExpectStatus = []string{}
	db.Budget = time.Second
	db.SQL.DSN = "postgres://slo_canary@slo-scout-timescaledb:5432/slo_scout?sslmode=prefer"
	db.SQL.Query = DefaultSQLProbeQuery

	c100 := ConcurrencyRunDefaults()
	c100.Schedule = "0 3 * * *"
	c200 := ConcurrencyRunDefaults()
	c200.Schedule = "30 3 * * *"
	c200.Clients = 200
	c200.Rate = 40
	c200.BudgetP95 = 0
	c200.BudgetP99 = 5 * time.Second

	return Queries{
		Enabled: true,
		BaseURL: "http://slo-scout-backend:8000",
		Auth: QueryAuth{
			JWTIssuer:   "slo-scout",
			JWTAudience: "slo-scout-api",
			JWTSubject:  "slo-canary",
			JWTTTL:      5 * time.Minute,
		},
		Probes: map[string]QueryProbe{
			"sli_evidence": sli("true", 2*time.Second),
			"sli":          sli("false", time.Second),
			"journeys":     journeys,
			"health":       health,
			"timescaledb":  db,
		},
		JourneyDiscovery: JourneyDiscovery{
			Path:        "/api/v1/journeys",
			Services:    []string{"slo-canary"},
			Environment: "prod",
			Refresh:     5 * time.Minute,
			Timeout:     10 * time.Second,
		},
		Evidence: Evidence{With: "sli_evidence", Without: "sli", Window: time.Hour, Budget: time.Second},
		Concurrency: map[string]ConcurrencyRun{
			"c100": c100,
			"c200": c200,
		},
	}
}

// QueryProbeDefaults are what a probe added in the file or the environment
// starts from. Type, and path or query, must be set.
func QueryProbeDefaults() QueryProbe {
	// Empty lists, not nil ones: a file's "params: []" loads as an empty
	// list, and must equal the default it restates.
	return QueryProbe{
		Enabled:      true,
		Method:       http.MethodGet,
		Params:       []string{},
		Rotate:       QueryRotate{JourneyIDs: []string{}, Services: []string{}},
		Headers:      []string{},
		ExpectStatus: []string{"200"},
		Timeout:      10 * time.Second,
		Interval:     10 * time.Second,
		Budget:       2 * time.Second,
		SQL:          SQLObserver{StatementTimeout: 5 * time.Second, MaxConns: 2},
	}
}

// ConcurrencyRunDefaults are what a run added in the file or the environment
// starts from: the contract's 100 concurrent SLI queries, p95 under 2 s. The
// rate is clients / budget: the load at which every client is busy exactly
// when each answer takes the whole budget.
func ConcurrencyRunDefaults() ConcurrencyRun {
	return ConcurrencyRun{
		Enabled:         true,
		Probe:           "sli",
		Clients:         100,
		Duration:        time.Minute,
		Rate:            50,
		BudgetP95:       2 * time.Second,
		MinSuccessRatio: 0.95,
	}
}

// EnabledProbes returns the names of the enabled query probes, sorted.
func (q Queries) EnabledProbes() []string {
	var names []string
	for name, p := range q.Probes {
		if p.Enabled {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// moveDSNPasswords moves passwords written into sql probe DSNs (from the
// environment) into their secrets, as for observers.
func (q *Queries) moveDSNPasswords() []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(q.Probes)) {
		p := q.Probes[name]
		errs = append(errs, moveDSNPassword("queries.probes."+name+".sql", &p.SQL))
		q.Probes[name] = p
	}
	return errs
}

// readSecretFiles fills the section's secrets from their *_file keys with
// read (see the package's readSecretFiles).
func (q *Queries) readSecretFiles(read func(key string, s *Secret, path string)) {
	read("queries.auth.token", &q.Auth.Token, q.Auth.TokenFile)
	read("queries.auth.jwt_signing_key", &q.Auth.JWTSigningKey, q.Auth.JWTSigningKeyFile)
	for _, name := range slices.Sorted(maps.Keys(q.Probes)) {
		p := q.Probes[name]
		read("queries.probes."+name+".sql.password", &p.SQL.Password, p.SQL.PasswordFile)
		q.Probes[name] = p
	}
}

func (q Queries) validate(p *problems) {
	if u, err := url.Parse(q.BaseURL); err != nil {
		p.add("queries.base_url", "%q is not a URL: %v", q.BaseURL, unwrapURLError(err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("queries.base_url", "%q must be an absolute http:// or https:// URL", q.BaseURL)
	}
	a := q.Auth
	if a.Token != "" && a.JWTSigningKey != "" {
		p.add("queries.auth.token", "set, and queries.auth.jwt_signing_key too: a static token or minted JWTs, not both")
	}
	p.positive("queries.auth.jwt_ttl", a.JWTTTL)
	if a.JWTSigningKey != "" {
		for key, v := range map[string]string{"jwt_issuer": a.JWTIssuer, "jwt_audience": a.JWTAudience, "jwt_subject": a.JWTSubject} {
			if v == "" {
				p.add("queries.auth."+key, "must not be empty while a jwt_signing_key is set")
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(q.Probes)) {
		if !observerNameRE.MatchString(name) {
			p.add("queries.probes", "invalid name %q: it must match %s (it becomes a metric label value)", name, observerNameRE)
			continue
		}
		q.Probes[name].validate(p, "queries.probes."+name, q.BaseURL)
	}
	q.validateDiscovery(p)
	q.validateEvidence(p)
	for _, name := range slices.Sorted(maps.Keys(q.Concurrency)) {
		if !observerNameRE.MatchString(name) {
			p.add("queries.concurrency", "invalid name %q: it must match %s (it becomes a metric label value)", name, observerNameRE)
			continue
		}
		q.validateRun(p, name)
	}
}

func (qp QueryProbe) validate(p *problems, key, baseURL string) {
	p.positive(key+".timeout", qp.Timeout)
	p.positive(key+".interval", qp.Interval)
	p.positive(key+".budget", qp.Budget)
	switch qp.Type {
	case "http":
		qp.validateHTTP(p, key, baseURL)
	case "sql":
		s := qp.SQL
		if s.DSN == "" {
			p.add(key+".sql.dsn", "required by type sql")
		} else if err := checkDSN(s.DSN); err != "" {
			p.add(key+".sql.dsn", "invalid DSN %s: %s", RedactDSN(s.DSN), err)
		}
		if strings.TrimSpace(s.Query) == "" {
			p.add(key+".sql.query", "required by type sql")
		}
		p.positive(key+".sql.statement_timeout", s.StatementTimeout)
		if s.MaxConns < 1 {
			p.add(key+".sql.max_conns", "must be at least 1, got %d", s.MaxConns)
		}
	case "":
		p.add(key+".type", "required: http or sql")
	default:
		p.add(key+".type", "unknown type %q (http or sql)", qp.Type)
	}
}

func (qp QueryProbe) validateHTTP(p *problems, key, baseURL string) {
	if !slices.Contains(QueryMethods, qp.Method) {
		p.add(key+".method", "unknown method %q (one of: %s)", qp.Method, strings.Join(QueryMethods, ", "))
	}
	used := map[string]bool{}
	check := func(k, s string) bool {
		names, err := TemplatePlaceholders(s)
		if err != nil {
			p.add(k, "%v", err)
			return false
		}
		for _, n := range names {
			used[n] = true
		}
		return true
	}
	if qp.Path == "" {
		p.add(key+".path", "required by type http")
	} else if check(key+".path", qp.Path) {
		if _, err := ResolveURL(baseURL, FillPlaceholders(qp.Path, nil)); err != nil {
			p.add(key+".path", "%q: %v", qp.Path, err)
		}
	}
	for i, s := range qp.Params {
		k := fmt.Sprintf("%s.params[%d]", key, i)
		if _, _, err := ParseParam(s); err != nil {
			p.add(k, "%v", err)
			continue
		}
		check(k, s)
	}
	for i, s := range qp.Headers {
		k := fmt.Sprintf("%s.headers[%d]", key, i)
		if _, _, err := ParseHeader(s); err != nil {
			p.add(k, "%v", err)
			continue
		}
		check(k, s)
	}
	for n := range used {
		list := qp.Rotate.JourneyIDs
		if n == "service" {
			list = qp.Rotate.Services
		} else if len(list) == 0 {
			continue // discovered: validateDiscovery checks what finds them
		}
		if len(list) == 0 {
			p.add(key+"."+QueryPlaceholders[n], "empty, but {%s} is used: list at least one value", n)
		}
	}
	if len(qp.ExpectStatus) == 0 {
		p.add(key+".expect_status", "empty: list the statuses that succeed, such as 200 or 2xx")
	}
	for i, s := range qp.ExpectStatus {
		if _, _, err := ParseStatus(s); err != nil {
			p.add(fmt.Sprintf("%s.expect_status[%d]", key, i), "%v", err)
		}
	}
	if qp.ExpectJSON != "" && slices.Contains(strings.Split(qp.ExpectJSON, "."), "") {
		p.add(key+".expect_json", "%q is not a dotted path such as slis or data.items.0", qp.ExpectJSON)
	}
}

// validateDiscovery checks queries.journey_discovery when an enabled probe
// takes its journeys from it; unused, it is not judged.
func (q Queries) validateDiscovery(p *problems) {
	var users []string
	for _, name := range slices.Sorted(maps.Keys(q.Probes)) {
		if pr := q.Probes[name]; pr.Enabled && pr.DiscoversJourneys() {
			users = append(users, name)
		}
	}
	if len(users) == 0 {
		return
	}
	d := q.JourneyDiscovery
	const key = "queries.journey_discovery"
	if len(d.Services) == 0 {
		for _, name := range users {
			p.add("queries.probes."+name+".rotate.journey_ids", "empty, but {journey_id} is used, and %s.services is empty: list journey ids, or the services whose journeys to discover", key)
		}
	}
	for i, s := range d.Services {
		if strings.TrimSpace(s) == "" {
			p.add(fmt.Sprintf("%s.services[%d]", key, i), "must not be empty")
		}
	}
	if strings.TrimSpace(d.Environment) == "" {
		p.add(key+".environment", "must not be empty (SLO-Scout requires it: prod, staging or dev)")
	}
	if d.Path == "" {
		p.add(key+".path", "must not be empty")
	} else if _, err := ResolveURL(q.BaseURL, d.Path); err != nil {
		p.add(key+".path", "%q: %v", d.Path, err)
	}
	p.positive(key+".refresh", d.Refresh)
	p.positive(key+".timeout", d.Timeout)
}

func (q Queries) validateEvidence(p *problems) {
	e := q.Evidence
	if (e.With == "") != (e.Without == "") {
		p.add("queries.evidence", "set both with and without, or neither (no overhead measured)")
		return
	}
	if e.With == "" {
		return
	}
	for k, name := range map[string]string{"with": e.With, "without": e.Without} {
		if pr, ok := q.Probes[name]; !ok {
			p.add("queries.evidence."+k, "%q is not a probe under queries.probes", name)
		} else if pr.Type != "http" {
			p.add("queries.evidence."+k, "probe %q has type %q: the overhead is measured between http probes", name, pr.Type)
		}
	}
	if e.With == e.Without {
		p.add("queries.evidence.without", "is the same probe as queries.evidence.with")
	}
	p.positive("queries.evidence.window", e.Window)
	p.positive("queries.evidence.budget", e.Budget)
}

func (q Queries) validateRun(p *problems, name string) {
	r := q.Concurrency[name]
	key := "queries.concurrency." + name
	if r.Schedule != "" {
		if _, err := cron.ParseStandard(r.Schedule); err != nil {
			p.add(key+".schedule", "invalid cron expression %q: %v (5 fields, UTC, or @hourly, @daily, @every 6h)", r.Schedule, err)
		}
	}
	if _, ok := q.Probes[r.Probe]; !ok {
		p.add(key+".probe", "%q is not a probe under queries.probes", r.Probe)
	}
	if r.Clients < 1 || r.Clients > 10000 {
		p.add(key+".clients", "must be within [1, 10000], got %d", r.Clients)
	}
	p.positive(key+".duration", r.Duration)
	if !(r.Rate > 0 && r.Rate <= 100000) {
		p.add(key+".rate", "must be a number of requests per second within (0, 100000], got %v", r.Rate)
	}
	if r.BudgetP95 < 0 {
		p.add(key+".budget_p95", "must not be negative (0: not judged), got %s", r.BudgetP95)
	}
	if r.BudgetP99 < 0 {
		p.add(key+".budget_p99", "must not be negative (0: not judged), got %s", r.BudgetP99)
	}
	if !(r.MinSuccessRatio >= 0 && r.MinSuccessRatio <= 1) {
		p.add(key+".min_success_ratio", "must be within [0, 1] (0: not judged), got %v", r.MinSuccessRatio)
	}
	if r.BudgetP95 == 0 && r.BudgetP99 == 0 && r.MinSuccessRatio == 0 {
		p.add(key, "judges nothing: set budget_p95, budget_p99 or min_success_ratio")
	}
	if math.Ceil(r.Rate*r.Duration.Seconds()) > 10_000_000 {
		p.add(key+".duration", "%s at %v/s is more than 10,000,000 requests", r.Duration, r.Rate)
	}
}

// TemplatePlaceholders returns the query placeholder names s uses, in order; an unknown or
// unclosed one is an error.
func TemplatePlaceholders(s string) ([]string, error) {
	var names []string
	for rest := s; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return nil, fmt.Errorf("stray '}' in %q", s)
			}
			return names, nil
		}
		if strings.IndexByte(rest[:i], '}') >= 0 {
			return nil, fmt.Errorf("stray '}' in %q", s)
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed placeholder in %q", s)
		}
		name := rest[i+1 : i+j]
		if _, ok := QueryPlaceholders[name]; !ok {
			return nil, fmt.Errorf("unknown placeholder {%s} in %q (known: {journey_id}, {service})", name, s)
		}
		names = append(names, name)
		rest = rest[i+j+1:]
	}
}

// FillPlaceholders replaces each {name} in s with vals[name] ("x" when vals
// has none, which is what validation builds URLs with). It runs per request,
// so it scans rather than builds a replacer.
func FillPlaceholders(s string, vals map[string]string) string {
	i := strings.IndexByte(s, '{')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 32)
	for i >= 0 {
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			break
		}
		name := s[i+1 : i+j]
		if _, known := QueryPlaceholders[name]; !known {
			b.WriteString(s[:i+j+1])
		} else {
			b.WriteString(s[:i])
			if v, ok := vals[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString("x")
			}
		}
		s = s[i+j+1:]
		i = strings.IndexByte(s, '{')
	}
	b.WriteString(s)
	return b.String()
}

// ResolveURL resolves path, a path or a whole http(s) URL, against base.
func ResolveURL(base, path string) (*url.URL, error) {
	b, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("queries.base_url: %w", unwrapURLError(err))
	}
	return JoinURL(b, path)
}

// JoinURL resolves path, a path or a whole http(s) URL, against base. The
// path is appended, not resolved: a base URL with a path prefix (a gateway's
// /slo-scout) keeps it.
func JoinURL(base *url.URL, path string) (*url.URL, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return nil, unwrapURLError(err)
	}
	if ref.RawQuery != "" {
		return nil, fmt.Errorf("has a query string: put parameters in params")
	}
	if ref.IsAbs() {
		if (ref.Scheme != "http" && ref.Scheme != "https") || ref.Host == "" {
			return nil, fmt.Errorf("must be a path or an absolute http:// or https:// URL")
		}
		return ref, nil
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("must start with / (or be a whole URL)")
	}
	u := *base
	u.Path = strings.TrimSuffix(base.Path, "/") + ref.Path
	u.RawPath = ""
	if ref.RawPath != "" {
		u.RawPath = strings.TrimSuffix(base.EscapedPath(), "/") + ref.RawPath
	}
	return &u, nil
}

// unwrapURLError drops net/url's "parse <url>:" prefix, which the callers'
// messages already name.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// ParseParam splits a "name=value" query parameter.
func ParseParam(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return "", "", fmt.Errorf("%q: want name=value", s)
	}
	return strings.TrimSpace(name), value, nil
}

// ParseHeader splits a "Name: value" header.
func ParseHeader(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") {
		return "", "", fmt.Errorf("%q: want Name: value", s)
	}
	if strings.EqualFold(name, "Authorization") {
		// Not quoted: its value is a credential.
		return "", "", fmt.Errorf("the Authorization header comes from queries.auth, where secrets stay out of the file")
	}
	return name, strings.TrimSpace(value), nil
}

// ParseStatus reads an expected status, "200" or a class "2xx", as the range
// [lo, hi].
func ParseStatus(s string) (lo, hi int, err error) {
	s = strings.TrimSpace(s)
	if len(s) == 3 && strings.HasSuffix(strings.ToLower(s), "xx") && s[0] >= '1' && s[0] <= '5' {
		c := int(s[0]-'0') * 100
		return c, c + 99, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, 0, fmt.Errorf("%q is not an HTTP status (100-599) or class (2xx)", s)
	}
	return n, n, nil
}

// checkDSN returns why pgx cannot parse dsn, without the password; "" if it can.
func checkDSN(dsn string) string {
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return dsnErrorText(dsn, err)
	}
	return ""
}
