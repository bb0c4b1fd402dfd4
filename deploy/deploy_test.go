package deploy

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the generated files (rules, PrometheusRule, dashboard)")

// repoRoot is where the generated paths are relative to; tests run in deploy/.
const repoRoot = ".."

func generated(t *testing.T) map[string][]byte {
	t.Helper()
	p := DefaultParams()
	out := map[string][]byte{}
	for path, render := range map[string]func(Params) ([]byte, error){
		RulesFilePath:      RulesFile,
		PrometheusRulePath: PrometheusRule,
		DashboardPath:      DashboardJSON,
	} {
		b, err := render(p)
		if err != nil {
			t.Fatalf("render %s: %v", path, err)
		}
		out[path] = b
	}
	return out
}

// TestGenerated keeps the checked-in rules, PrometheusRule and dashboard equal
// to what the generator makes of DefaultParams: nobody edits them by hand.
func TestGenerated(t *testing.T) {
	for path, want := range generated(t) {
		full := filepath.Join(repoRoot, path)
		if *update {
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(full)
		if err != nil {
			t.Fatalf("%v (run go test ./deploy -run TestGenerated -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the generator's output; run go test ./deploy -run TestGenerated -update and review the diff", path)
		}
	}
}

// rulesFile is the plain rules file decoded into the Prometheus Operator's
// rule types, unknown fields rejected.
type rulesFile struct {
	Groups []monitoringv1.RuleGroup `json:"groups"`
}

func decodeStrict(t *testing.T, name string, data []byte, into any) {
	t.Helper()
	if err := sigsyaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: strict decode: %v", name, err)
	}
}

// TestPrometheusRuleMatchesRulesFile: one source, two renderings, the same
// groups. Both decode strictly into the operator's types.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	files := generated(t)
	var pr monitoringv1.PrometheusRule
	decodeStrict(t, PrometheusRulePath, files[PrometheusRulePath], &pr)
	var rf rulesFile
	decodeStrict(t, RulesFilePath, files[RulesFilePath], &rf)
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Name != "slo-canary" || pr.Namespace != "" {
		t.Errorf("PrometheusRule header: %s %s %s/%s", pr.APIVersion, pr.Kind, pr.Namespace, pr.Name)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	if !reflect.DeepEqual(pr.Spec.Groups, rf.Groups) {
		t.Errorf("PrometheusRule groups differ from the rules file's")
	}
}

// ruleTestFile is the part of a promtool unit-test file the coverage check reads.
type ruleTestFile struct {
	Tests []struct {
		Name      string `yaml:"name"`
		AlertTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func ruleTestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("tests/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool test files in deploy/tests: %v", err)
	}
	return files
}

// TestRulesPromtool runs promtool over the rules, at production scale and at
// the end-to-end test's scale, and runs the unit tests in deploy/tests.
func TestRulesPromtool(t *testing.T) {
	t.Parallel()
	promtool := testenv.Binary(t, "promtool")
	dir := t.TempDir()
	scaled := DefaultParams()
	scaled.TimeScale = e2eTimeScale
	b, err := RulesFile(scaled)
	if err != nil {
		t.Fatal(err)
	}
	scaledPath := filepath.Join(dir, "scaled.rules.yaml")
	if err := os.WriteFile(scaledPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, args ...string) {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Run("check", func(t *testing.T) {
		run(t, "check", "rules", filepath.Join(repoRoot, RulesFilePath), scaledPath)
	})
	for _, f := range ruleTestFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			run(t, "test", "rules", f)
		})
	}
}

// TestRuleTestsCoverEveryAlert: every alert has a promtool case where it
// fires and one where it stays silent; a burn-rate alert fires in at least
// two cases (one per window pair).
func TestRuleTestsCoverEveryAlert(t *testing.T) {
	groups, err := Rules(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]int{}, map[string]int{}
	for _, f := range ruleTestFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf ruleTestFile
		if err := yaml.Unmarshal(data, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range tf.Tests {
			for _, at := range tc.AlertTest {
				if len(at.ExpAlerts) > 0 {
					fires[at.Alertname]++
				} else {
					silent[at.Alertname]++
				}
			}
		}
	}
	known := map[string]bool{}
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			known[r.Alert] = true
			wantFires := 1
			if strings.Contains(r.Alert, "BudgetBurn") {
				wantFires = 2
			}
			if fires[r.Alert] < wantFires {
				t.Errorf("%s: %d promtool cases where it fires, want at least %d", r.Alert, fires[r.Alert], wantFires)
			}
			if silent[r.Alert] == 0 {
				t.Errorf("%s: no promtool case where it stays silent", r.Alert)
			}
		}
	}
	for name := range fires {
		if !known[name] {
			t.Errorf("deploy/tests names alert %s, which the rules do not define", name)
		}
	}
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	s := strings.ToLower(strings.TrimSpace(heading))
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// TestAlertConventions: every alert pages or opens a ticket, says what and how
// much ({{ $value }}), and links to its own section of the runbook; only
// error-budget burn pages; every runbook section belongs to an alert.
func TestAlertConventions(t *testing.T) {
	p := DefaultParams()
	groups, err := Rules(p)
	if err != nil {
		t.Fatal(err)
	}
	runbook, err := os.ReadFile("runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	alertHeading := regexp.MustCompile(`(?m)^## (SLO\w+)\s*$`)
	for _, m := range alertHeading.FindAllStringSubmatch(string(runbook), -1) {
		anchors[githubAnchor(m[1])] = true
	}
	alerts := map[string]bool{}
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				if !strings.HasPrefix(r.Record, "slo_canary:") {
					t.Errorf("recording rule %s lacks the slo_canary: prefix", r.Record)
				}
				continue
			}
			alerts[githubAnchor(r.Alert)] = true
			sev := r.Labels["severity"]
			switch {
			case sev != SeverityPage && sev != SeverityTicket:
				t.Errorf("%s: severity %q, want page or ticket", r.Alert, sev)
			case sev == SeverityPage && !strings.HasSuffix(r.Alert, "BudgetBurnFast"):
				t.Errorf("%s pages but is not an error-budget burn", r.Alert)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s has no summary", r.Alert)
			}
			if !strings.Contains(r.Annotations["description"], "{{ $value") {
				t.Errorf("%s: description does not show {{ $value }}: %q", r.Alert, r.Annotations["description"])
			}
			url := r.Annotations["runbook_url"]
			base, anchor, ok := strings.Cut(url, "#")
			if !ok || base != p.RunbookURL || anchor != strings.ToLower(r.Alert) {
				t.Errorf("%s: runbook_url %q, want %s#%s", r.Alert, url, p.RunbookURL, strings.ToLower(r.Alert))
			}
			if !anchors[anchor] {
				t.Errorf("%s: deploy/runbooks.md has no section \"## %s\"", r.Alert, r.Alert)
			}
		}
	}
	for a := range anchors {
		if !alerts[a] {
			t.Errorf("deploy/runbooks.md has a section #%s for no alert", a)
		}
	}
	if !strings.HasSuffix(p.RunbookURL, "/deploy/runbooks.md") {
		t.Errorf("runbook URL %s does not point at deploy/runbooks.md", p.RunbookURL)
	}
}

// TestBudgetsAreParameters: the objectives reach the rules from Params and
// nowhere else, so that changing one changes every expression that judges it.
func TestBudgetsAreParameters(t *testing.T) {
	p := DefaultParams()
	p.FreshnessObjective, p.QueryObjective, p.ProduceFailureRatio = 0.999, 0.9, 0.07
	p.IngestObjective, p.BlindAfter = 0.995, 20*time.Minute
	groups, err := Rules(p)
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, g := range groups {
		for _, r := range g.Rules {
			fmt.Fprintln(&all, r.Expr)
			switch r.Record {
			case ObjectiveRecord("freshness"):
				if r.Expr != "vector(0.999)" {
					t.Errorf("freshness objective: %s", r.Expr)
				}
			case ObjectiveRecord("query_latency"):
				if r.Expr != "vector(0.9)" {
					t.Errorf("query objective: %s", r.Expr)
				}
			case ObjectiveRecord("ingest_availability"):
				if r.Expr != "vector(0.995)" {
					t.Errorf("ingest objective: %s", r.Expr)
				}
			}
			if r.Alert == "SLOCanaryBlind" && !strings.Contains(r.Expr, "> 1200\n") {
				t.Errorf("SLOCanaryBlind does not judge BlindAfter (20m): %s", r.Expr)
			}
			if strings.Contains(r.Alert, "BudgetBurn") && !strings.Contains(r.Expr, "(1 - slo_canary:") {
				t.Errorf("%s does not read its objective from the recording rule: %s", r.Alert, r.Expr)
			}
		}
	}
	// With the objectives moved, the default ones (and their budgets) appear
	// nowhere outside label values.
	exprs := regexp.MustCompile(`"[^"]*"`).ReplaceAllString(all.String(), `""`)
	for _, literal := range []string{"0.99", "0.95", "0.01", "0.05", "0.001", "600"} {
		if regexp.MustCompile(`(^|[^0-9.])` + regexp.QuoteMeta(literal) + `($|[^0-9])`).MatchString(exprs) {
			t.Errorf("an expression holds the literal %s; objectives must come from Params", literal)
		}
	}
}

// e2eTimeScale runs the end-to-end test's rules 60 times faster: the 1h burn
// window is a minute, the 5m one five seconds.
const e2eTimeScale = 60

// TestTimeScale: the end-to-end test's rules are the production rules with
// every window and `for` divided, and the recording-rule names unchanged.
func TestTimeScale(t *testing.T) {
	prod, err := Rules(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultParams()
	p.TimeScale = 60
	fast, err := Rules(p)
	if err != nil {
		t.Fatal(err)
	}
	find := func(gs []RuleGroup, name string) Rule {
		for _, g := range gs {
			for _, r := range g.Rules {
				if r.Record == name || r.Alert == name {
					return r
				}
			}
		}
		t.Fatalf("no rule %s", name)
		return Rule{}
	}
	for _, c := range []struct{ rule, prod, fast string }{
		{ErrorRatioRecord("freshness", 3600e9), "[1h]", "[1m]"},
		{ErrorRatioRecord("freshness", 300e9), "[5m]", "[5s]"},
		{ErrorRatioRecord("query_latency", 3*86400e9), "[3d]", "[1h12m]"},
	} {
		if r := find(prod, c.rule); !strings.Contains(r.Expr, c.prod) {
			t.Errorf("%s: production expr lacks %s: %s", c.rule, c.prod, r.Expr)
		}
		if r := find(fast, c.rule); !strings.Contains(r.Expr, c.fast) {
			t.Errorf("%s: scaled expr lacks %s: %s", c.rule, c.fast, r.Expr)
		}
	}
	if a, b := find(prod, "SLOCanaryDown").For, find(fast, "SLOCanaryDown").For; a != "5m" || b != "5s" {
		t.Errorf("SLOCanaryDown for: %s and %s, want 5m and 5s", a, b)
	}
	if err := (Params{}).Validate(); err == nil {
		t.Error("zero Params validated")
	}
	for d, want := range map[string]string{"72h": "3d", "1h12m": "1h12m", "1.5s": "1s500ms", "0s": "0s", "25h": "1d1h"} {
		dur, err := time.ParseDuration(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := promDuration(dur); got != want {
			t.Errorf("promDuration(%s) = %s, want %s", d, got, want)
		}
	}
}

// dashboardSubstitutions stand in for Grafana's variables so that the
// dashboard's queries can be parsed and run.
func dashboardSubstitutions(instance string) *strings.Replacer {
	return strings.NewReplacer(
		"$__rate_interval", "10s",
		"$__interval", "2s",
		"$__range", "5m",
		"${datasource}", "prometheus",
		"$namespace", "slo-scout",
		// As Grafana formats a regex variable inside a PromQL string.
		"$instance", strings.ReplaceAll(regexp.QuoteMeta(instance), `\`, `\\`),
		"$stage", "database",
		"$probe", "sli",
	)
}

// knownMetrics are the metric names the dashboard and rules may use: those
// of every metrics golden list in the repository (the core canary's, the
// bursts' and consumer-group lag's, the query probes', the daemon's config
// reload), the daemon's build
// info and scheduler series, and the recording rules. Until a part's golden
// list exists, the names fixed in advance for it stand in.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	goldens, err := filepath.Glob(filepath.Join(repoRoot, "*", "testdata", "*metrics.golden"))
	if err != nil {
		t.Fatal(err)
	}
	// The daemon's own (config reload) list is under cmd/slo-canary.
	deeper, err := filepath.Glob(filepath.Join(repoRoot, "*", "*", "testdata", "*metrics.golden"))
	if err != nil {
		t.Fatal(err)
	}
	goldens = append(goldens, deeper...)
	known := map[string]bool{"up": true}
	for _, g := range goldens {
		data, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			name, typ, _ := strings.Cut(line, " ")
			known[name] = true
			switch typ {
			case "histogram":
				known[name+"_bucket"], known[name+"_sum"], known[name+"_count"] = true, true, true
			case "summary":
				known[name+"_sum"], known[name+"_count"] = true, true
			}
		}
	}
	if !known["slo_canary_marker_lag_seconds"] {
		t.Fatalf("the core metrics golden list was not found (read %v)", goldens)
	}
	for _, n := range []string{"build_info", "scheduled_runs_total", "scheduled_run_last_timestamp_seconds", "scheduled_job_running"} {
		known["slo_canary_"+n] = true
	}
	upcoming := map[string][]string{
		"slo_canary_query_sli_total": {"query_latency_seconds", "query_latency_seconds_bucket", "query_requests_total",
			"query_sli_good_total", "query_sli_total", "query_latency_budget_seconds", "evidence_overhead_seconds",
			"evidence_overhead_budget_seconds", "evidence_overhead_within_budget", "concurrency_last_latency_seconds",
			"concurrency_last_success_ratio", "concurrency_last_verdict", "concurrency_last_run_timestamp_seconds",
			"concurrency_runs_total"},
		"slo_canary_bursts_total": {"burst_running", "bursts_total", "burst_last_verdict", "burst_last_lag_seconds",
			"burst_last_loss_ratio", "burst_last_achieved_rate", "burst_last_catchup_seconds", "burst_last_timestamp_seconds",
			"burst_events_sent_total", "consumer_group_lag_records", "consumer_group_lag_seconds", "consumer_group_up"},
	}
	for marker, names := range upcoming {
		if known[marker] {
			continue // that part's golden list is in
		}
		for _, n := range names {
			known["slo_canary_"+n] = true
		}
	}
	groups, err := Rules(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				known[r.Record] = true
			}
		}
	}
	return known
}

// TestRulesUseKnownMetrics: the rules read only series something exports.
func TestRulesUseKnownMetrics(t *testing.T) {
	known := knownMetrics(t)
	groups, err := Rules(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		for _, r := range g.Rules {
			for _, m := range metricName.FindAllString(r.Expr, -1) {
				if !known[m] {
					t.Errorf("rule %s%s reads %s, which nothing exports or records", r.Record, r.Alert, m)
				}
			}
		}
	}
}

var metricName = regexp.MustCompile(`\b(up|slo_canary[a-z0-9_:]*)\b`)

// coreOnly reports whether expr uses only series the canary's core exports,
// which the end-to-end test's demo therefore fills.
func coreOnly(expr string) bool {
	return !regexp.MustCompile(`slo_canary_(query|evidence|concurrency|burst|consumer_group)|slo_canary:query`).MatchString(expr)
}

func loadDashboard(t *testing.T) (*Dashboard, map[string]any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, DashboardPath))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var db Dashboard
	if err := dec.Decode(&db); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	return &db, raw
}

// TestDashboard checks the checked-in dashboard as Grafana will read it.
func TestDashboard(t *testing.T) {
	db, raw := loadDashboard(t)
	if raw["uid"] != DashboardUID || db.Title == "" {
		t.Errorf("uid %v, title %q", raw["uid"], db.Title)
	}
	vars := map[string]Variable{}
	for _, v := range db.Templating.List {
		vars[v.Name] = v
		if v.Type == "query" && !reflect.DeepEqual(v.Datasource, DatasourceRef) {
			t.Errorf("variable %s: datasource %+v, want the datasource variable", v.Name, v.Datasource)
		}
	}
	for _, name := range []string{"datasource", "namespace", "instance", "stage"} {
		if _, ok := vars[name]; !ok {
			t.Errorf("no template variable %s", name)
		}
	}
	if vars["datasource"].Type != "datasource" || vars["datasource"].Query != "prometheus" {
		t.Errorf("datasource variable: %+v", vars["datasource"])
	}

	// Every panel, rows included, and every target names the datasource
	// variable; ids are unique; each panel has at least one query.
	ids := map[int]bool{}
	var walk func([]any)
	walk = func(panels []any) {
		for _, pv := range panels {
			p := pv.(map[string]any)
			title := p["title"]
			ds, _ := p["datasource"].(map[string]any)
			if ds["uid"] != "${datasource}" || ds["type"] != "prometheus" {
				t.Errorf("panel %q: datasource %v, want the ${datasource} variable", title, p["datasource"])
			}
			id := int(p["id"].(float64))
			if ids[id] {
				t.Errorf("panel %q: duplicate id %d", title, id)
			}
			ids[id] = true
			targets, _ := p["targets"].([]any)
			if p["type"] != "row" && len(targets) == 0 {
				t.Errorf("panel %q has no query", title)
			}
			for _, tv := range targets {
				tg := tv.(map[string]any)
				tds, _ := tg["datasource"].(map[string]any)
				if tds["uid"] != "${datasource}" {
					t.Errorf("panel %q target %v: datasource %v", title, tg["refId"], tg["datasource"])
				}
			}
			if sub, ok := p["panels"].([]any); ok {
				walk(sub)
			}
		}
	}
	walk(raw["panels"].([]any))

	// Annotations for bursts, through the datasource variable.
	var burst bool
	for _, a := range db.Annotations.List {
		if !reflect.DeepEqual(a.Datasource, DatasourceRef) {
			t.Errorf("annotation %s: datasource %+v", a.Name, a.Datasource)
		}
		burst = burst || strings.Contains(a.Expr, "slo_canary_burst_running")
	}
	if !burst {
		t.Error("no annotation for bursts")
	}

	// Every query filters by the variables and names only metrics that exist.
	known := knownMetrics(t)
	for _, nq := range db.Targets() {
		if !strings.Contains(nq.Expr, `namespace=~"$namespace"`) {
			t.Errorf("%s does not filter by $namespace: %s", nq.Where, nq.Expr)
		}
		for _, m := range metricName.FindAllString(nq.Expr, -1) {
			if !known[m] {
				t.Errorf("%s uses %s, which nothing exports or records", nq.Where, m)
			}
			if !strings.Contains(m, ":") && !strings.Contains(nq.Expr, `instance=~"$instance"`) {
				t.Errorf("%s reads raw series without filtering by $instance: %s", nq.Where, nq.Expr)
			}
		}
	}
	for _, want := range []string{"slo_canary_marker_lag_seconds_bucket", "slo_canary_query_latency_seconds{",
		"slo_canary_concurrency_last_verdict", "slo_canary_bursts_total", "slo_canary_consumer_group_lag_seconds",
		"slo_canary_markers_out_of_order_total", "slo_canary_produce_latency_seconds", ErrorRatioRecord("freshness", 3600e9)} {
		var found bool
		for _, nq := range db.Targets() {
			found = found || strings.Contains(nq.Expr, want)
		}
		if !found {
			t.Errorf("no panel queries %s", want)
		}
	}
	var heatmaps []string
	var walkTypes func([]Panel)
	walkTypes = func(ps []Panel) {
		for _, p := range ps {
			if p.Type == "heatmap" {
				heatmaps = append(heatmaps, p.Repeat)
			}
			walkTypes(p.Panels)
		}
	}
	walkTypes(db.Panels)
	if !slices.Contains(heatmaps, "stage") {
		t.Errorf("no heatmap repeated per stage: %v", heatmaps)
	}
}

// TestDashboardQueriesParse runs every dashboard query, variables
// substituted, through promtool's PromQL parser (as recording rules). The
// end-to-end test runs them against a live Prometheus as well.
func TestDashboardQueriesParse(t *testing.T) {
	t.Parallel()
	promtool := testenv.Binary(t, "promtool")
	db, _ := loadDashboard(t)
	sub := dashboardSubstitutions("127.0.0.1:9464")
	var rules []Rule
	for i, nq := range db.Targets() {
		rules = append(rules, Rule{Record: fmt.Sprintf("dashboard:query_%d:check", i), Expr: sub.Replace(nq.Expr)})
	}
	for _, v := range db.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			expr := labelValuesSelector(t, q["query"].(string))
			rules = append(rules, Rule{Record: "dashboard:variable_" + v.Name + ":check", Expr: sub.Replace(expr)})
		}
	}
	b, err := yaml.Marshal(map[string]any{"groups": []RuleGroup{{Name: "dashboard", Rules: rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("dashboard queries do not parse: %v\n%s", err, out)
	}
}

// labelValuesSelector turns label_values(selector, label) into selector.
func labelValuesSelector(t *testing.T, q string) string {
	t.Helper()
	m := regexp.MustCompile(`^label_values\((.+), *\w+\)$`).FindStringSubmatch(q)
	if m == nil {
		t.Fatalf("variable query %q is not label_values(selector, label)", q)
	}
	return m[1]
}

// TestAlertmanagerRouteExample: the example is a valid Alertmanager config.
func TestAlertmanagerRouteExample(t *testing.T) {
	amtool := testenv.Binary(t, "amtool")
	if out, err := exec.Command(amtool, "check-config", "alertmanager-route.yaml").CombinedOutput(); err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
}
