package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// DashboardUID is the dashboard's uid: SLO-Scout links to /d/slo-scout-performance.
const DashboardUID = "slo-scout-performance"

// DatasourceRef is how every panel, target, variable and annotation names its
// data source: the dashboard's datasource variable, so the dashboard works
// with whatever Prometheus it is imported against.
var DatasourceRef = &Datasource{Type: "prometheus", UID: "${datasource}"}

// upcomingMetricsNote ends the description of panels over the query probes'
// and the bursts' series, which stay empty where those parts are off.
const upcomingMetricsNote = "Empty until the query probes (queries.enabled) or bursts (bursts.enabled) run."

// dash accumulates panels on the grid.
type dash struct {
	p      Params
	panels []Panel
	nextID int
	x, y   int
	rowH   int
}

// Selectors every raw-series query carries: the template variables.
const (
	selNS   = `namespace=~"$namespace"`
	selInst = `namespace=~"$namespace", instance=~"$instance"`
)

func (d *dash) id() int { d.nextID++; return d.nextID }

func (d *dash) row(title string) {
	if d.x > 0 {
		d.y += d.rowH
		d.x, d.rowH = 0, 0
	}
	f := false
	d.panels = append(d.panels, Panel{ID: d.id(), Type: "row", Title: title, Datasource: DatasourceRef,
		GridPos: GridPos{H: 1, W: 24, X: 0, Y: d.y}, Collapsed: &f, Panels: []Panel{}})
	d.y++
}

// add places a panel of width w and height h after the previous one,
// wrapping to a new line of the grid when it does not fit.
func (d *dash) add(p Panel, w, h int) {
	if d.x+w > 24 {
		d.y += d.rowH
		d.x, d.rowH = 0, 0
	}
	p.ID = d.id()
	p.Datasource = DatasourceRef
	p.GridPos = GridPos{H: h, W: w, X: d.x, Y: d.y}
	for i := range p.Targets {
		p.Targets[i].Datasource = DatasourceRef
		p.Targets[i].RefID = string(rune('A' + i))
		if !p.Targets[i].Instant {
			p.Targets[i].Range = true
		}
	}
	if p.FieldConfig == nil {
		p.FieldConfig = &FieldConfig{}
	}
	if p.FieldConfig.Overrides == nil {
		p.FieldConfig.Overrides = []any{}
	}
	d.panels = append(d.panels, p)
	d.x += w
	d.rowH = max(d.rowH, h)
}

func ts(title, desc, unit string, targets ...Target) Panel {
	return Panel{Type: "timeseries", Title: title, Description: desc, Targets: targets,
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: unit,
			Custom: map[string]any{"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": false}}},
		Options: map[string]any{
			"legend":  map[string]any{"displayMode": "table", "placement": "bottom", "showLegend": true, "calcs": []string{"lastNotNull", "max"}},
			"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
		}}
}

func stat(title, desc, unit string, th *Thresholds, targets ...Target) Panel {
	return Panel{Type: "stat", Title: title, Description: desc, Targets: targets,
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: unit, Thresholds: th, Color: map[string]any{"mode": "thresholds"}}},
		Options: map[string]any{
			"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
			"colorMode":     "background", "graphMode": "area", "textMode": "value_and_name", "justifyMode": "auto",
		}}
}

func table(title, desc string, targets ...Target) Panel {
	for i := range targets {
		targets[i].Instant, targets[i].Format = true, "table"
	}
	return Panel{Type: "table", Title: title, Description: desc, Targets: targets,
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{}},
		Options:     map[string]any{"showHeader": true, "cellHeight": "sm"},
	}
}

func q(expr, legend string) Target { return Target{Expr: expr, LegendFormat: legend} }

func ptr(v float64) *float64 { return &v }

// okAbove is green from `from` up, red below.
func okAbove(from float64) *Thresholds {
	return &Thresholds{Mode: "absolute", Steps: []Step{{Color: "red"}, {Color: "green", Value: ptr(from)}}}
}

// okBelow is green up to `to`, red from it.
func okBelow(to float64) *Thresholds {
	return &Thresholds{Mode: "absolute", Steps: []Step{{Color: "green"}, {Color: "red", Value: ptr(to)}}}
}

// withLines draws thresholds as dashed lines on a time series.
func withLines(p Panel, th *Thresholds) Panel {
	p.FieldConfig.Defaults.Thresholds = th
	p.FieldConfig.Defaults.Custom["thresholdsStyle"] = map[string]any{"mode": "dashed"}
	return p
}

// quantile is a percentile over a histogram, from its native form where
// Prometheus ingests native histograms, else from its classic buckets.
func quantile(phi float64, metric, sel, by string) string {
	return fmt.Sprintf(`histogram_quantile(%[1]s, sum by (%[4]s) (rate(%[2]s{%[3]s}[$__rate_interval])))
or
histogram_quantile(%[1]s, sum by (%[4]s, le) (rate(%[2]s_bucket{%[3]s}[$__rate_interval])))`,
		formatFloat(phi), metric, sel, by)
}

// BuildDashboard builds the performance dashboard from p: the SLO objectives
// and the recording rules it reads are the same ones Rules uses.
func BuildDashboard(p Params) (*Dashboard, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	d := &dash{p: p}
	period := promDuration(p.SLOPeriod)
	stageSLO := fmt.Sprintf(`stage=~"$stage", stage=~%q`, p.FreshnessStages)

	d.row("Service level objectives")
	for _, s := range p.slis() {
		sel := selInst + ", " + s.by + `=~"$` + s.by + `"`
		switch {
		case s.name == "freshness":
			sel = selInst + ", " + stageSLO
		case s.by == "instance":
			sel = selInst
		}
		budget := formatFloat(1 - s.objective)
		sliExpr := fmt.Sprintf("sum by (%[1]s) (increase(%[2]s{%[4]s}[%[5]s]))\n/\nsum by (%[1]s) (increase(%[3]s{%[4]s}[%[5]s]))",
			s.by, s.good, s.total, sel, period)
		title := strings.ToUpper(s.name[:1]) + strings.ReplaceAll(s.name[1:], "_", " ")
		note := ""
		if s.name == "query_latency" {
			note = " " + upcomingMetricsNote
		}
		d.add(stat(title+" SLI ("+period+")",
			fmt.Sprintf("Share of %s that were good over the SLO period; objective %s.%s", s.subject, formatPercent(s.objective), note),
			"percentunit", okAbove(s.objective), q(sliExpr, "{{"+s.by+"}}")), 5, 6)
		d.add(stat(title+" error budget remaining ("+period+")",
			fmt.Sprintf("Share of the %s error budget (%s of %s) not yet spent over the SLO period. Negative: the SLO is breached.", period, formatPercent(1-s.objective), s.subject),
			"percentunit", okAbove(0), q(fmt.Sprintf("1 - (1 - (%s)) / %s", sliExpr, budget), "{{"+s.by+"}}")), 5, 6)
		var burns []Target
		for _, w := range []time.Duration{5 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour, 3 * 24 * time.Hour} {
			burns = append(burns, q(fmt.Sprintf(`%s{%s, %s=~"$%s"} / scalar(1 - %s)`, ErrorRatioRecord(s.name, w), selNS, s.by, s.by, ObjectiveRecord(s.name)),
				"{{"+s.by+"}} "+promDuration(w)))
		}
		d.add(withLines(ts(title+" burn rate",
			"Error ratio over each alert window divided by the error budget: 1 spends the budget exactly over the SLO period. "+
				"Pages at 14.4 (1h and 5m) or 6 (6h and 30m); tickets at 3 (1d and 2h) or 1 (3d and 6h). From the slo-canary recording rules.",
			"none", burns...), &Thresholds{Mode: "absolute", Steps: []Step{{Color: "green"}, {Color: "yellow", Value: ptr(1)},
			{Color: "orange", Value: ptr(3)}, {Color: "red", Value: ptr(6)}, {Color: "dark-red", Value: ptr(14.4)}}}), 14, 6)
	}

	d.row("Ingest lag")
	lagSel := selInst + `, stage=~"$stage"`
	var lag []Target
	for _, phi := range []float64{0.5, 0.95, 0.99} {
		lag = append(lag, q(quantile(phi, "slo_canary_marker_lag_seconds", lagSel, "stage"),
			fmt.Sprintf("p%s {{stage}}", formatFloat(phi*100))))
	}
	d.add(withLines(ts("Marker lag percentiles",
		"End-to-end lag from a marker's send to its first sighting at each stage, from the native histogram where Prometheus ingests it, else from the classic buckets. Lines: SLO-Scout's p50/p95/p99 budgets (30 s, 60 s, 90 s).",
		"s", lag...), &Thresholds{Mode: "absolute", Steps: []Step{{Color: "green"}, {Color: "yellow", Value: ptr(30)}, {Color: "orange", Value: ptr(60)}, {Color: "red", Value: ptr(90)}}}), 12, 8)
	d.add(ts("Freshness per stage",
		"Share of markers judged in each interval that were seen within the freshness budget (slo_canary_freshness_budget_seconds).",
		"percentunit", q(fmt.Sprintf("sum by (stage) (rate(slo_canary_freshness_sli_good_total{%[1]s}[$__rate_interval]))\n/\nsum by (stage) (rate(slo_canary_freshness_sli_total{%[1]s}[$__rate_interval]))", lagSel), "{{stage}}")), 12, 8)
	heat := Panel{Type: "heatmap", Title: "Marker lag distribution: $stage",
		Description: "Markers by lag at the stage, per interval. The native histogram is drawn where Prometheus ingests it; the classic buckets otherwise.",
		Repeat:      "stage", RepeatDirection: "h", MaxPerRow: 3,
		Targets: []Target{
			q(`sum(increase(slo_canary_marker_lag_seconds{`+selInst+`, stage=~"$stage"}[$__rate_interval]))`, "native"),
			{Expr: `sum by (le) (increase(slo_canary_marker_lag_seconds_bucket{` + selInst + `, stage=~"$stage"}[$__rate_interval]))`, LegendFormat: "{{le}}", Format: "heatmap"},
		},
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: "s"}},
		Options: map[string]any{
			"calculate": false, "cellGap": 1, "yAxis": map[string]any{"unit": "s", "axisPlacement": "left"},
			"color":   map[string]any{"mode": "scheme", "scheme": "Oranges", "exponent": 0.5, "steps": 64},
			"tooltip": map[string]any{"mode": "single", "yHistogram": true}, "legend": map[string]any{"show": true},
		}}
	d.add(heat, 24, 8)
	d.add(ts("Markers lost, late, duplicate, out of order",
		"Per interval and stage. Net loss is lost minus late: a marker declared lost that turns up within canary.late_window is late, not lost.",
		"short",
		q(`sum by (stage) (increase(slo_canary_markers_lost_total{`+lagSel+`}[$__rate_interval]))`, "lost {{stage}}"),
		q(`sum by (stage) (increase(slo_canary_markers_late_total{`+lagSel+`}[$__rate_interval]))`, "late {{stage}}"),
		q(`sum by (stage) (increase(slo_canary_markers_duplicate_total{`+lagSel+`}[$__rate_interval]))`, "duplicate {{stage}}"),
		q(`sum by (stage) (increase(slo_canary_markers_out_of_order_total{`+lagSel+`}[$__rate_interval]))`, "out of order {{stage}}"),
		q(`sum by (stage) (increase(slo_canary_markers_lost_total{`+lagSel+`}[$__range]))
-
sum by (stage) (increase(slo_canary_markers_late_total{`+lagSel+`}[$__range]))`, "net loss over the range {{stage}}"),
	), 12, 8)
	d.add(ts("Markers sent and observed",
		"Markers per second acknowledged by Kafka, and seen at each stage before their deadline.",
		"ops",
		q(`sum(rate(slo_canary_markers_sent_total{`+selInst+`}[$__rate_interval]))`, "sent"),
		q(`sum by (stage) (rate(slo_canary_markers_observed_total{`+lagSel+`}[$__rate_interval]))`, "observed {{stage}}"),
		q(`sum by (stage) (rate(slo_canary_markers_unmeasured_total{`+lagSel+`}[$__rate_interval]))`, "unmeasured {{stage}}"),
	), 12, 8)

	d.row("Canary")
	d.add(ts("Produce latency",
		"Time from a marker's send to its acknowledgement by Kafka (acks=all).",
		"s",
		q(quantile(0.5, "slo_canary_produce_latency_seconds", selInst, "instance"), "p50 {{instance}}"),
		q(quantile(0.99, "slo_canary_produce_latency_seconds", selInst, "instance"), "p99 {{instance}}"),
	), 8, 8)
	d.add(ts("Produce failures",
		"Failed marker produces per second, by reason. The collectors share this Kafka path.",
		"ops", q(`sum by (reason) (rate(slo_canary_produce_failures_total{`+selInst+`}[$__rate_interval]))`, "{{reason}}")), 8, 8)
	d.add(ts("Observer errors",
		"Failed observations per second, by stage and reason.",
		"ops", q(`sum by (stage, reason) (rate(slo_canary_observer_errors_total{`+lagSel+`}[$__rate_interval]))`, "{{stage}} {{reason}}")), 8, 8)
	d.add(stat("Stage ready", "1 once the stage's observer has answered.", "none", okAbove(1),
		q(`min by (stage) (slo_canary_stage_ready{`+lagSel+`})`, "{{stage}}")), 8, 5)
	d.add(stat("Checkpoint age", "Time since the tracker was last written to the state file (canary.state_file).", "s", okBelow(60),
		q(`time() - max(slo_canary_checkpoint_last_success_timestamp_seconds{`+selInst+`} > 0)`, "checkpoint")), 8, 5)
	d.add(table("Canary build", "slo-canary version and revision of each instance (slo_canary_build_info).",
		q(`max by (instance, version, revision, goversion) (slo_canary_build_info{`+selInst+`})`, "")), 8, 5)

	d.row("Queries")
	probeSel := selInst + `, probe=~"$probe"`
	d.add(withLines(ts("Query latency p95 per probe",
		"95th percentile latency of each query probe; sli_evidence asks for evidence (vector search), sli does not. "+upcomingMetricsNote,
		"s", q(quantile(0.95, "slo_canary_query_latency_seconds", probeSel, "probe"), "p95 {{probe}}"),
		q(quantile(0.99, "slo_canary_query_latency_seconds", probeSel, "probe"), "p99 {{probe}}"),
	), okBelow(2)), 12, 8)
	d.add(ts("Query outcomes",
		"Probe queries per second by outcome.", "ops",
		q(`sum by (probe, outcome) (rate(slo_canary_query_requests_total{`+probeSel+`}[$__rate_interval]))`, "{{probe}} {{outcome}}")), 12, 8)
	d.add(withLines(ts("Evidence (vector search) overhead",
		"Latency added by include_evidence=true: the with-evidence probe's percentile minus the without-evidence probe's, against its budget.",
		"s",
		q(`max by (percentile) (slo_canary_evidence_overhead_seconds{`+selInst+`})`, "overhead p{{percentile}}"),
		q(`max(slo_canary_evidence_overhead_budget_seconds{`+selInst+`})`, "budget"),
	), okBelow(1)), 12, 8)
	d.add(table("Concurrency runs (latest)",
		"The latest scheduled concurrency run of each kind: latency percentiles, success ratio and verdict (1 pass).",
		q(`max by (run, percentile) (slo_canary_concurrency_last_latency_seconds{`+selInst+`})`, ""),
		q(`max by (run) (slo_canary_concurrency_last_success_ratio{`+selInst+`})`, ""),
		q(`max by (run) (slo_canary_concurrency_last_verdict{`+selInst+`})`, ""),
		q(`max by (run) (slo_canary_concurrency_last_run_timestamp_seconds{`+selInst+`}) * 1000`, ""),
		q(`sum by (run, verdict) (increase(slo_canary_concurrency_runs_total{`+selInst+`}[$__range]))`, ""),
	), 12, 8)

	d.row("Bursts")
	d.add(table("Bursts (latest per profile)",
		"The latest burst of each profile: verdict (1 pass), lag percentiles of its markers, loss, achieved rate, catch-up time.",
		q(`max by (profile) (slo_canary_burst_last_verdict{`+selInst+`})`, ""),
		q(`max by (profile, quantile) (slo_canary_burst_last_lag_seconds{`+selInst+`})`, ""),
		q(`max by (profile) (slo_canary_burst_last_loss_ratio{`+selInst+`})`, ""),
		q(`max by (profile) (slo_canary_burst_last_achieved_rate{`+selInst+`})`, ""),
		q(`max by (profile) (slo_canary_burst_last_catchup_seconds{`+selInst+`})`, ""),
		q(`max by (profile) (slo_canary_burst_last_timestamp_seconds{`+selInst+`}) * 1000`, ""),
	), 12, 8)
	d.add(ts("Burst verdicts and load",
		"Bursts finished in the range by profile and verdict, and burst events produced per second. "+upcomingMetricsNote,
		"short",
		q(`sum by (profile, verdict) (increase(slo_canary_bursts_total{`+selInst+`}[$__range]))`, "{{profile}} {{verdict}}"),
		q(`sum(rate(slo_canary_burst_events_sent_total{`+selInst+`}[$__rate_interval]))`, "events/s"),
	), 12, 8)

	d.row("Consumer groups")
	d.add(ts("Consumer-group lag (records)",
		"Records between each watched group's committed offset and the end of the topic.", "short",
		q(`sum by (group, topic) (slo_canary_consumer_group_lag_records{`+selInst+`})`, "{{group}} {{topic}}")), 10, 8)
	d.add(withLines(ts("Consumer-group lag (time)",
		"Age of the oldest record each group has not committed. The line is the freshness budget.", "s",
		q(`max by (group, topic) (slo_canary_consumer_group_lag_seconds{`+selInst+`})`, "{{group}} {{topic}}"),
		q(`max(slo_canary_freshness_budget_seconds{`+selInst+`})`, "freshness budget"),
	), okBelow(60)), 10, 8)
	d.add(stat("Consumer groups up", "1 if the group exists and has committed offsets.", "none", okAbove(1),
		q(`min by (group) (slo_canary_consumer_group_up{`+selInst+`})`, "{{group}}")), 4, 8)

	// The capacity gauges start at zero and restart at zero: a profile's
	// figures are shown once it has finished a search that gave one.
	searched := ` and on (profile) sum by (profile) (slo_canary_capacity_searches_total{` + selInst + `, outcome!="aborted"}) > 0`
	d.row("Capacity")
	d.add(withLines(ts("Capacity headroom",
		fmt.Sprintf("Highest rate the latest capacity search of each profile sustained, over bursts.contract_rate: below the line (%sx), bursts at the promised rate would break the ingest SLOs. The trend, search after search, is the headroom a release gains or costs. %s",
			formatFloat(p.MinCapacityHeadroom), upcomingMetricsNote),
		"none",
		q(`max by (profile) (slo_canary_capacity_headroom_ratio{`+selInst+`})`+searched, "{{profile}}"),
	), okAbove(p.MinCapacityHeadroom)), 12, 8)
	d.add(table("Latest capacity search, per step",
		"Each step of the latest search of each profile: its target rate, its markers' lag p95, and whether it passed (1). Lag rising faster than the rate marks the knee; the highest passing step is the sustainable rate.",
		q(`max by (profile, step) (slo_canary_capacity_last_search_step_rate_events_per_second{`+selInst+`})`, ""),
		q(`max by (profile, step) (slo_canary_capacity_last_search_step_lag_p95_seconds{`+selInst+`})`, ""),
		q(`max by (profile, step) (slo_canary_capacity_last_search_step_passed{`+selInst+`})`, ""),
	), 12, 8)
	d.add(ts("Sustainable rate",
		"Events per second the latest and the previous complete capacity search of each profile sustained.",
		"ops",
		q(`max by (profile) (slo_canary_capacity_sustainable_events_per_second{`+selInst+`})`+searched, "{{profile}}"),
		q(`max by (profile) (slo_canary_capacity_previous_sustainable_events_per_second{`+selInst+`}) > 0`, "{{profile}} previous"),
	), 12, 8)
	d.add(table("Capacity searches",
		"Searches finished in the range by profile and outcome (found, at_least_max, none, aborted: a guard, the time cap or a shutdown stopped it, no figure), and when each profile's latest finished.",
		q(`sum by (profile, outcome) (increase(slo_canary_capacity_searches_total{`+selInst+`}[$__range]))`, ""),
		q(`max by (profile) (slo_canary_capacity_last_search_timestamp_seconds{`+selInst+`} > 0) * 1000`, ""),
	), 12, 8)

	all := map[string]any{"selected": true, "text": []string{"All"}, "value": []string{"$__all"}}
	v := func(name, label, query, desc string, multi bool) Variable {
		return Variable{Name: name, Label: label, Type: "query", Datasource: DatasourceRef,
			Query: VariableQuery{Query: query, RefID: "PrometheusVariableQueryEditor-VariableQuery"}, Definition: query,
			Refresh: 2, Sort: 1, Multi: multi, IncludeAll: true, AllValue: ".*", Current: all, Description: desc}
	}
	db := &Dashboard{
		UID:   DashboardUID,
		Title: "SLO-Scout performance",
		Description: "SLO-Scout's performance promises as slo-canary measures them: ingest freshness and lag per stage, " +
			"marker loss, query latency, bursts, consumer-group lag and capacity headroom. Generated by deploy/dashboard.go.",
		Tags: []string{"slo-scout", "slo-canary", "slo"}, Timezone: "browser", Editable: true, GraphTooltip: 1,
		Refresh: "30s", SchemaVersion: 39, Version: 1, Time: TimeRange{From: "now-6h", To: "now"},
		Links: []Link{{Title: "Runbooks", Type: "link", URL: p.RunbookURL, TargetBlank: true, Icon: "doc"}},
		Annotations: AnnotationSet{List: []Annotation{
			{Name: "Bursts", Datasource: DatasourceRef, Enable: true, IconColor: "orange",
				Expr: `max by (instance) (slo_canary_burst_running{` + selInst + `}) > 0`, Step: "15s",
				TitleFormat: "Burst", TextFormat: "burst running on {{instance}}", TagKeys: "instance"},
			{Name: "Scheduled jobs", Datasource: DatasourceRef, Enable: false, IconColor: "blue",
				// The scheduler names its jobs in the task label: "job" is
				// the target label Prometheus attaches on ingestion.
				Expr: `max by (instance, task) (slo_canary_scheduled_job_running{` + selInst + `}) > 0`, Step: "15s",
				TitleFormat: "{{task}}", TextFormat: "scheduled job {{task}} running", TagKeys: "task"},
		}},
		Templating: Templating{List: []Variable{
			{Name: "datasource", Label: "Data source", Type: "datasource", Query: "prometheus", Refresh: 1,
				Current: map[string]any{}, Description: "The Prometheus that scrapes slo-canary."},
			v("namespace", "Namespace", "label_values(slo_canary_build_info, namespace)", "Namespace of the canary (All also matches series without one).", false),
			v("instance", "Instance", `label_values(slo_canary_build_info{namespace=~"$namespace"}, instance)`, "Canary instance (scrape target).", true),
			v("stage", "Stage", `label_values(slo_canary_stage_ready{`+selInst+`}, stage)`, "Where markers are looked for.", true),
			v("probe", "Probe", `label_values(slo_canary_query_requests_total{`+selInst+`}, probe)`, "Query probe.", true),
		}},
		Panels: d.panels,
	}
	return db, nil
}

// DashboardJSON renders the dashboard as Grafana imports it.
func DashboardJSON(p Params) ([]byte, error) {
	db, err := BuildDashboard(p)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(db); err != nil {
		return nil, fmt.Errorf("deploy: render dashboard: %w", err)
	}
	return b.Bytes(), nil
}

// Targets lists every query in the dashboard: panel targets, then
// annotation queries, each named for error messages.
func (db *Dashboard) Targets() []NamedQuery {
	var out []NamedQuery
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, NamedQuery{Where: fmt.Sprintf("panel %q target %s", p.Title, t.RefID), Expr: t.Expr, Panel: p.Title})
			}
			walk(p.Panels)
		}
	}
	walk(db.Panels)
	for _, a := range db.Annotations.List {
		out = append(out, NamedQuery{Where: fmt.Sprintf("annotation %q", a.Name), Expr: a.Expr})
	}
	return out
}

// NamedQuery is one PromQL expression of the dashboard and where it is.
type NamedQuery struct {
	Where string
	Panel string // empty for annotations
	Expr  string
}
