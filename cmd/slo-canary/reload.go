package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
)

// defaultReloadPoll is how often the config file is checked for changes.
// A ticker in the reload loop rather than a scheduler job: the loop must
// outlive every generation's scheduler, and a missed tick costs nothing.
const defaultReloadPoll = 5 * time.Second

// reloadOptions configures runReloading.
type reloadOptions struct {
	path   string         // the config file, re-read on every reload
	flags  *pflag.FlagSet // flags still override the file after a reload
	cfg    *config.Config // the config loaded at start
	logger *slog.Logger
	poll   time.Duration // how often the file is checked; 0: defaultReloadPoll
	hooks  *daemonHooks  // started runs once per generation
}

// reloadMetrics are the reload gauges (blackbox_exporter's, with the
// slo_canary_ prefix). They live on a registry that outlives generations.
type reloadMetrics struct {
	success   prometheus.Gauge
	successTS prometheus.Gauge
	hash      prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	f := promauto.With(reg)
	return &reloadMetrics{
		success: f.NewGauge(prometheus.GaugeOpts{
			Name: "slo_canary_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful (1) or rejected (0).",
		}),
		successTS: f.NewGauge(prometheus.GaugeOpts{
			Name: "slo_canary_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration load (the start counts).",
		}),
		hash: f.NewGauge(prometheus.GaugeOpts{
			Name: "slo_canary_config_hash",
			Help: "Hash of the configuration in effect (first 48 bits of the SHA-256 of the rendered, secret-redacted config): it changes when a reload applied something.",
		}),
	}
}

// generation is one set of running parts built from one config, on its own
// registry: a reload stops it and builds the next, so no metric is ever
// registered twice on one registry.
type generation struct {
	cfg    *config.Config
	reg    *prometheus.Registry
	ready  func() error
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid once done is closed
}

// reloader owns the daemon's HTTP endpoint, which survives reloads, and
// swaps the generation it serves.
type reloader struct {
	reloadOptions
	stateFile string // forced on every generation so in-flight markers carry over
	m         *reloadMetrics
	addr      net.Addr
	cur       atomic.Pointer[generation]
}

// runReloading runs the daemon like runDaemon, and reloads the config file on
// SIGHUP and whenever its content changes. A valid config that changes
// anything stops the running parts (the marker service checkpoints its
// pending markers as it stops) and starts them again from the new config,
// which resumes from that checkpoint: no marker in flight is lost. An invalid
// config is logged and rejected, and the running one keeps going. Counters
// restart at zero with each generation, as after a process restart.
// http.listen and http.web_config_file are fixed for the process lifetime.
func runReloading(ctx context.Context, o reloadOptions) error {
	// Registered before anything else, so a SIGHUP never hits the default
	// action (terminate) once the daemon has announced itself.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if o.poll <= 0 {
		o.poll = defaultReloadPoll
	}
	r := &reloader{reloadOptions: o}
	if o.cfg.Canary.StateFile == "" {
		dir, err := os.MkdirTemp("", "slo-canary-state-")
		if err != nil {
			return &exitError{code: exitFailure, err: fmt.Errorf("reload checkpoint directory: %w", err)}
		}
		defer os.RemoveAll(dir)
		r.stateFile = filepath.Join(dir, "checkpoint.gob")
	}
	base := prometheus.NewRegistry()
	r.m = newReloadMetrics(base)

	ln, err := net.Listen("tcp", o.cfg.HTTP.Listen)
	if err != nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("http.listen %s: %w", o.cfg.HTTP.Listen, err)}
	}
	r.addr = ln.Addr()
	first, err := r.start(ctx, r.withState(o.cfg), true)
	if err != nil {
		ln.Close()
		return err
	}
	current := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return r.cur.Load().reg.Gather() })
	srv := &http.Server{
		Handler:           canary.Handler(prometheus.Gatherers{base, current}, func() error { return r.cur.Load().ready() }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	o.logger.Info("slo-canary started", "listen", ln.Addr().String(), "config", o.path, "topic", o.cfg.Canary.Topic,
		"instance", o.cfg.Canary.Instance, "stages", o.cfg.EnabledObservers())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveHTTP(gctx, srv, ln, o.cfg.HTTP.WebConfigFile, o.logger) })
	g.Go(func() error { return r.loop(gctx, first, hup) })
	if err := g.Wait(); err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	o.logger.Info("slo-canary stopped")
	return nil
}

// withState forces a checkpoint file, the carrier of pending markers from one
// generation to the next.
func (r *reloader) withState(c *config.Config) *config.Config {
	if c.Canary.StateFile == "" {
		c.Canary.StateFile = r.stateFile
		if c.Canary.CheckpointInterval <= 0 { // only validated when the user sets a state file
			c.Canary.CheckpointInterval = config.Defaults().Canary.CheckpointInterval
		}
	}
	return c
}

// start builds and runs one generation and makes it the one served. A new
// config (not a fallback to the previous one) counts as loaded successfully.
func (r *reloader) start(ctx context.Context, cfg *config.Config, loaded bool) (*generation, error) {
	gctx, cancel := context.WithCancel(ctx)
	reg := newRegistry()
	svc, parts, err := buildParts(gctx, cfg, reg, r.logger)
	if err != nil {
		cancel()
		return nil, err
	}
	gen := &generation{cfg: cfg, reg: reg, ready: partsReady(parts), cancel: cancel, done: make(chan struct{})}
	r.cur.Store(gen)
	if loaded {
		r.m.success.Set(1)
		r.m.successTS.SetToCurrentTime()
		r.m.hash.Set(configHash(cfg))
	}
	if r.hooks != nil && r.hooks.started != nil {
		r.hooks.started(svc, r.addr)
	}
	g, pctx := errgroup.WithContext(gctx)
	for _, p := range parts {
		g.Go(func() error {
			if err := p.run(pctx); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			return nil
		})
	}
	go func() { gen.err = g.Wait(); close(gen.done) }()
	return gen, nil
}

// loop waits for reload triggers and swaps generations until ctx ends or a
// part fails.
func (r *reloader) loop(ctx context.Context, gen *generation, hup <-chan os.Signal) error {
	tick := time.NewTicker(r.poll)
	defer tick.Stop()
	lastSum := fileSum(r.path)
	for {
		var trigger string
		select {
		case <-ctx.Done():
			gen.cancel()
			<-gen.done
			return gen.err
		case <-gen.done:
			if gen.err == nil && ctx.Err() == nil {
				return errors.New("the canary's parts stopped on their own") // else the endpoint would outlive them
			}
			return gen.err
		case <-hup:
			trigger = "SIGHUP"
		case <-tick.C:
			sum := fileSum(r.path)
			if bytes.Equal(sum, lastSum) {
				continue
			}
			lastSum, trigger = sum, "file changed"
		}
		next := r.candidate(gen.cfg, trigger)
		if next == nil {
			continue
		}
		r.logger.Info("config reload: restarting the canary's parts", "trigger", trigger)
		gen.cancel()
		<-gen.done
		if gen.err != nil {
			return gen.err
		}
		ng, err := r.start(ctx, next, true)
		if err != nil {
			r.m.success.Set(0)
			r.logger.Error("config reload failed: new config did not start; restarting the previous one", "file", r.path, "err", err)
			if ng, err = r.start(ctx, gen.cfg, false); err != nil {
				return err
			}
			gen = ng
			continue
		}
		gen = ng
		r.logger.Info("config reloaded", "file", r.path, "trigger", trigger)
	}
}

// candidate loads the config file again: nil when it is invalid (reported)
// or changes nothing (also a successful reload).
func (r *reloader) candidate(cur *config.Config, trigger string) *config.Config {
	next, err := config.Load(r.path, r.flags)
	if err != nil {
		r.m.success.Set(0)
		r.logger.Error("config reload rejected; keeping the running config", "file", r.path, "trigger", trigger, "err", err)
		return nil
	}
	next = r.withState(next)
	if next.HTTP != cur.HTTP {
		r.logger.Warn("config reload: http settings change only on restart; keeping the running ones",
			"listen", cur.HTTP.Listen, "web_config_file", cur.HTTP.WebConfigFile)
		next.HTTP = cur.HTTP
	}
	if reflect.DeepEqual(next, cur) {
		r.m.success.Set(1)
		r.m.successTS.SetToCurrentTime()
		r.logger.Info("config reload: nothing changed", "file", r.path, "trigger", trigger)
		return nil
	}
	return next
}

// fileSum is the config file's content hash; nil when unreadable (the
// reload that follows reports why).
func fileSum(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := sha256.Sum256(b)
	return s[:]
}

// configHash is exported as a gauge: 48 bits, exact in a float64. It hashes
// the rendered config, secrets redacted, so it reveals nothing secret.
func configHash(c *config.Config) float64 {
	b, err := config.Render(c)
	if err != nil {
		return 0
	}
	s := sha256.Sum256(b)
	return float64(binary.BigEndian.Uint64(s[:8]) >> 16)
}
