package testbed_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/viper"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

func call(t *testing.T, method, url, body string, wantCode int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		t.Fatalf("%s %s: %d %s, want %d", method, url, resp.StatusCode, b, wantCode)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
}

// TestControlAPI drives faults and reads stats and truth over HTTP, and checks
// the changes reach the running pipeline.
func TestControlAPI(t *testing.T) {
	t.Parallel()
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 1})
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()

	var f testbed.Faults
	call(t, "GET", srv.URL+"/faults", "", 200, &f)
	if f != (testbed.Faults{}) {
		t.Fatalf("initial faults %+v", f)
	}
	call(t, "PUT", srv.URL+"/faults", `{"delay":"2s","drop_pct":5}`, 200, &f)
	call(t, "PUT", srv.URL+"/faults", `{"jitter":"100ms"}`, 200, &f)
	want := testbed.Faults{Delay: 2 * time.Second, Jitter: 100 * time.Millisecond, DropPct: 5}
	if f != want || p.Faults() != want {
		t.Fatalf("after PUT: answer %+v, pipeline %+v, want %+v", f, p.Faults(), want)
	}
	call(t, "PUT", srv.URL+"/faults", `{"drop_pct":200}`, 400, nil)
	call(t, "PUT", srv.URL+"/faults", `{"delay":"0s","drop_pct":0,"jitter":"0s"}`, 200, &f)

	call(t, "POST", srv.URL+"/stall", "", 200, &f)
	if !f.Stalled || !p.Stats().Stalled {
		t.Fatal("POST /stall did not stall")
	}
	events := newEvents(3, 1)
	produce(t, p.Brokers(), canary.EncodingAvro, 1, events)
	var s testbed.Stats
	testenv.WaitFor(t, 10*time.Second, "3 queued", func() bool {
		call(t, "GET", srv.URL+"/stats", "", 200, &s)
		return s.Queued == 3
	})
	call(t, "POST", srv.URL+"/resume", "", 200, &f)
	if f.Stalled {
		t.Fatal("POST /resume did not resume")
	}
	waitProcessed(t, p, 3, 0, 3)

	var tr testbed.Truth
	call(t, "GET", srv.URL+"/truth/"+events[0].EventID, "", 200, &tr)
	direct, _ := p.Truth(uuid.MustParse(events[0].EventID))
	if !tr.Consumed.Equal(direct.Consumed) || !tr.Forwarded.Equal(direct.Forwarded) || tr.ForwardCopies != 1 || !tr.DBVisible.IsZero() {
		t.Fatalf("truth over HTTP %+v, direct %+v", tr, direct)
	}
	call(t, "GET", srv.URL+"/truth/"+uuid.NewString(), "", 404, nil)
	call(t, "GET", srv.URL+"/truth/nope", "", 400, nil)
}

// TestKcatInterop reads the testbed's topics with kcat (librdkafka): the ingest
// records the test produced and the capsules the pipeline wrote.
func TestKcatInterop(t *testing.T) {
	t.Parallel()
	kcat := testenv.Binary(t, "kcat")
	p := startPipeline(t, testbed.PipelineConfig{Partitions: 2})
	events := newEvents(10, 2)
	produce(t, p.Brokers(), canary.EncodingAvro, 2, events)
	waitProcessed(t, p, 10, 0, 10)
	broker := p.Brokers()[0]

	run := func(args ...string) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, kcat, append([]string{"-b", broker, "-C", "-e", "-q", "-o", "beginning"}, args...)...).Output()
		if err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, out)
		}
		var lines []string
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if sc.Text() != "" {
				lines = append(lines, sc.Text())
			}
		}
		return lines
	}

	// Partition 0 of the ingest topic: keys are the even events' ids, in order.
	var want []string
	for i := 0; i < len(events); i += 2 {
		want = append(want, events[i].EventID)
	}
	if got := run("-t", "raw-telemetry", "-p", "0", "-f", "%k\n"); !slices.Equal(got, want) {
		t.Fatalf("kcat read keys %v from raw-telemetry/0, want %v", got, want)
	}

	// The capsule topic, all partitions: one JSON capsule per event.
	var got []string
	for _, line := range run("-t", "capsule-events", "-f", "%s\n") {
		var c testbed.CapsuleEvent
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("kcat capsule %q: %v", line, err)
		}
		got = append(got, c.SampleEventIDs...)
	}
	all := make([]string, len(events))
	for i, ev := range events {
		all[i] = ev.EventID
	}
	slices.Sort(got)
	slices.Sort(all)
	if !slices.Equal(got, all) {
		t.Fatalf("kcat read capsule samples %v, want %v", got, all)
	}
}

// TestServe runs the standalone testbed with a real PostgreSQL: it prints the
// addresses, writes a canary config with the expected keys, gives the canary a
// read-only role, serves the control API, and removes everything on cancel.
func TestServe(t *testing.T) {
	t.Parallel()
	if !testbed.PostgresAvailable() {
		testenv.Missing(t, "PostgreSQL (initdb, pg_ctl)")
	}
	cfgPath := filepath.Join(t.TempDir(), "canary.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	ready := make(chan testbed.ServeInfo, 1)
	done := make(chan error, 1)
	go func() {
		done <- testbed.Serve(ctx, testbed.ServeOptions{
			Pipeline:    testbed.PipelineConfig{Partitions: 3},
			WriteConfig: cfgPath,
			Out:         &out,
			Ready:       func(i testbed.ServeInfo) { ready <- i },
		})
	}()
	var info testbed.ServeInfo
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("Serve not ready after a minute")
	}

	for _, s := range []string{info.Brokers[0], info.DSN, info.ControlURL, cfgPath} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}

	v := viper.New()
	v.SetConfigFile(cfgPath)
	if err := v.ReadInConfig(); err != nil {
		t.Fatalf("read written config: %v", err)
	}
	for key, want := range map[string]any{
		"kafka.brokers":                    info.Brokers,
		"canary.topic":                     "raw-telemetry",
		"canary.encoding":                  "avro",
		"http.listen":                      "127.0.0.1:9464",
		"consumer_lag.groups":              []string{info.Pipeline.Config().Group},
		"observers.database.type":          "sql",
		"observers.database.enabled":       true,
		"observers.database.sql.dsn":       info.DSN,
		"observers.capsules.type":          "kafka",
		"observers.capsules.enabled":       true,
		"observers.capsules.kafka.topic":   "capsule-events",
		"observers.capsules.kafka.extract": "json",
		"observers.capsules.kafka.field":   "sample_event_ids",
		"observers.capsules.deadline":      "5m",
	} {
		var got any = v.Get(key)
		if s, ok := want.([]string); ok {
			got = v.GetStringSlice(key)
			if !slices.Equal(got.([]string), s) {
				t.Errorf("%s = %v, want %v", key, got, want)
			}
			continue
		}
		if got != want {
			t.Errorf("%s = %#v, want %#v", key, got, want)
		}
	}

	// Events flow through to the database, readable with the canary's role,
	// which cannot write.
	events := newEvents(5, 3)
	produce(t, info.Brokers, canary.EncodingAvro, 3, events)
	waitProcessed(t, info.Pipeline, 5, 5, 5)
	conn, err := pgx.Connect(ctx, info.DSN)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM telemetry_events`).Scan(&n); err != nil || n != 5 {
		t.Fatalf("read-only role sees %d rows, err %v", n, err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM telemetry_events`); err == nil {
		t.Fatal("read-only role could delete")
	}
	conn.Close(ctx)

	var s testbed.Stats
	call(t, "GET", info.ControlURL+"/stats", "", 200, &s)
	if s.DBRows != 5 {
		t.Fatalf("stats over the control API: %+v", s)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Serve did not return after cancel")
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if c, err := pgx.Connect(cctx, info.AdminDSN); err == nil {
		c.Close(cctx)
		t.Fatal("PostgreSQL still up after Serve returned")
	}
	if _, err := http.Get(info.ControlURL + "/stats"); err == nil {
		t.Fatal("control API still up after Serve returned")
	}
}
