package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestDaemonReadOnlyRole runs the whole daemon (`slo-canary run`: markers,
// the database and capsule stages, the HTTP and SQL query probes, consumer
// lag) with its database stage and its SQL query probe connected, by
// password, as exactly the role testbed/readonly-role.sql creates, while the
// reference pipeline writes the rows as the database's owner. Markers are
// observed at the database stage with no observer error of reason auth or
// query (a permission the role lacks shows there), every SQL probe request
// succeeds, the canary's sessions are the read-only role's and no other's,
// and the daemon stops cleanly with exit code 0.
func TestDaemonReadOnlyRole(t *testing.T) {
	password := "ro-" + randomHex(t, 12)
	db := startDBTestbed(t, password)

	// The role is the least-privilege one and no more: the test would
	// prove nothing with a role that could write.
	db.adminQuery(t, func(conn *pgx.Conn) {
		var write, other, super bool
		err := conn.QueryRow(context.Background(), `SELECT
			has_table_privilege($1, 'public.telemetry_events', 'INSERT, UPDATE, DELETE, TRUNCATE'),
			has_table_privilege($1, 'public.services', 'SELECT'),
			(SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = $1)`,
			testbed.ServeReadRole).Scan(&write, &other, &super)
		if err != nil {
			t.Fatal(err)
		}
		if write || other || super {
			t.Fatalf("role %s can write (%v), read services (%v) or administer (%v): not the read-only role", testbed.ServeReadRole, write, other, super)
		}
	})

	api, err := testbed.NewAPI(testbed.APIOptions{Profile: fastAPIProfile()})
	if err != nil {
		t.Fatal(err)
	}
	apiURL := serveAPI(t, api.Handler())

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "sql-probe-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The observer's password from the environment, the probe's from a
	// file: both ways an operator hands the role's password over.
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_PASSWORD", password)
	cfgPath := filepath.Join(dir, "canary.yaml")
	body := fmt.Sprintf(`kafka:
  brokers: [%q]
canary:
  instance: readonly-role
  rate: 5
  shutdown_timeout: 5s
  state_file: %q
observers:
  database:
    poll_interval: 200ms
    poll_timeout: 5s
    sql:
      dsn: %q
  capsules:
    enabled: true
    deadline: 1m
    poll_interval: 200ms
queries:
  base_url: %q
  probes:
    sli_evidence:
      interval: 500ms
      rotate:
        journey_ids: [%q]
    sli:
      interval: 500ms
      rotate:
        journey_ids: [%q]
    journeys:
      interval: 500ms
      rotate:
        services: [%q]
    health:
      interval: 500ms
    timescaledb:
      enabled: true
      interval: 300ms
      sql:
        dsn: %q
        password_file: %q
  concurrency:
    c100:
      enabled: false
    c200:
      enabled: false
`, db.pipeline.Brokers()[0], filepath.Join(dir, "state.json"), db.dsn(testbed.ServeReadRole),
		apiURL, api.JourneyIDs()[0], api.JourneyIDs()[1], api.Services()[0],
		db.dsn(testbed.ServeReadRole), pwFile)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	d := startCLIDaemon(t, "run", "--config", cfgPath, "--listen", "127.0.0.1:0", "--log-format", "json")
	const wantObserved = 20
	var m metricSet
	d.waitFor(40*time.Second, fmt.Sprintf("%d markers observed at the database stage and 3 successful SQL probe requests", wantObserved), func() bool {
		m = d.metrics()
		// A privilege the role lacks shows at once: no need to wait it out.
		for _, reason := range []string{"auth", "query"} {
			if n := m.sum("slo_canary_observer_errors_total", "stage", "database", "reason", reason); n != 0 {
				t.Fatalf("observer_errors_total{stage=database,reason=%s} = %v; log:\n%s", reason, n, tail(d.errb.String(), 2000))
			}
		}
		return m.sum("slo_canary_markers_observed_total", "stage", "database") >= wantObserved &&
			m.sum("slo_canary_query_requests_total", "probe", "timescaledb", "outcome", "success") >= 3
	})

	// Every session the canary holds open is the read-only role's.
	var users []string
	d.waitFor(10*time.Second, "the canary's sessions in pg_stat_activity", func() bool {
		users = nil
		db.adminQuery(t, func(conn *pgx.Conn) {
			rows, err := conn.Query(context.Background(),
				`SELECT usename FROM pg_stat_activity WHERE application_name = 'slo-canary' AND datname = $1`, testbed.ServeDatabase)
			if err != nil {
				t.Fatal(err)
			}
			users, err = pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
		})
		return len(users) > 0
	})
	for _, u := range users {
		if u != testbed.ServeReadRole {
			t.Errorf("a canary session is connected as %q, want only %q: %v", u, testbed.ServeReadRole, users)
		}
	}

	m = d.metrics()
	for _, reason := range []string{"auth", "query"} {
		if n := m.sum("slo_canary_observer_errors_total", "stage", "database", "reason", reason); n != 0 {
			t.Errorf("observer_errors_total{stage=database,reason=%s} = %v, want 0", reason, n)
		}
	}
	if n := m.sum("slo_canary_observer_errors_total", "stage", "database"); n != 0 {
		t.Logf("observer_errors_total{stage=database} = %v (reasons other than auth and query)", n)
	}
	if n := m.sum("slo_canary_markers_lost_total", "stage", "database"); n != 0 {
		t.Errorf("markers_lost_total{stage=database} = %v, want 0", n)
	}
	if ok, all := m.sum("slo_canary_query_requests_total", "probe", "timescaledb", "outcome", "success"),
		m.sum("slo_canary_query_requests_total", "probe", "timescaledb"); ok != all {
		t.Errorf("SQL probe: %v of %v requests succeeded; every one should (a refused statement is bad_body, a refused table connect_error)", ok, all)
	}
	if got := m.sum("slo_canary_stage_ready", "stage", "database"); got != 1 {
		t.Errorf("stage_ready{stage=database} = %v", got)
	}
	for _, l := range d.logLines("observation failed") {
		t.Errorf("observation failed: %v", l)
	}

	if code := d.stop(); code != 0 {
		t.Fatalf("daemon exited %d after SIGINT, want 0; stderr:\n%s", code, d.errb.String())
	}
	if len(d.logLines("slo-canary stopped")) == 0 {
		t.Errorf("no 'slo-canary stopped' line; stderr:\n%s", d.errb.String())
	}
}

// dbTestbed is the reference pipeline writing SLO-Scout's rows into
// slo_scout on a throwaway PostgreSQL as the database's owner (the server's
// superuser, trusted on loopback), with the canary's role created by
// testbed/readonly-role.sql, verbatim, given a password that the server
// demands (scram-sha-256) of every role but the owner.
type dbTestbed struct {
	pg       *testbed.Postgres
	pipeline *testbed.Pipeline
}

// startDBTestbed starts it; extraSQL runs as the owner on slo_scout after the
// role exists (more roles, say). The server is always a throwaway one, even
// with SLO_CANARY_TEST_POSTGRES_DSN set: its pg_hba.conf is rewritten and its
// roles are server-wide. It skips, or fails under CI=true, without initdb and
// pg_ctl.
func startDBTestbed(t *testing.T, canaryPassword string, extraSQL ...string) *dbTestbed {
	t.Helper()
	d := &dbTestbed{pg: testenv.Postgres(t)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	execSQL(t, d.pg.DSN("postgres"), "CREATE DATABASE "+testbed.ServeDatabase)
	d.pipeline = testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: d.adminDSN()})
	// After the pipeline created its tables: the grant covers them.
	stmts := append([]string{
		testbed.ReadOnlyRoleSQL,
		fmt.Sprintf("ALTER ROLE %s PASSWORD %s", testbed.ServeReadRole, quoteLiteral(canaryPassword)),
	}, extraSQL...)
	execSQL(t, d.adminDSN(), stmts...)

	// Passwords are only checked where pg_hba.conf says so: trust the owner
	// on loopback (the pipeline), demand one of everyone else.
	hba := filepath.Join(d.pg.Dir, "data", "pg_hba.conf")
	conf := fmt.Sprintf("local all all trust\nhost all %s 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n", d.pg.User)
	// Written in place: the file keeps the server account's ownership.
	if err := os.WriteFile(hba, []byte(conf), 0o600); err != nil {
		t.Fatalf("pg_hba.conf: %v", err)
	}
	execSQL(t, d.adminDSN(), "SELECT pg_reload_conf()")
	// The reload is asynchronous: wait until the role is asked for a password.
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, d.dsn(testbed.ServeReadRole))
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "28P01" {
			break
		}
		if err == nil {
			conn.Close(ctx)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still connects without a password after pg_hba.conf was reloaded (last: %v)", testbed.ServeReadRole, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cc, err := pgx.ParseConfig(d.dsn(testbed.ServeReadRole))
	if err != nil {
		t.Fatal(err)
	}
	cc.Password = canaryPassword
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatalf("%s with its password: %v", testbed.ServeReadRole, err)
	}
	conn.Close(ctx)
	return d
}

// adminDSN is the owner's DSN of slo_scout.
func (d *dbTestbed) adminDSN() string { return d.pg.DSN(testbed.ServeDatabase) }

// dsn is role's DSN of slo_scout, without a password.
func (d *dbTestbed) dsn(role string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", role, d.pg.Port, testbed.ServeDatabase)
}

// adminQuery runs f on a connection of the owner's.
func (d *dbTestbed) adminQuery(t *testing.T, f func(*pgx.Conn)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	f(conn)
}

func execSQL(t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", strings.Fields(s)[0], err)
		}
	}
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// fastAPIProfile answers quickly, so the query probes complete many requests
// in a short test.
func fastAPIProfile() testbed.APIProfile {
	return testbed.APIProfile{
		SLI:      testbed.Latency{Base: 5 * time.Millisecond},
		Evidence: testbed.Latency{Base: 5 * time.Millisecond},
		Journeys: testbed.Latency{Base: 2 * time.Millisecond},
		Health:   testbed.Latency{Base: time.Millisecond},
	}
}

// serveAPI serves h on a loopback port until the test ends and returns its
// base URL.
func serveAPI(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// cliDaemon is `slo-canary <args>` run through run, the program's entry
// point, as a process would run it: configuration from the file, the
// environment and the flags, logs on stderr, stopped by SIGINT.
type cliDaemon struct {
	t         *testing.T
	out, errb lockedBuffer
	exit      chan int
	base      string // the HTTP endpoint, from the "slo-canary started" log line
	done      bool
	code      int
}

// startCLIDaemon starts it and waits for its endpoint. While the test runs,
// SIGINT and SIGHUP are also delivered to a channel of the test's own, so
// that one arriving after run has returned cannot end the test process.
func startCLIDaemon(t *testing.T, args ...string) *cliDaemon {
	t.Helper()
	guard := make(chan os.Signal, 16)
	signal.Notify(guard, syscall.SIGINT, syscall.SIGHUP)
	t.Cleanup(func() { signal.Stop(guard) })
	d := &cliDaemon{t: t, exit: make(chan int, 1)}
	go func() { d.exit <- run(args, &d.out, &d.errb) }()
	t.Cleanup(func() {
		if !d.done {
			if code := d.stop(); code != 0 {
				t.Errorf("daemon exited %d at cleanup", code)
			}
		}
	})
	d.waitFor(30*time.Second, "the 'slo-canary started' log line", func() bool {
		for _, l := range d.logLines("slo-canary started") {
			if a, ok := l["listen"].(string); ok {
				d.base = "http://" + a
				return true
			}
		}
		return false
	})
	return d
}

// exited reports whether run has returned, collecting its exit code.
func (d *cliDaemon) exited() bool {
	if d.done {
		return true
	}
	select {
	case d.code = <-d.exit:
		d.done = true
	default:
	}
	return d.done
}

// waitFor polls ok until it holds; the daemon exiting meanwhile, or the
// timeout, fails the test.
func (d *cliDaemon) waitFor(timeout time.Duration, what string, ok func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if d.exited() {
			d.t.Fatalf("daemon exited %d while waiting for %s; stderr:\n%s", d.code, what, tail(d.errb.String(), 8000))
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out after %s waiting for %s; stderr:\n%s", timeout, what, tail(d.errb.String(), 8000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// signal sends sig to the process: run's handlers act on it.
func (d *cliDaemon) signal(sig syscall.Signal) {
	d.t.Helper()
	if err := syscall.Kill(syscall.Getpid(), sig); err != nil {
		d.t.Fatal(err)
	}
}

// stop presses Ctrl-C and returns the exit code.
func (d *cliDaemon) stop() int {
	d.t.Helper()
	if d.exited() {
		return d.code
	}
	d.signal(syscall.SIGINT)
	select {
	case d.code = <-d.exit:
		d.done = true
	case <-time.After(30 * time.Second):
		d.t.Fatalf("daemon did not exit within 30 s of SIGINT; stderr:\n%s", tail(d.errb.String(), 8000))
	}
	return d.code
}

// get fetches path from the daemon's endpoint, with an Accept header if
// accept is set.
func (d *cliDaemon) get(path, accept string) (int, string) {
	d.t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.base+path, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		d.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// metrics scrapes /metrics.
func (d *cliDaemon) metrics() metricSet {
	d.t.Helper()
	code, body := d.get("/metrics", "")
	if code != http.StatusOK {
		d.t.Fatalf("/metrics: %d %s", code, body)
	}
	return parseMetrics(body)
}

// logLines returns the JSON log lines on stderr whose msg is msg.
func (d *cliDaemon) logLines(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(d.errb.String(), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// metricSet is a scrape of the text exposition format.
type metricSet []sample

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)`)
	labelRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

func parseMetrics(body string) metricSet {
	var out metricSet
	for _, line := range strings.Split(body, "\n") {
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out
}

// sum adds up the series of name whose labels match the name, value pairs.
func (ms metricSet) sum(name string, labelPairs ...string) float64 {
	var total float64
	for _, s := range ms {
		if s.name != name {
			continue
		}
		match := true
		for i := 0; i+1 < len(labelPairs); i += 2 {
			match = match && s.labels[labelPairs[i]] == labelPairs[i+1]
		}
		if match {
			total += s.value
		}
	}
	return total
}
