package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// leakCheckedPipeline starts the reference pipeline for a daemon leak check.
// The check is registered as a cleanup before the pipeline's, so it runs
// after the pipeline has stopped: the pipeline's steady goroutines come and
// go (polls, connections) while it runs, so they cannot be taken as current,
// and a daemon leak is told from them only once they are all gone. The
// database server is up before the check's snapshot: it outlives the test.
func leakCheckedPipeline(t *testing.T) (*testbed.Pipeline, string) {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	testenv.VerifyNoLeaks(t)
	return testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn}), dsn
}

// TestDaemonNoGoroutineLeak: runDaemon, once ready (service, observers,
// scheduler, HTTP endpoint) and then stopped, leaves no goroutine behind.
func TestDaemonNoGoroutineLeak(t *testing.T) {
	p, dsn := leakCheckedPipeline(t)
	c := pipelineConfig(t, p, dsn, 100*time.Millisecond, func(c *config.Config) {
		c.Canary.Rate = 5
		c.Canary.StateFile = filepath.Join(t.TempDir(), "state")
	})
	d := startDaemon(t, daemonOpts{cfg: c})
	d.waitReady()
	if err := d.stop(); err != nil {
		t.Fatalf("daemon: %v", err)
	}
}

// TestReloadingNoGoroutineLeak: runReloading through a reload (a second
// generation replacing the first) and a shutdown leaves no goroutine behind:
// not the old generation's, not the file watcher's.
func TestReloadingNoGoroutineLeak(t *testing.T) {
	p, dsn := leakCheckedPipeline(t)
	body := func(rate int) string {
		return fmt.Sprintf(`http:
  listen: "127.0.0.1:0"
kafka:
  brokers: [%q]
canary:
  rate: %d
  recovery:
    enabled: false
observers:
  database:
    poll_interval: 100ms
    sql:
      dsn: %q
`, p.Brokers()[0], rate, dsn)
	}
	path := filepath.Join(t.TempDir(), "canary.yaml")
	writeAtomic(t, path, body(5))
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonOpts{cfg: cfg, path: path, poll: 50 * time.Millisecond})
	d.waitReady()
	writeAtomic(t, path, body(10))
	d.next("reload")
	d.waitReady()
	if err := d.stop(); err != nil {
		t.Fatalf("daemon: %v", err)
	}
}
