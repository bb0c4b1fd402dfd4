package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

// writeAtomic replaces the file in one step, so the watcher never reads half
// a config.
func writeAtomic(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// scrape returns the value of every unlabelled or labelled series on /metrics.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// TestConfigReload runs the daemon from a config file against the reference
// pipeline (which holds every event 2 s, so markers are in flight) and
// changes the file under it: a valid change is applied by new parts, and
// every marker pending in the old parts is resolved by the new ones; an
// invalid file is rejected, reported, and the old parts keep observing; a
// SIGHUP reloads without any file change.
func TestConfigReload(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn, Faults: testbed.Faults{Delay: 2 * time.Second}})
	body := func(deadline string, rate string) string {
		return fmt.Sprintf(`http:
  listen: "127.0.0.1:0"
kafka:
  brokers: [%q]
canary:
  rate: %s
  recovery:
    enabled: false
observers:
  database:
    poll_interval: 200ms
    deadline: %s
    sql:
      dsn: %q
`, p.Brokers()[0], rate, deadline, dsn)
	}
	path := filepath.Join(t.TempDir(), "canary.yaml")
	writeAtomic(t, path, body("90s", "1"))
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}

	type gen struct {
		svc *canary.Service
		mu  sync.Mutex
		obs map[uuid.UUID]bool // markers observed at the database stage
	}
	gens := make(chan *gen, 4)
	var base string // the endpoint, the same for every generation
	logs := &lockedBuffer{}
	d := startDaemon(t, daemonOpts{
		cfg: cfg, path: path, poll: 100 * time.Millisecond,
		logger: newLogger(config.Log{Level: "info", Format: "text"}, logs),
		started: func(svc *canary.Service, a net.Addr) {
			// Before the generation's parts run: nothing it observes is missed.
			g := &gen{svc: svc, obs: map[uuid.UUID]bool{}}
			svc.Watch(canary.Hooks{Result: func(stage string, _ probes.Sighting, r canary.Result) {
				if stage == "database" && (r.Outcome == canary.OutcomeObserved || r.Outcome == canary.OutcomeLate) {
					g.mu.Lock()
					g.obs[r.Marker.ID] = true
					g.mu.Unlock()
				}
			}})
			if base == "" {
				base = "http://" + a.String()
			} else if base != "http://"+a.String() {
				t.Errorf("endpoint moved from %s to %s", base, a)
			}
			gens <- g
		},
	})
	// started has handed the generation to gens before the daemon's own
	// record of it, which next waits for.
	nextGen := func(what string) *gen {
		t.Helper()
		d.next(what)
		return <-gens
	}
	g1 := <-gens
	m0 := scrape(t, base)
	if m0["slo_canary_config_last_reload_successful"] != 1 || m0[`slo_canary_stage_deadline_seconds{stage="database"}`] != 90 {
		t.Fatalf("at start: successful=%v deadline=%v", m0["slo_canary_config_last_reload_successful"], m0[`slo_canary_stage_deadline_seconds{stage="database"}`])
	}
	testenv.WaitFor(t, 30*time.Second, "markers in flight in the first generation", func() bool {
		for _, st := range g1.svc.Summary().Stages {
			if st.Name == "database" && st.Pending >= 4 && st.Observed >= 2 {
				return true
			}
		}
		return false
	})

	t.Log("valid change in the file: applied by a new generation")
	writeAtomic(t, path, body("120s", "1"))
	g2 := nextGen("valid file change")
	var pending []uuid.UUID // g1 has stopped: its final state is what g2 resumed from
	for _, ms := range g1.svc.Tracker().Export() {
		if !slices.Contains(ms.Seen, "database") {
			pending = append(pending, ms.Marker.ID)
		}
	}
	if len(pending) == 0 {
		// At least 4 were pending just before the reload, each held 2 s.
		t.Fatal("the stopped generation holds no pending marker: markers in flight were dropped at the reload")
	}
	m1 := scrape(t, base)
	if m1["slo_canary_config_last_reload_successful"] != 1 ||
		m1["slo_canary_config_last_reload_success_timestamp_seconds"] <= m0["slo_canary_config_last_reload_success_timestamp_seconds"] ||
		m1["slo_canary_config_hash"] == m0["slo_canary_config_hash"] {
		t.Errorf("after a valid reload: successful %v, success timestamp %v (was %v), hash %v (was %v)",
			m1["slo_canary_config_last_reload_successful"],
			m1["slo_canary_config_last_reload_success_timestamp_seconds"], m0["slo_canary_config_last_reload_success_timestamp_seconds"],
			m1["slo_canary_config_hash"], m0["slo_canary_config_hash"])
	}
	if got := m1[`slo_canary_stage_deadline_seconds{stage="database"}`]; got != 120 {
		t.Errorf("new stage deadline not in effect: %v", got)
	}
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("all %d markers in flight across the reload observed after it", len(pending)), func() bool {
		g2.mu.Lock()
		defer g2.mu.Unlock()
		for _, id := range pending {
			if !g2.obs[id] {
				return false
			}
		}
		return true
	})
	for _, st := range g2.svc.Summary().Stages {
		if st.Lost != 0 {
			t.Errorf("stage %s lost %d markers across the reload", st.Name, st.Lost)
		}
	}

	t.Log("invalid file: rejected, reported, old config keeps running")
	writeAtomic(t, path, body("120s", "-1"))
	testenv.WaitFor(t, 10*time.Second, "reload failure gauge", func() bool {
		return scrape(t, base)["slo_canary_config_last_reload_successful"] == 0
	})
	if l := logs.String(); !strings.Contains(l, "config reload rejected") || !strings.Contains(l, "canary.rate") {
		t.Errorf("no log line naming the problem:\n%s", l)
	}
	observedAt := func() uint64 { return g2.svc.Summary().Stages[0].Observed }
	before := observedAt()
	testenv.WaitFor(t, 15*time.Second, "markers still observed under the old config", func() bool { return observedAt() > before })
	select {
	case <-gens:
		t.Fatal("an invalid config started a new generation")
	default:
	}

	t.Log("file fixed: reload succeeds, nothing to restart")
	writeAtomic(t, path, body("120s", "1"))
	testenv.WaitFor(t, 10*time.Second, "reload success gauge", func() bool {
		return scrape(t, base)["slo_canary_config_last_reload_successful"] == 1
	})
	ts := scrape(t, base)["slo_canary_config_last_reload_success_timestamp_seconds"]

	t.Log("SIGHUP with no file change: a reload")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "SIGHUP reload", func() bool {
		return scrape(t, base)["slo_canary_config_last_reload_success_timestamp_seconds"] > ts
	})
	if !strings.Contains(logs.String(), "trigger=SIGHUP") {
		t.Errorf("no SIGHUP reload logged:\n%s", logs.String())
	}
}
