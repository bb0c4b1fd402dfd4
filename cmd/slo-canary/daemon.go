package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/canary/coord"
	"github.com/slo-scout/slo-canary/canary/grouplag"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/sched"
	"github.com/slo-scout/slo-canary/queries"
)

// daemonHooks lets the demo and tests watch a running daemon. Each hook runs
// once per generation, in the daemon's goroutine, after the generation's
// parts are built and before they run: queries first (only when the query
// probes are enabled), then started.
type daemonHooks struct {
	started func(svc *canary.Service, addr net.Addr)
	queries func(qs *queries.Service)
}

// reloadOptions configures the daemon: the config it starts with, and where a
// new one comes from (its trigger source).
type reloadOptions struct {
	path   string         // the config file, re-read on every reload; "": nothing triggers a reload
	flags  *pflag.FlagSet // flags still override the file after a reload
	cfg    *config.Config // the config loaded at start
	logger *slog.Logger
	poll   time.Duration // how often the file is checked; 0: defaultReloadPoll
	hooks  *daemonHooks
	// ln, if set, is http.listen already listening (the demo checks its port
	// before it starts a pipeline); the daemon serves it and closes it.
	ln net.Listener
	// sighup catches SIGHUP without a file too, and logs it as ignored
	// rather than let it end the process (the run command). With a file,
	// SIGHUP always triggers a reload.
	sighup bool
}

// daemon is `slo-canary run`: one HTTP endpoint, which lives as long as the
// process, serving the current generation of the canary's parts. A reload
// (reload.go) swaps the generation; without a trigger source the first one
// runs until the end.
type daemon struct {
	reloadOptions
	stateFile string         // forced on every generation so in-flight markers carry over; "": no reloads
	m         *reloadMetrics // nil: no reloads
	addr      net.Addr
	cur       atomic.Pointer[generation]
}

// generation is one set of running parts built from one config, on its own
// registry: a reload stops it and builds the next, so no metric is ever
// registered twice on one registry.
type generation struct {
	cfg     *config.Config
	reg     *prometheus.Registry
	markers *canary.Service
	queries *queries.Service // nil: query probes are off
	parts   []part
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // valid once done is closed
}

// part is one long-running piece of the daemon, owned by its generation's
// errgroup.
type part struct {
	name  string
	run   func(ctx context.Context) error
	ready func() error // nil: always ready
}

// daemonDeps is what the daemon's optional parts are built from.
type daemonDeps struct {
	cfg       *config.Config
	reg       prometheus.Registerer
	logger    *slog.Logger
	scheduler *sched.Scheduler
	service   *canary.Service
	coord     *coord.Coordinator // nil: coordination is off
}

// runDaemon runs the daemon on a fixed config: nothing triggers a reload.
func runDaemon(ctx context.Context, cfg *config.Config, logger *slog.Logger, hooks *daemonHooks) error {
	return runReloading(ctx, reloadOptions{cfg: cfg, logger: logger, hooks: hooks})
}

// runReloading runs the daemon until ctx is cancelled or a part fails. With
// a config file it reloads the file on SIGHUP and whenever its content
// changes: a valid config that changes anything stops the running parts (the
// marker service checkpoints its pending markers as it stops) and starts them
// again from the new config, which resumes from that checkpoint: no marker in
// flight is lost. An invalid config is logged and rejected, and the running
// one keeps going. Counters restart at zero with each generation, as after a
// process restart. http.listen, http.web_config_file and http.pprof are fixed for the
// process lifetime.
func runReloading(ctx context.Context, o reloadOptions) error {
	d := &daemon{reloadOptions: o}
	// Registered before anything else, so a SIGHUP never hits the default
	// action (terminate) once the daemon has announced itself.
	var hup chan os.Signal // nil: never ready
	if d.path != "" || d.sighup {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}

	base := prometheus.NewRegistry() // what outlives generations
	if d.path != "" {
		if d.poll <= 0 {
			d.poll = defaultReloadPoll
		}
		d.m = newReloadMetrics(base)
		if d.cfg.Canary.StateFile == "" {
			dir, err := os.MkdirTemp("", "slo-canary-state-")
			if err != nil {
				return &exitError{code: exitFailure, err: fmt.Errorf("reload checkpoint directory: %w", err)}
			}
			defer os.RemoveAll(dir)
			d.stateFile = filepath.Join(dir, "checkpoint.gob")
		}
	}

	ln := d.ln
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", d.cfg.HTTP.Listen); err != nil {
			return &exitError{code: exitFailure, err: fmt.Errorf("http.listen %s: %w", d.cfg.HTTP.Listen, err)}
		}
	}
	d.addr = ln.Addr()
	first, err := d.start(ctx, d.withState(d.cfg), true)
	if err != nil {
		ln.Close()
		return err
	}
	current := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return d.cur.Load().reg.Gather() })
	srv := &http.Server{
		Handler:           canary.Handler(prometheus.Gatherers{base, current}, func() error { return d.cur.Load().ready() }, d.cfg.HTTP.PProf),
		ReadHeaderTimeout: 10 * time.Second,
	}
	attrs := []any{"listen", ln.Addr().String()}
	if d.path != "" {
		attrs = append(attrs, "config", d.path)
	}
	d.logger.Info("slo-canary started", append(attrs, "topic", d.cfg.Canary.Topic,
		"instance", d.cfg.Canary.Instance, "stages", d.cfg.EnabledObservers())...)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveHTTP(gctx, srv, ln, d.cfg.HTTP.WebConfigFile, d.logger) }) // webserve.go
	g.Go(func() error { return d.loop(gctx, first, hup) })                                     // reload.go
	if err := g.Wait(); err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	d.logger.Info("slo-canary stopped")
	return nil
}

// start builds and runs one generation and makes it the one served. A new
// config (not a fallback to the previous one) counts as loaded successfully.
func (d *daemon) start(ctx context.Context, cfg *config.Config, loaded bool) (*generation, error) {
	gctx, cancel := context.WithCancel(ctx)
	gen, err := buildParts(gctx, cfg, d.logger)
	if err != nil {
		cancel()
		return nil, err
	}
	gen.cancel, gen.done = cancel, make(chan struct{})
	d.cur.Store(gen)
	if loaded && d.m != nil {
		d.m.success.Set(1)
		d.m.successTS.SetToCurrentTime()
		d.m.hash.Set(configHash(cfg))
	}
	if h := d.hooks; h != nil {
		if h.queries != nil && gen.queries != nil {
			h.queries(gen.queries)
		}
		if h.started != nil {
			h.started(gen.markers, d.addr)
		}
	}
	g, pctx := errgroup.WithContext(gctx)
	for _, p := range gen.parts {
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

// ready is /readyz: every part that can be unready is ready.
func (gen *generation) ready() error {
	var errs []error
	for _, p := range gen.parts {
		if p.ready != nil {
			if err := p.ready(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// buildParts builds a generation from cfg: its registry and every part of
// the daemon, each added here explicitly: the marker service, the scheduler
// (which runs the bursts and the query concurrency runs as jobs),
// consumer-group lag and the query probes.
func buildParts(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*generation, error) {
	startErr := func(err error) error { return &exitError{code: exitFailure, err: fmt.Errorf("start: %w", err)} }
	logWarnings(logger, cfg)
	reg := newRegistry() // version.go
	svc, err := canary.New(ctx, canary.Options{Config: cfg, Registerer: reg, Logger: logger})
	if err != nil {
		return nil, startErr(err)
	}
	sc := sched.New(reg, logger.With("component", "scheduler"))
	gen := &generation{cfg: cfg, reg: reg, markers: svc, parts: []part{
		{name: "markers", run: svc.Run, ready: svc.Ready},
		{name: "scheduler", run: sc.Run},
	}}
	cp, co, err := coordination(cfg, reg, logger, sc) // coordination.go: before any job is added
	if err != nil {
		return nil, startErr(fmt.Errorf("coordination: %w", err))
	}
	d := daemonDeps{cfg: cfg, reg: reg, logger: logger, scheduler: sc, service: svc, coord: co}
	if cp != nil {
		gen.parts = append(gen.parts, *cp)
	}

	gl, err := groupLag(cfg, reg, logger)
	if err != nil {
		return nil, startErr(fmt.Errorf("consumer_lag: %w", err))
	}
	if gl != nil {
		gen.parts = append(gen.parts, part{name: "consumer_lag", run: func(ctx context.Context) error {
			defer gl.Close()
			return gl.Run(ctx)
		}})
	}
	bp, err := scheduleBursts(d, gl)
	if err != nil {
		return nil, startErr(err)
	}
	gen.parts = append(gen.parts, bp...)
	qs, qp, err := queryParts(ctx, d)
	if err != nil {
		return nil, startErr(err)
	}
	gen.queries, gen.parts = qs, append(gen.parts, qp...)
	return gen, nil
}

// groupLag builds the consumer-group lag watcher if it is enabled.
func groupLag(cfg *config.Config, reg prometheus.Registerer, logger *slog.Logger) (*grouplag.Watcher, error) {
	if !cfg.ConsumerLag.Enabled {
		return nil, nil
	}
	kopts, err := canary.KafkaOpts(cfg.Kafka, logger)
	if err != nil {
		return nil, err
	}
	return grouplag.New(grouplag.Config{
		KafkaOpts: kopts, Groups: cfg.ConsumerLag.Groups, Interval: cfg.ConsumerLag.Interval, Timeout: cfg.ConsumerLag.Timeout,
		Registerer: reg, Logger: logger.With("component", "consumer_lag"),
	})
}

// scheduleBursts adds the scheduled bursts, when enabled, as jobs of the
// scheduler (group "burst"); gl, if not nil, is the daemon's consumer-group
// lag watcher, which their guards read. With bursts.scale_out it returns the
// part that runs this replica's shares of the leader's bursts.
func scheduleBursts(d daemonDeps, gl *grouplag.Watcher) ([]part, error) {
	if !d.cfg.Bursts.Enabled {
		return nil, nil
	}
	profiles := slices.Sorted(maps.Keys(d.cfg.Bursts.Profiles))
	logger := d.logger.With("component", "burst")
	m := burst.NewMetrics(d.reg, profiles)
	for _, p := range profiles {
		if d.cfg.Bursts.Profiles[p].Search.Enabled() {
			m.InitSearchProfile(p)
			seedPreviousSearch(m, d.cfg.Bursts.ReportDir, p, logger)
		}
	}
	o := burst.Options{
		Service: d.service, GroupLag: gl, Metrics: m,
		Logger: logger, Progress: progressLogger(logger),
		StepDone: func(s burst.SearchStep) {
			logger.Info("capacity search step", "target_rate", s.TargetRate, "achieved_rate", s.AchievedRate,
				"lag_p95", s.LagP95, "passed", s.Passed, "failed_check", s.FailedCheck)
		},
	}
	scaleOut := d.cfg.Bursts.ScaleOut && d.coord != nil
	if scaleOut {
		o.Membership, o.CoordinationTopic = d.coord, d.cfg.Coordination.Topic
	}
	runner, err := burst.NewRunner(o)
	if err != nil {
		return nil, err
	}
	jobs, err := runner.Jobs()
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if err := d.scheduler.Add(j); err != nil {
			return nil, fmt.Errorf("bursts: %w", err)
		}
	}
	logger.Info("bursts scheduled", "profiles", profiles, "report_dir", d.cfg.Bursts.ReportDir, "scale_out", scaleOut)
	if !scaleOut {
		return nil, nil
	}
	return []part{{name: "burst_shares", run: runner.Follow}}, nil
}

// progressLogger logs a running burst's progress every 30 seconds.
func progressLogger(logger *slog.Logger) func(burst.Progress) {
	n := 0
	return func(p burst.Progress) {
		if n++; n%30 != 0 {
			return
		}
		logger.Info("burst progress", "profile", p.Profile, "phase", p.Phase, "step", p.Step, "rate", p.Rate,
			"target_rate", p.TargetRate, "events", p.Sent, "markers_sent", p.MarkersSent, "markers_seen", p.MarkersSeen,
			"p95", p.P95, "left", p.Left)
	}
}

// queryParts builds the daemon's query probes, when enabled: continuous
// probes as a part, concurrency runs as jobs of the daemon's scheduler.
func queryParts(ctx context.Context, d daemonDeps) (*queries.Service, []part, error) {
	if !d.cfg.Queries.Enabled {
		return nil, nil, nil
	}
	qs, err := queries.New(ctx, queries.Options{Config: d.cfg, Registerer: d.reg, Logger: d.logger.With("component", "queries"), Scheduler: d.scheduler})
	if err != nil {
		return nil, nil, fmt.Errorf("queries: %w", err)
	}
	return qs, []part{{name: "queries", run: qs.Run, ready: qs.Ready}}, nil
}

// seedPreviousSearch gives the capacity search of profile the figure of the
// latest complete search in the report directory to compare its next one
// with, so a restart or a reload does not forget it
// (SLOScoutCapacityHeadroomDropped).
func seedPreviousSearch(m *burst.Metrics, dir, profile string, logger *slog.Logger) {
	if dir == "" {
		return
	}
	rep, skipped, err := burst.LatestSearch(dir, profile)
	for _, e := range skipped {
		logger.Warn("capacity report not read", "profile", profile, "err", e)
	}
	if err != nil {
		logger.Warn("capacity reports not read", "profile", profile, "dir", dir, "err", err)
		return
	}
	if rep != nil {
		m.SeedPreviousSearch(profile, *rep.Sustainable)
		logger.Info("previous capacity search", "profile", profile, "sustainable_rate_per_second", *rep.Sustainable, "finished", rep.Finished)
	}
}
