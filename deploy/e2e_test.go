package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestEndToEndAlerting runs the real parts together: the reference pipeline
// (in-process Kafka and a throwaway PostgreSQL), the slo-canary binary built
// from the Dockerfile's line, Prometheus scraping it with the generated rules
// (windows scaled 60x down), and Alertmanager with the example route,
// delivering to a webhook this test serves. It checks that every dashboard
// query runs and the core panels have data, then delays the pipeline past
// the freshness budget until the freshness page arrives, clears the fault,
// and waits for the page to resolve.
func TestEndToEndAlerting(t *testing.T) {
	t.Parallel()
	promBin := testenv.Binary(t, "prometheus")
	amBin := testenv.Binary(t, "prometheus-alertmanager")
	if !testbed.PostgresAvailable() {
		testenv.Missing(t, "PostgreSQL (initdb, pg_ctl)")
	}
	bin := canaryBinary(t)
	dir := t.TempDir()

	// The reference pipeline, in this process, so the test sets its faults.
	tb := startTestbed(t, dir)
	addCapacitySearch(t, tb.ConfigPath)

	// The canary: the Dockerfile's binary, with the testbed's config and a
	// short budget (5s) and deadline, so that an 8s delay breaches it. The
	// budget leaves room for a loaded machine: the fault-free lag is about a
	// second (the database observer polls every second).
	canaryAddr := startCanary(t, bin, tb.ConfigPath, dir)

	// Prometheus ingests native histograms from the canary directly, and the
	// classic buckets through a proxy that asks for the text format, as a
	// Prometheus without native histograms would: the dashboard must work
	// with both. The proxy's address is a second instance.
	target, err := url.Parse("http://" + canaryAddr)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	textOnly := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Accept", "text/plain;version=0.0.4")
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(textOnly.Close)
	classicAddr := strings.TrimPrefix(textOnly.URL, "http://")

	hook := newWebhook(t)
	amAddr := startAlertmanager(t, amBin, dir, hook.URL)
	prom := startPrometheus(t, promBin, dir, amAddr, canaryAddr, classicAddr)

	// Data flows and the recording rules evaluate.
	prom.waitFor(t, "recording rules over scraped markers", 90*time.Second,
		`slo_canary:freshness_sli_error_ratio:rate1h{job="slo-canary", stage="database"}`, nonEmpty)
	prom.waitFor(t, "the version stamped at build time", 10*time.Second,
		fmt.Sprintf(`slo_canary_build_info{job="slo-canary", version=%q, revision=%q}`, testVersion, testRevision), nonEmpty)

	// Both histogram forms are there to read: native from the canary's job,
	// classic buckets (and no native histogram) from the text-only one.
	prom.waitFor(t, "native lag histograms", 20*time.Second,
		`histogram_count(rate(slo_canary_marker_lag_seconds{job="slo-canary", stage="database"}[10s])) > 0`, nonEmpty)
	prom.waitFor(t, "classic lag buckets", 20*time.Second,
		`slo_canary_marker_lag_seconds_bucket{job="slo-canary-classic", stage="database", le="+Inf"} > 0`, nonEmpty)
	if got := prom.query(t, `slo_canary_marker_lag_seconds{job="slo-canary-classic"}`); len(got) > 0 {
		t.Fatalf("the text-only job has native histograms: %v", got)
	}

	// A capacity search has given a figure, so the capacity panels have data.
	prom.waitFor(t, "a finished capacity search", 2*time.Minute,
		`slo_canary_capacity_searches_total{job="slo-canary", profile="capacity", outcome=~"found|at_least_max"} > 0`, nonEmpty)

	// Every dashboard query runs; the panels fed by the core canary and by
	// the capacity search have data, from native histograms and from
	// classic buckets alike.
	checkDashboardLive(t, prom, canaryAddr)
	checkDashboardLive(t, prom, classicAddr)

	// Healthy: the freshness SLO does not burn.
	prom.waitFor(t, "a healthy 5m-window error ratio", 30*time.Second,
		`slo_canary:freshness_sli_error_ratio:rate5m{job="slo-canary", stage="database"} == 0`, nonEmpty)
	if got := prom.query(t, `ALERTS{alertname=~"SLOScoutFreshness.*"}`); len(got) > 0 {
		t.Fatalf("freshness alerts while healthy: %v", got)
	}
	if n := hook.count("SLOScoutFreshnessBudgetBurnFast"); n > 0 {
		t.Fatalf("%d freshness pages while healthy", n)
	}

	// Healthy: markers reach Kafka. The ingest SLI has events, all good, and
	// neither its burn nor SLOCanaryBlind is pending, once the canary has run
	// past the (scaled) blind window.
	prom.waitFor(t, "a healthy ingest error ratio", 30*time.Second,
		`slo_canary:ingest_availability_sli_error_ratio:rate1h{job="slo-canary"} == 0`, nonEmpty)
	prom.waitFor(t, "the canary running past the blind window", 30*time.Second,
		fmt.Sprintf(`time() - process_start_time_seconds{job="slo-canary"} > %v`, (DefaultParams().BlindAfter/e2eTimeScale).Seconds()), nonEmpty)
	noIngestAlerts(t, prom, "while healthy")

	// A delay past the budget: every marker is late. The page arrives.
	if err := tb.Pipeline.SetFaults(testbed.Faults{Delay: 8 * time.Second}); err != nil {
		t.Fatal(err)
	}
	faulted := time.Now()
	page := hook.wait(t, 90*time.Second, "/page", "SLOScoutFreshnessBudgetBurnFast", "firing")
	t.Logf("page after %v: %s", time.Since(faulted).Round(time.Second), page.Annotations["description"])
	for k, want := range map[string]string{"severity": "page", "slo": "freshness", "stage": "database", "namespace": "slo-scout", "job": "slo-canary"} {
		if page.Labels[k] != want {
			t.Errorf("page label %s = %q, want %q (labels %v)", k, page.Labels[k], want, page.Labels)
		}
	}
	if !strings.Contains(page.Annotations["description"], "% of markers at stage database") ||
		!strings.HasSuffix(page.Annotations["runbook_url"], "runbooks.md#sloscoutfreshnessbudgetburnfast") {
		t.Errorf("page annotations: %v", page.Annotations)
	}

	// Routing by severity: the slow burn, which trips too, is a ticket, and
	// the page never went to the ticket receiver.
	hook.wait(t, 30*time.Second, "/ticket", "SLOScoutFreshnessBudgetBurnSlow", "firing")
	if n := hook.countAt("/ticket", "SLOScoutFreshnessBudgetBurnFast"); n > 0 {
		t.Errorf("the page was also sent to the ticket receiver (%d times)", n)
	}

	// The fault clears: the page resolves.
	if err := tb.Pipeline.SetFaults(testbed.Faults{}); err != nil {
		t.Fatal(err)
	}
	cleared := time.Now()
	hook.wait(t, 120*time.Second, "/page", "SLOScoutFreshnessBudgetBurnFast", "resolved")
	t.Logf("resolved after %v", time.Since(cleared).Round(time.Second))

	// A slow pipeline is no ingest fault: markers were acknowledged all along.
	noIngestAlerts(t, prom, "at any moment of the test")
}

// noIngestAlerts fails if the ingest-availability burn or SLOCanaryBlind
// was pending or firing at any evaluation of the last hour (the whole test).
func noIngestAlerts(t *testing.T, prom *prometheus, when string) {
	t.Helper()
	if got := prom.query(t, `count_over_time(ALERTS{alertname=~"SLOScoutIngestAvailability.*|SLOCanaryBlind"}[1h])`); len(got) > 0 {
		t.Fatalf("ingest alerts %s on a healthy testbed: %v", when, got)
	}
}

// --- the reference pipeline and the canary ---

func startTestbed(t *testing.T, dir string) testbed.ServeInfo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan testbed.ServeInfo, 1)
	done := make(chan error, 1)
	go func() {
		done <- testbed.Serve(ctx, testbed.ServeOptions{
			Pipeline:     testbed.PipelineConfig{Partitions: 4},
			WriteConfig:  filepath.Join(dir, "canary.yaml"),
			CanaryListen: "127.0.0.1:0",
			Ready:        func(i testbed.ServeInfo) { ready <- i },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("testbed: %v", err)
		}
	})
	select {
	case info := <-ready:
		if info.DSN == "" {
			t.Fatal("the testbed runs without PostgreSQL")
		}
		return info
	case err := <-done:
		t.Fatalf("testbed: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("testbed did not start")
	}
	return testbed.ServeInfo{}
}

// addCapacitySearch appends to the canary's config a capacity search small
// enough to leave the pipeline's freshness alone (steps of 2 s at 20/s and
// 40/s, every 20 s), so that the dashboard's capacity row has data. Its
// contract rate is low enough that the headroom alerts stay silent.
func addCapacitySearch(t *testing.T, configPath string) {
	t.Helper()
	f, err := os.OpenFile(configPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The written config names the testbed's group already; the search
	// reads its lag every second (SLO_CANARY_CONSUMER_LAG_INTERVAL below).
	_, err = f.WriteString(`bursts:
  enabled: true
  marker_share: 0.1
  contract_rate: 10/s
  budgets:
    rate_tolerance: 0.2
  profiles:
    capacity:
      schedule: "@every 20s"
      search:
        start: 20/s
        max: 40/s
        step_duration: 2s
        timeout: 1m
`)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// startCanary runs `slo-canary run` with the alerting test's settings and
// returns its listen address.
func startCanary(t *testing.T, bin, configPath, dir string) string {
	t.Helper()
	return runCanary(t, bin, configPath,
		"SLO_CANARY_CANARY_FRESHNESS_BUDGET=5s",
		"SLO_CANARY_CANARY_DEADLINE=15s",
		"SLO_CANARY_OBSERVERS_CAPSULES_DEADLINE=15s",
		"SLO_CANARY_CANARY_LATE_WINDOW=30s",
		"SLO_CANARY_CANARY_RECOVERY_ENABLED=false",
		"SLO_CANARY_CANARY_STATE_FILE="+filepath.Join(dir, "canary.state"),
		"SLO_CANARY_CANARY_CHECKPOINT_INTERVAL=1s",
		"SLO_CANARY_CONSUMER_LAG_INTERVAL=1s",
		// No SLO-Scout API here: the query probes would only fail.
		"SLO_CANARY_QUERIES_ENABLED=false",
	)
}

// runCanary runs `slo-canary run` with env added and returns its listen
// address, read from its "slo-canary started" log line.
func runCanary(t *testing.T, bin, configPath string, env ...string) string {
	t.Helper()
	cmd := exec.Command(bin, "run", "--config", configPath)
	cmd.Env = append(os.Environ(),
		"SLO_CANARY_HTTP_LISTEN=127.0.0.1:0",
		"SLO_CANARY_LOG_FORMAT=json",
		"SLO_CANARY_LOG_LEVEL=info",
	)
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &tail{}
	addr := make(chan string, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			logs.add(sc.Text())
			var line struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "slo-canary started" {
				select {
				case addr <- line.Listen:
				default:
				}
			}
		}
	}()
	stop(t, "slo-canary", cmd, logs, scanned)
	select {
	case a := <-addr:
		return a
	case <-scanned:
		t.Fatalf("slo-canary exited before it started:\n%s", logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("slo-canary did not start:\n%s", logs)
	}
	return ""
}

// stop ends a process this test started, politely, at cleanup, and shows its
// last output if the test failed. wait (may be nil) closes once its output
// has been read.
func stop(t *testing.T, name string, cmd *exec.Cmd, logs *tail, wait <-chan struct{}) {
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan error, 1)
		go func() {
			if wait != nil {
				<-wait
			}
			exited <- cmd.Wait()
		}()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output (last lines):\n%s", name, logs)
		}
	})
}

// tail keeps the last lines a process wrote.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (l *tail) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
	if len(l.lines) > 40 {
		l.lines = l.lines[len(l.lines)-40:]
	}
}

func (l *tail) Write(p []byte) (int, error) {
	for _, s := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.add(s)
	}
	return len(p), nil
}

func (l *tail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// freeAddr finds a free loopback port for a server that cannot report the
// port it bound (Prometheus and Alertmanager log the configured address).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startServer(t *testing.T, name, bin string, args []string, readyURL string) {
	t.Helper()
	logs := &tail{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop(t, name, cmd, logs, nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s: %v\n%s", name, readyURL, err, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --- Alertmanager and its webhook receiver ---

// startAlertmanager runs Alertmanager with deploy/alertmanager-route.yaml,
// its receivers aimed at the test's webhook (/page, /ticket) and its timers
// shortened; clustering off, so nothing binds outside loopback.
func startAlertmanager(t *testing.T, bin, dir, hookURL string) string {
	t.Helper()
	data, err := os.ReadFile("alertmanager-route.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	var shorten func(r map[string]any)
	shorten = func(r map[string]any) {
		for k, v := range map[string]string{"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"} {
			if _, ok := r[k]; ok || r["receiver"] == "default" {
				r[k] = v
			}
		}
		if subs, ok := r["routes"].([]any); ok {
			for _, s := range subs {
				shorten(s.(map[string]any))
			}
		}
	}
	shorten(cfg["route"].(map[string]any))
	var hooks int
	for _, rv := range cfg["receivers"].([]any) {
		r := rv.(map[string]any)
		whs, _ := r["webhook_configs"].([]any)
		for _, w := range whs {
			wh := w.(map[string]any)
			u, err := url.Parse(wh["url"].(string))
			if err != nil {
				t.Fatal(err)
			}
			wh["url"] = hookURL + u.Path
			hooks++
		}
	}
	if hooks == 0 {
		t.Fatal("the example route has no webhook receivers to aim at the test")
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "alertmanager.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	startServer(t, "alertmanager", bin, []string{
		"--config.file=" + path,
		"--storage.path=" + filepath.Join(dir, "alertmanager"),
		"--web.listen-address=" + addr,
		"--cluster.listen-address=",
		"--log.level=warn",
	}, "http://"+addr+"/-/ready")
	return addr
}

// webhook receives Alertmanager's notifications.
type webhook struct {
	*httptest.Server
	mu       sync.Mutex
	received []notification
	messages int // notifications, each with one or more alerts
	changed  chan struct{}
}

type notification struct {
	Path   string
	Status string
	Alert  alert
}

type alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func newWebhook(t *testing.T) *webhook {
	h := &webhook{changed: make(chan struct{}, 1)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Status string  `json:"status"`
			Alerts []alert `json:"alerts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.messages++
		for _, a := range msg.Alerts {
			h.received = append(h.received, notification{Path: r.URL.Path, Status: msg.Status, Alert: a})
		}
		h.mu.Unlock()
		select {
		case h.changed <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *webhook) count(alertname string) int { return h.countAt("", alertname) }

// countAt counts notifications of alertname at path ("": any path).
func (h *webhook) countAt(path, alertname string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n int
	for _, r := range h.received {
		if r.Alert.Labels["alertname"] == alertname && (path == "" || r.Path == path) {
			n++
		}
	}
	return n
}

// wait returns the first notification at path of alertname, from the
// canary's own scrape job, in the given status.
func (h *webhook) wait(t *testing.T, timeout time.Duration, path, alertname, status string) alert {
	t.Helper()
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		for _, r := range h.received {
			a := r.Alert
			if r.Path == path && a.Labels["alertname"] == alertname && a.Labels["job"] == "slo-canary" && a.Status == status {
				h.mu.Unlock()
				return a
			}
		}
		got := slices.Clone(h.received)
		h.mu.Unlock()
		select {
		case <-h.changed:
		case <-deadline:
			t.Fatalf("no %s notification of %s at %s within %v; received %+v", status, alertname, path, timeout, got)
		}
	}
}

// --- Prometheus ---

type prometheus struct {
	url string
}

func startPrometheus(t *testing.T, bin, dir, amAddr, canaryAddr, classicAddr string) *prometheus {
	t.Helper()
	p := DefaultParams()
	jobs := map[string][]string{p.CanaryJob: {canaryAddr}}
	if classicAddr != "" { // "": no text-only job
		jobs[p.CanaryJob+"-classic"] = []string{classicAddr}
	}
	return startPrometheusJobs(t, bin, dir, amAddr, jobs)
}

// startPrometheusJobs runs Prometheus with the generated rules (scaled),
// scraping every job's targets with namespace slo-scout, and sending alerts
// to Alertmanager at amAddr ("": none).
func startPrometheusJobs(t *testing.T, bin, dir, amAddr string, jobs map[string][]string) *prometheus {
	t.Helper()
	p := DefaultParams()
	p.TimeScale = e2eTimeScale
	rules, err := RulesFile(p)
	if err != nil {
		t.Fatal(err)
	}
	rulesPath := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesPath, rules, 0o644); err != nil {
		t.Fatal(err)
	}
	var scrapes []any
	for _, job := range slices.Sorted(maps.Keys(jobs)) {
		scrapes = append(scrapes, map[string]any{"job_name": job, "static_configs": []any{map[string]any{
			"targets": jobs[job], "labels": map[string]string{"namespace": "slo-scout"}}}})
	}
	pc := map[string]any{
		"global":         map[string]string{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"rule_files":     []string{rulesPath},
		"scrape_configs": scrapes,
	}
	if amAddr != "" {
		pc["alerting"] = map[string]any{"alertmanagers": []any{map[string]any{
			"static_configs": []any{map[string]any{"targets": []string{amAddr}}}}}}
	}
	cfg, err := yaml.Marshal(pc)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	startServer(t, "prometheus", bin, []string{
		"--config.file=" + cfgPath,
		"--storage.tsdb.path=" + filepath.Join(dir, "prometheus"),
		"--web.listen-address=" + addr,
		"--enable-feature=native-histograms",
		// Alerts go to Alertmanager as soon as they change, not once a minute.
		"--rules.alert.resend-delay=1s",
		"--log.level=warn",
	}, "http://"+addr+"/-/ready")
	return &prometheus{url: "http://" + addr}
}

// sample is one element of a query result (a float or a native histogram).
type sample map[string]any

// run evaluates expr now; an error is a query Prometheus rejected.
func (p *prometheus) run(expr string) ([]sample, error) {
	resp, err := http.PostForm(p.url+"/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	if resp.StatusCode != http.StatusOK || r.Status != "success" {
		return nil, fmt.Errorf("HTTP %d, %s: %s", resp.StatusCode, r.Status, r.Error)
	}
	var out []sample
	switch r.Data.ResultType {
	case "vector", "matrix":
		err = json.Unmarshal(r.Data.Result, &out)
	case "scalar":
		out = []sample{{"value": r.Data.Result}}
	default:
		err = fmt.Errorf("result type %s", r.Data.ResultType)
	}
	return out, err
}

func (p *prometheus) query(t *testing.T, expr string) []sample {
	t.Helper()
	s, err := p.run(expr)
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	return s
}

func nonEmpty(s []sample) bool { return len(s) > 0 }

func (p *prometheus) waitFor(t *testing.T, what string, timeout time.Duration, expr string, ok func([]sample) bool) []sample {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := p.query(t, expr)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s gave %v after %v", what, expr, s, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkDashboardLive runs every dashboard query, the variables substituted
// with instance, against Prometheus: each must succeed, and every panel with
// a query over the core canary's series (or the capacity search's, which
// the test runs) must show data. Panels of the query probes and bursts only
// have to run.
func checkDashboardLive(t *testing.T, prom *prometheus, instance string) {
	t.Helper()
	db, _ := loadDashboard(t)
	sub := dashboardSubstitutions(instance)
	deadline := time.Now().Add(45 * time.Second)
	for {
		empty := map[string]bool{} // panels with core queries and no data yet
		hasData := map[string]bool{}
		for _, nq := range db.Targets() {
			expr := sub.Replace(nq.Expr)
			s, err := prom.run(expr)
			if err != nil {
				t.Fatalf("%s (instance %s): %v\n%s", nq.Where, instance, err, expr)
			}
			if nq.Panel == "" || !coreOnly(nq.Expr) {
				continue
			}
			if len(s) > 0 {
				hasData[nq.Panel] = true
			} else {
				empty[nq.Panel] = true
			}
		}
		for _, v := range db.Templating.List {
			if q, ok := v.Query.(map[string]any); ok {
				expr := sub.Replace(labelValuesSelector(t, q["query"].(string)))
				s, err := prom.run(expr)
				if err != nil {
					t.Fatalf("variable %s: %v", v.Name, err)
				}
				if coreOnly(expr) && len(s) == 0 {
					empty["variable "+v.Name] = true
				}
			}
		}
		var missing []string
		for p := range empty {
			if !hasData[p] {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			slices.Sort(missing)
			t.Fatalf("instance %s: panels over core series with no data: %q", instance, missing)
		}
		time.Sleep(time.Second)
	}
}
