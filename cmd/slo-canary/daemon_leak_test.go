package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/slo-scout/slo-canary/canary"
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
	current := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, current) })
	return testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn}), dsn
}

// leakWaitReady polls /readyz with a client of its own, whose idle connections
// are closed afterwards: they are the test's goroutines, not the daemon's.
func leakWaitReady(t *testing.T, base string, done <-chan error) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := cl.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("daemon stopped before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not ready within 30 s (last: %v)", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func leakStopDaemon(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop")
	}
}

// TestDaemonNoGoroutineLeak: runDaemon, once ready (service, observers,
// scheduler, HTTP endpoint) and then stopped, leaves no goroutine behind.
func TestDaemonNoGoroutineLeak(t *testing.T) {
	p, dsn := leakCheckedPipeline(t)
	c := config.Defaults()
	c.Kafka.Brokers = p.Brokers()
	c.HTTP.Listen = "127.0.0.1:0"
	db := c.Observers["database"]
	db.SQL.DSN = dsn
	db.PollInterval = 100 * time.Millisecond
	c.Canary.Rate = 5
	c.Observers["database"] = db
	c.Canary.Recovery.Enabled = false
	c.Canary.StateFile = filepath.Join(t.TempDir(), "state")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, &c, newLogger(config.Log{Level: "error"}, os.Stderr), &daemonHooks{
			started: func(_ *canary.Service, a net.Addr) { addrs <- a },
		})
	}()
	select {
	case a := <-addrs:
		leakWaitReady(t, "http://"+a.String(), done)
	case err := <-done:
		t.Fatalf("daemon stopped at start: %v", err)
	}
	leakStopDaemon(t, cancel, done)
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
	addrs := make(chan net.Addr, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runReloading(ctx, reloadOptions{
			path: path, cfg: cfg, poll: 50 * time.Millisecond,
			logger: newLogger(config.Log{Level: "error"}, os.Stderr),
			hooks:  &daemonHooks{started: func(_ *canary.Service, a net.Addr) { addrs <- a }},
		})
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case a := <-addrs:
			return "http://" + a.String()
		case err := <-done:
			t.Fatalf("daemon stopped waiting for %s: %v", what, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("no generation: %s", what)
		}
		return ""
	}
	leakWaitReady(t, next("start"), done)
	writeAtomic(t, path, body(10))
	leakWaitReady(t, next("reload"), done)
	leakStopDaemon(t, cancel, done)
}
