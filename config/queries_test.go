package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// mapKeyPaths lists the dotted keys of every map in the configuration type.
func mapKeyPaths() []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		switch t.Kind() {
		case reflect.Map:
			out = append(out, prefix)
		case reflect.Struct:
			for _, f := range fieldsOf(t) {
				walk(join(prefix, f.tag), f.typ)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return out
}

// isSecretKey reports whether key holds a Secret; map entries may have any
// name, "*" included.
func isSecretKey(key string) bool {
	t := reflect.TypeFor[Config]()
	for _, part := range strings.Split(key, ".") {
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := fieldByTag(t, part)
			if !ok {
				return false
			}
			t = f.typ
		default:
			return false
		}
	}
	return t == secretType
}

func TestQueriesDefaults(t *testing.T) {
	c := Defaults()
	q := c.Queries
	if got := q.EnabledProbes(); !slices.Equal(got, []string{"health", "journeys", "sli", "sli_evidence"}) {
		t.Errorf("enabled probes %q", got)
	}
	// The SLI probes discover real journeys; no placeholder is shipped.
	for _, n := range []string{"sli", "sli_evidence"} {
		if p := q.Probes[n]; !p.DiscoversJourneys() || slices.Contains(p.Rotate.JourneyIDs, PlaceholderJourneyID) {
			t.Errorf("%s does not discover its journeys: %+v", n, p.Rotate)
		}
	}
	if q.Probes["journeys"].DiscoversJourneys() || q.Probes["health"].DiscoversJourneys() {
		t.Error("probes without {journey_id} discover journeys")
	}
	if d := q.JourneyDiscovery; d.Path != "/api/v1/journeys" || len(d.Services) == 0 || d.Environment != "prod" || d.Refresh != 5*time.Minute {
		t.Errorf("journey discovery %+v", d)
	}
	if q.Probes["timescaledb"].Type != "sql" || q.Probes["timescaledb"].Enabled {
		t.Errorf("sql example %+v", q.Probes["timescaledb"])
	}
	if r := q.Concurrency["c100"]; r.Clients != 100 || r.Schedule != "0 3 * * *" || r.BudgetP95 != 2*time.Second {
		t.Errorf("c100 %+v", r)
	}
	if r := q.Concurrency["c200"]; r.Clients != 200 || r.Schedule != "30 3 * * *" || r.BudgetP99 != 5*time.Second || r.MinSuccessRatio != 0.95 {
		t.Errorf("c200 %+v", r)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestResolveURL(t *testing.T) {
	for _, tc := range []struct{ base, path, want, err string }{
		{"http://api:8000", "/api/v1/sli", "http://api:8000/api/v1/sli", ""},
		{"http://gw/slo-scout/", "/health", "http://gw/slo-scout/health", ""},
		{"http://api:8000", "https://other/x", "https://other/x", ""},
		{"http://api:8000", "api/v1", "", "must start with /"},
		{"http://api:8000", "/a?b=c", "", "put parameters in params"},
		{"http://api:8000", "/bad%zz", "", "invalid URL escape"},
		{"http://api:8000", "ftp://x/y", "", "http:// or https://"},
	} {
		u, err := ResolveURL(tc.base, tc.path)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ResolveURL(%q, %q) err = %v, want %q", tc.base, tc.path, err, tc.err)
		case tc.err == "" && (err != nil || u.String() != tc.want):
			t.Errorf("ResolveURL(%q, %q) = %v, %v; want %s", tc.base, tc.path, u, err, tc.want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	for s, want := range map[string][2]int{"200": {200, 200}, "2xx": {200, 299}, "5XX": {500, 599}, " 404 ": {404, 404}} {
		lo, hi, err := ParseStatus(s)
		if err != nil || lo != want[0] || hi != want[1] {
			t.Errorf("ParseStatus(%q) = %d, %d, %v", s, lo, hi, err)
		}
	}
	for _, s := range []string{"", "99", "600", "6xx", "2x", "ok"} {
		if _, _, err := ParseStatus(s); err == nil {
			t.Errorf("ParseStatus(%q) succeeded", s)
		}
	}
}

func TestTemplatePlaceholders(t *testing.T) {
	got, err := TemplatePlaceholders("/j/{journey_id}/s/{service}")
	if err != nil || !slices.Equal(got, []string{"journey_id", "service"}) {
		t.Errorf("got %q, %v", got, err)
	}
	for s, want := range map[string]string{
		"/j/{journey}":   "unknown placeholder {journey}",
		"/j/{journey_id": "unclosed placeholder",
		"/j/}":           "stray '}'",
	} {
		if _, err := TemplatePlaceholders(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("TemplatePlaceholders(%q) = %v, want %q", s, err, want)
		}
	}
	if got := FillPlaceholders("/{journey_id}/{service}/{journey_id}", map[string]string{"journey_id": "j", "service": "s"}); got != "/j/s/j" {
		t.Errorf("FillPlaceholders = %q", got)
	}
}

// TestQueriesValidateProgrammatic covers checks on a Config built in code;
// the file-borne cases are testdata/invalid/query_*.yaml.
func TestQueriesValidateProgrammatic(t *testing.T) {
	probe := func(c *Config, name string, f func(p *QueryProbe)) {
		p := c.Queries.Probes[name]
		f(&p)
		c.Queries.Probes[name] = p
	}
	for _, tc := range []struct {
		name   string
		modify func(c *Config)
		want   string
	}{
		{"bad probe name", func(c *Config) { c.Queries.Probes["Bad"] = c.Queries.Probes["sli"] }, `queries.probes: invalid name "Bad"`},
		{"token and key", func(c *Config) { c.Queries.Auth.Token, c.Queries.Auth.JWTSigningKey = secret, secret },
			"queries.auth.token: set, and queries.auth.jwt_signing_key too"},
		{"key without subject", func(c *Config) { c.Queries.Auth.JWTSigningKey, c.Queries.Auth.JWTSubject = secret, "" },
			"queries.auth.jwt_subject: must not be empty while a jwt_signing_key is set"},
		{"rotation list empty", func(c *Config) {
			probe(c, "sli", func(p *QueryProbe) { p.Rotate.JourneyIDs = nil })
			c.Queries.JourneyDiscovery.Services = nil
		}, "queries.probes.sli.rotate.journey_ids: empty, but {journey_id} is used, and queries.journey_discovery.services is empty"},
		{"journeys discovered", func(c *Config) { probe(c, "sli", func(p *QueryProbe) { p.Rotate.JourneyIDs = nil }) }, ""},
		{"discovery without environment", func(c *Config) { c.Queries.JourneyDiscovery.Environment = "" },
			"queries.journey_discovery.environment: must not be empty"},
		{"discovery path with a query", func(c *Config) { c.Queries.JourneyDiscovery.Path = "/api/v1/journeys?environment=prod" },
			"queries.journey_discovery.path"},
		{"discovery refresh", func(c *Config) { c.Queries.JourneyDiscovery.Refresh = 0 },
			"queries.journey_discovery.refresh: must be positive"},
		{"discovery unused", func(c *Config) {
			c.Queries.JourneyDiscovery = JourneyDiscovery{}
			for _, n := range []string{"sli", "sli_evidence"} {
				probe(c, n, func(p *QueryProbe) { p.Rotate.JourneyIDs = []string{"fc4936e9-d47b-5bb5-97ec-d3ea0dfd7ae0"} })
			}
		}, ""},
		{"placeholder in header", func(c *Config) {
			probe(c, "health", func(p *QueryProbe) { p.Headers = []string{"X-Service: {service}"} })
		},
			"queries.probes.health.rotate.services: empty, but {service} is used"},
		{"no status", func(c *Config) { probe(c, "health", func(p *QueryProbe) { p.ExpectStatus = nil }) },
			"queries.probes.health.expect_status: empty"},
		{"evidence one-sided", func(c *Config) { c.Queries.Evidence.Without = "" }, "queries.evidence: set both with and without, or neither"},
		{"evidence off", func(c *Config) { c.Queries.Evidence.With, c.Queries.Evidence.Without = "", "" }, ""},
		{"evidence sql", func(c *Config) { c.Queries.Evidence.Without = "timescaledb" },
			`queries.evidence.without: probe "timescaledb" has type "sql"`},
		{"run judges nothing", func(c *Config) {
			r := c.Queries.Concurrency["c100"]
			r.BudgetP95, r.MinSuccessRatio = 0, 0
			c.Queries.Concurrency["c100"] = r
		}, "queries.concurrency.c100: judges nothing"},
		{"bad run name", func(c *Config) { c.Queries.Concurrency["C1"] = c.Queries.Concurrency["c100"] }, `queries.concurrency: invalid name "C1"`},
		{"sql probe without query", func(c *Config) { probe(c, "timescaledb", func(p *QueryProbe) { p.SQL.Query = " " }) },
			"queries.probes.timescaledb.sql.query: required by type sql"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := d()
			tc.modify(c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

// TestQueryEntriesFromEnv adds a probe and a run from the environment alone,
// and checks they start from their defaults like file entries.
func TestQueryEntriesFromEnv(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SLO_CANARY_QUERIES_PROBES_SLO_LIST_TYPE", "http")
	t.Setenv("SLO_CANARY_QUERIES_PROBES_SLO_LIST_PATH", "/api/v1/slo")
	t.Setenv("SLO_CANARY_QUERIES_PROBES_SLO_LIST_EXPECT_STATUS", "2xx,304")
	t.Setenv("SLO_CANARY_QUERIES_CONCURRENCY_SMOKE_CLIENTS", "5")
	t.Setenv("SLO_CANARY_QUERIES_CONCURRENCY_SMOKE_PROBE", "slo_list")
	t.Setenv("SLO_CANARY_QUERIES_PROBES_SLI_TIMEOUT", "3s")
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := QueryProbeDefaults()
	want.Type, want.Path, want.ExpectStatus = "http", "/api/v1/slo", []string{"2xx", "304"}
	if got := c.Queries.Probes["slo_list"]; !reflect.DeepEqual(got, want) {
		t.Errorf("slo_list = %+v\nwant %+v", got, want)
	}
	run := ConcurrencyRunDefaults()
	run.Clients, run.Probe = 5, "slo_list"
	if got := c.Queries.Concurrency["smoke"]; !reflect.DeepEqual(got, run) {
		t.Errorf("smoke = %+v\nwant %+v", got, run)
	}
	if c.Queries.Probes["sli"].Timeout != 3*time.Second {
		t.Errorf("sli timeout %v", c.Queries.Probes["sli"].Timeout)
	}
}

// TestQueryEnvAmbiguity: _TIMEOUT ends _SQL_STATEMENT_TIMEOUT, so a variable
// can split two ways; the entry known from elsewhere decides, else an error.
func TestQueryEnvAmbiguity(t *testing.T) {
	t.Run("known entry decides", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("SLO_CANARY_QUERIES_PROBES_TIMESCALEDB_SQL_STATEMENT_TIMEOUT", "2s")
		c, err := Load("", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Queries.Probes["timescaledb"].SQL.StatementTimeout; got != 2*time.Second {
			t.Errorf("statement_timeout %v", got)
		}
	})
	t.Run("another variable decides", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("SLO_CANARY_QUERIES_PROBES_DB_SQL_STATEMENT_TIMEOUT", "2s")
		t.Setenv("SLO_CANARY_QUERIES_PROBES_DB_TYPE", "sql")
		c, err := load("", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Queries.Probes["db"].SQL.StatementTimeout; got != 2*time.Second {
			t.Errorf("statement_timeout %v", got)
		}
		if _, ok := c.Queries.Probes["db_sql_statement"]; ok {
			t.Error("created probe db_sql_statement")
		}
	})
	t.Run("nothing decides", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("SLO_CANARY_QUERIES_PROBES_DB_SQL_STATEMENT_TIMEOUT", "2s")
		_, err := Load("", nil)
		want := `environment variable SLO_CANARY_QUERIES_PROBES_DB_SQL_STATEMENT_TIMEOUT could set a key of query probe "db_sql_statement" or "db"`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
	t.Run("no key", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("SLO_CANARY_QUERIES_CONCURRENCY_C100", "x")
		_, err := Load("", nil)
		want := "environment variable SLO_CANARY_QUERIES_CONCURRENCY_C100 sets no concurrency run key: expected SLO_CANARY_QUERIES_CONCURRENCY_<NAME>_<KEY>"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
}

// TestQuerySecrets reads the token, the signing key and an sql probe's
// password from files, moves a DSN password out of the DSN, and never shows
// any of them.
func TestQuerySecrets(t *testing.T) {
	isolateEnv(t)
	tok := writeFile(t, "token", secret+"-token\n")
	key := writeFile(t, "key", secret+"-key\n")
	path := writeFile(t, "c.yaml", `
queries:
  auth:
    jwt_signing_key_file: `+key+`
  probes:
    timescaledb:
      sql:
        password_file: `+tok+`
`)
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Queries.Auth.JWTSigningKey.Reveal() != secret+"-key" || c.Queries.Probes["timescaledb"].SQL.Password.Reveal() != secret+"-token" {
		t.Errorf("secrets not read: %+v", c.Queries.Auth)
	}
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), secret) {
		t.Errorf("Render shows a secret:\n%s", out)
	}

	t.Setenv("SLO_CANARY_QUERIES_AUTH_TOKEN_FILE", tok)
	if _, err := Load(path, nil); err == nil || !strings.Contains(err.Error(), "queries.auth.token: set, and queries.auth.jwt_signing_key too") {
		t.Errorf("token and key: %v", err)
	}

	isolateEnv(t)
	t.Setenv("SLO_CANARY_QUERIES_PROBES_TIMESCALEDB_SQL_DSN", "postgres://canary:"+secret+"@db/slo_scout")
	c, err = Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Queries.Probes["timescaledb"].SQL; s.DSN != "postgres://canary@db/slo_scout" || s.Password.Reveal() != secret {
		t.Errorf("dsn %q password %v", s.DSN, s.Password)
	}
}

// TestQueriesRender: check-config shows an sql probe's section, not an http
// probe's unused one, and the rendering loads back unchanged.
func TestQueriesRender(t *testing.T) {
	isolateEnv(t)
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Queries struct {
			Probes map[string]map[string]any `yaml:"probes"`
		} `yaml:"queries"`
	}
	if err := yaml.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw.Queries.Probes["sli"]["sql"]; ok {
		t.Error("an http probe shows an sql section")
	}
	if _, ok := raw.Queries.Probes["timescaledb"]["sql"]; !ok {
		t.Error("the sql probe lacks its sql section")
	}
	again, err := Load(writeFile(t, "r.yaml", string(out)), nil)
	if err != nil || !reflect.DeepEqual(again.Queries, c.Queries) {
		t.Errorf("round trip: %v", err)
	}
}
