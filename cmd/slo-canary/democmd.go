package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/queries"
	"github.com/slo-scout/slo-canary/testbed"
)

func logConfig(level string) config.Log { return config.Log{Level: level, Format: "auto"} }

func newDemoCmd() *cobra.Command {
	var (
		listen     string
		partitions int32
		rate       float64
		every      time.Duration
		noPG       bool
		level      string
		faults     faultFlags
		burst      demoBurstFlags // burstdemo.go
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the reference pipeline and the canary in one process, with a live summary",
		Long: `Starts the reference pipeline (in-process Kafka, and PostgreSQL when initdb is
on PATH) and the canary against it, serves the canary's /metrics, and prints a
one-line summary every few seconds. No outside services are needed. A marker
not seen at a stage within a minute counts as lost there (the environment
variable SLO_CANARY_CANARY_DEADLINE changes that; the demo configures its
canary itself and takes no other SLO_CANARY_* variable). Ctrl-C prints a final
summary and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := faults.faults.Validate(); err != nil {
				return &exitError{code: exitConfig, err: err}
			}
			if err := burst.validate(); err != nil {
				return &exitError{code: exitConfig, err: err}
			}
			deadline, err := demoDeadline()
			if err != nil {
				return &exitError{code: exitConfig, err: err}
			}
			// The port first: a busy one is said before a pipeline starts.
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return &exitError{code: exitFailure, err: fmt.Errorf("demo: --listen %s: %w", listen, err)}
			}
			defer ln.Close() // the daemon closes it once it serves it
			out := cmd.OutOrStdout()
			logger := newLogger(logConfig(level), cmd.ErrOrStderr())
			for _, name := range demoIgnoredEnv() {
				logger.Warn("the demo ignores this variable: it configures its own canary and takes only "+deadlineEnv, "variable", name)
			}
			ready := make(chan testbed.ServeInfo, 1)
			runCtx, cancelRun := context.WithCancel(cmd.Context())
			defer cancelRun()
			g, ctx := errgroup.WithContext(runCtx)
			// The pipeline outlives the canary: on Ctrl-C the canary stops
			// first, with everything it started (its last produces, polls
			// and a burst's flush still find Kafka and the database), then
			// the pipeline.
			tbCtx, stopTestbed := context.WithCancel(context.Background())
			defer stopTestbed()
			daemonDone := make(chan struct{})
			g.Go(func() error {
				<-ctx.Done()
				<-daemonDone
				stopTestbed()
				return nil
			})
			g.Go(func() error {
				return testbed.Serve(tbCtx, testbed.ServeOptions{
					Pipeline:   testbed.PipelineConfig{Partitions: partitions, Faults: faults.faults},
					NoPostgres: noPG,
					Out:        out,
					Logger:     logger.With("component", "testbed"),
					Ready:      func(i testbed.ServeInfo) { ready <- i },
				})
			})
			var info testbed.ServeInfo
			select {
			case info = <-ready:
			case <-ctx.Done():
				close(daemonDone)
				return demoExit(g.Wait())
			}
			cfg, err := demoConfig(info, listen, rate, level, deadline)
			if err != nil {
				// Stop the pipeline (and its PostgreSQL) before saying so.
				cancelRun()
				close(daemonDone)
				g.Wait()
				return &exitError{code: exitFailure, err: err}
			}
			switch {
			case info.DSN != "":
				fmt.Fprintln(out, "stages:   database (telemetry_events rows) and capsules (capsule-events topic)")
			case noPG:
				fmt.Fprintln(out, "stages:   capsules (capsule-events topic) only: --no-postgres")
			default:
				fmt.Fprintln(out, "stages:   capsules (capsule-events topic) only: PostgreSQL (initdb, pg_ctl) not found on PATH")
			}
			fmt.Fprintf(out, "deadline: %s: a marker not seen at a stage by then counts as lost there (%s to change)\n",
				config.FormatDuration(deadline), deadlineEnv)
			var canaryWG sync.WaitGroup // the daemon and what it started
			canaryWG.Add(1)
			g.Go(func() error {
				defer canaryWG.Done()
				var qs *queries.Service // the queries hook runs before started
				return runReloading(ctx, reloadOptions{cfg: cfg, logger: logger.With("component", "canary"), ln: ln, hooks: &daemonHooks{
					queries: func(q *queries.Service) { qs = q },
					started: func(svc *canary.Service, addr net.Addr) {
						fmt.Fprintf(out, "metrics:  http://%s/metrics\n", addr)
						canaryWG.Add(2) // while the daemon's 1 is held
						g.Go(func() error { defer canaryWG.Done(); summaries(ctx, out, every, svc.Summary); return nil })
						if qs != nil {
							canaryWG.Add(1)
							g.Go(func() error { defer canaryWG.Done(); summaries(ctx, out, every, qs.Summary); return nil })
						}
						g.Go(func() error { defer canaryWG.Done(); return burst.run(ctx, out, cfg, svc, logger) })
					},
				}})
			})
			go func() {
				canaryWG.Wait()
				close(daemonDone)
			}()
			return demoExit(g.Wait())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&listen, "listen", "127.0.0.1:9464", "address of the canary's /metrics")
	fs.Int32Var(&partitions, "partitions", 10, "partitions of the reference pipeline's topics")
	fs.Float64Var(&rate, "rate", 1, "markers per second per partition")
	fs.DurationVar(&every, "summary-interval", 5*time.Second, "how often to print the summary line")
	fs.BoolVar(&noPG, "no-postgres", false, "run without PostgreSQL even if initdb is available")
	fs.StringVar(&level, "log-level", "warn", "log level")
	faults.bind(cmd)
	burst.bind(cmd)
	return cmd
}

func demoExit(err error) error {
	if err == nil || err == context.Canceled {
		return nil
	}
	if _, ok := err.(*exitError); ok {
		return err
	}
	return &exitError{code: exitFailure, err: err}
}

// deadlineEnv is the one SLO_CANARY_* variable the demo takes.
var deadlineEnv = config.EnvName("canary.deadline")

// demoDeadline is the demo's canary.deadline: a minute, so that a dropped
// marker shows up within the demo's attention span, or deadlineEnv.
func demoDeadline() (time.Duration, error) {
	v := strings.TrimSpace(os.Getenv(deadlineEnv))
	if v == "" {
		return time.Minute, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: invalid deadline %q (use a positive duration with a unit: 10s, 5m)", deadlineEnv, v)
	}
	return d, nil
}

// demoIgnoredEnv lists the SLO_CANARY_* variables that are set and would set a
// configuration key of a daemon, which the demo does not read.
func demoIgnoredEnv() []string {
	var names []string
	for _, key := range config.Keys("database", "capsules") {
		if name := config.EnvName(key); name != deadlineEnv && os.Getenv(name) != "" {
			names = append(names, name)
		}
	}
	return names
}

// demoConfig aims a canary at the demo's testbed: both stages, a short
// deadline so that a dropped marker shows up within the demo's attention span.
func demoConfig(info testbed.ServeInfo, listen string, rate float64, level string, deadline time.Duration) (*config.Config, error) {
	c := config.Defaults()
	c.Log = logConfig(level)
	c.HTTP.Listen = listen
	c.Kafka.Brokers = info.Brokers
	c.Canary.Rate = rate
	c.Canary.Deadline = deadline
	c.Canary.FreshnessBudget = min(30*time.Second, deadline)
	c.Canary.LateWindow = 5 * time.Minute
	c.Canary.Recovery.Enabled = false
	if info.DSN == "" {
		delete(c.Observers, "database") // no database: the stage does not exist
	} else {
		db := c.Observers["database"]
		db.SQL.DSN = info.DSN
		c.Observers["database"] = db
	}
	caps := c.Observers["capsules"]
	caps.Enabled = true
	caps.Deadline = 0
	c.Observers["capsules"] = caps
	demoQueries(&c, info) // queriescmd.go
	if info.Pipeline != nil {
		// Only the group the testbed runs: the defaults name SLO-Scout's,
		// which it does not, and would be reported down.
		c.ConsumerLag.Groups = []string{info.Pipeline.Config().Group}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("demo config: %w", err)
	}
	return &c, nil
}

// summaries prints a summary line (the marker service's, the query
// probes') every few seconds, and once more, marked final, when ctx is done
// (Ctrl-C): as things stand then, before the canary stops and drops the
// markers still pending (the demo runs without recovery).
func summaries[S any](ctx context.Context, out io.Writer, every time.Duration, line func() S) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(out, "%s final %v\n", time.Now().Format("15:04:05"), line())
			return
		case <-t.C:
			fmt.Fprintf(out, "%s %v\n", time.Now().Format("15:04:05"), line())
		}
	}
}
