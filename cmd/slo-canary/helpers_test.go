package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// daemonWait bounds the waits for the daemon to start a generation and to
// turn ready.
const daemonWait = 30 * time.Second

// pipelineConfig is a validated daemon config for the reference pipeline p
// and its database dsn: the database stage polled every poll (0: the
// default), the HTTP endpoint on a free loopback port, no recovery read-back.
// edit, if set, changes it further before it is validated.
func pipelineConfig(t *testing.T, p *testbed.Pipeline, dsn string, poll time.Duration, edit func(*config.Config)) *config.Config {
	t.Helper()
	c := config.Defaults()
	c.Kafka.Brokers = p.Brokers()
	c.HTTP.Listen = "127.0.0.1:0"
	db := c.Observers["database"]
	db.SQL.DSN = dsn
	if poll > 0 {
		db.PollInterval = poll
	}
	c.Observers["database"] = db
	c.Canary.Recovery.Enabled = false
	if edit != nil {
		edit(&c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return &c
}

// daemonOpts says how a test runs the daemon in-process.
type daemonOpts struct {
	cfg *config.Config // validated; required
	// path, when set, is the file cfg was loaded from: the daemon then runs
	// as `run --config` does, reloading it (runReloading), checked every poll.
	path string
	poll time.Duration
	// logger gets the daemon's logs; nil: errors only, on stderr.
	logger *slog.Logger
	// started, when set, is called with every generation's service and
	// address before its parts run, on the daemon's goroutine.
	started func(*canary.Service, net.Addr)
}

// daemonGen is one generation of a running daemon.
type daemonGen struct {
	svc  *canary.Service
	addr string // host:port of the HTTP endpoint
}

// url is the generation's endpoint as a plain HTTP base URL.
func (g daemonGen) url() string { return "http://" + g.addr }

// testDaemon is the daemon run by startDaemon. Its daemonGen is the latest
// generation next has returned, the first one to begin with.
type testDaemon struct {
	daemonGen
	t          *testing.T
	cancel     context.CancelFunc
	done       chan struct{} // closed once the daemon has returned err
	err        error
	gens       chan daemonGen
	stopWithin time.Duration
	stopped    bool
}

// startDaemon runs the daemon until the test ends (or stop) and returns once
// its first generation listens. A daemon that returns before, or an error it
// returns at the end, fails the test.
func startDaemon(t *testing.T, o daemonOpts) *testDaemon {
	t.Helper()
	logger := o.logger
	if logger == nil {
		logger = newLogger(config.Log{Level: "error"}, os.Stderr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &testDaemon{
		t: t, cancel: cancel, done: make(chan struct{}), gens: make(chan daemonGen, 16),
		stopWithin: o.cfg.Canary.ShutdownTimeout + 10*time.Second,
	}
	hooks := &daemonHooks{started: func(svc *canary.Service, a net.Addr) {
		if o.started != nil {
			o.started(svc, a)
		}
		select {
		case d.gens <- daemonGen{svc: svc, addr: a.String()}:
		default:
			t.Errorf("more daemon generations than a test waits for")
		}
	}}
	go func() {
		defer close(d.done)
		if o.path == "" {
			d.err = runDaemon(ctx, o.cfg, logger, hooks)
			return
		}
		d.err = runReloading(ctx, reloadOptions{path: o.path, cfg: o.cfg, poll: o.poll, logger: logger, hooks: hooks})
	}()
	t.Cleanup(func() {
		if !d.stopped {
			if err := d.stop(); err != nil {
				t.Errorf("daemon: %v", err)
			}
		}
	})
	d.daemonGen = d.next("the daemon to start")
	return d
}

// next waits for the daemon's next generation (a reload's) and makes it
// the current one.
func (d *testDaemon) next(what string) daemonGen {
	d.t.Helper()
	select {
	case g := <-d.gens:
		d.daemonGen = g
		return g
	case <-d.done:
		d.t.Fatalf("daemon stopped waiting for %s: %v", what, d.err)
	case <-time.After(daemonWait):
		d.t.Fatalf("no new generation within %s: %s", daemonWait, what)
	}
	return daemonGen{}
}

// waitReady polls /readyz until it answers 200, with a client of its own
// whose idle connections are closed afterwards: they are the test's
// goroutines, not the daemon's.
func (d *testDaemon) waitReady() {
	d.t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	last := ""
	testenv.WaitFor(d.t, daemonWait, d.url()+"/readyz to answer 200", func() bool {
		select {
		case <-d.done:
			d.t.Fatalf("daemon stopped before it was ready: %v", d.err)
		default:
		}
		resp, err := cl.Get(d.url() + "/readyz")
		now := ""
		if err != nil {
			now = err.Error()
		} else {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
			now = resp.Status
		}
		if now != last {
			d.t.Logf("/readyz: %s", now)
			last = now
		}
		return false
	})
}

// stop cancels the daemon and returns what it returned. Not returning
// within its shutdown timeout and 10 s fails the test.
func (d *testDaemon) stop() error {
	d.t.Helper()
	d.stopped = true
	d.cancel()
	select {
	case <-d.done:
		return d.err
	case <-time.After(d.stopWithin):
		d.t.Fatalf("daemon did not stop within %s", d.stopWithin)
		return nil
	}
}

// buildCanary builds the slo-canary binary into a directory of the test.
func buildCanary(t *testing.T) string {
	t.Helper()
	goTool := testenv.Binary(t, "go")
	bin := filepath.Join(t.TempDir(), "slo-canary")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// scrapeSeries reads one series from /metrics: safe on any goroutine.
func scrapeSeries(url, series string) (float64, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no series %s", series)
}

// seriesValue reads one series from a daemon's /metrics: its value, and
// whether it is there (false also when /metrics does not answer).
func seriesValue(t *testing.T, url, series string) (float64, bool) {
	t.Helper()
	v, err := scrapeSeries(url, series)
	return v, err == nil
}
