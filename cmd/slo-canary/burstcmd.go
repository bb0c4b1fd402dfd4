package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/junit"
)

// oneShot are the flags of `burst --once` and `gate`.
type oneShot struct {
	path         string
	profile      string
	rate         string
	duration     time.Duration
	report       string
	junit        string
	readyTimeout time.Duration
	once         bool
	// The gate's --search: a capacity search instead of the burst, passing
	// when its headroom is at least minHeadroom.
	search      bool
	minHeadroom float64
	searchFlags searchFlags
}

func (o *oneShot) bind(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.path, "config", "", "path of the YAML config file")
	fs.StringVar(&o.profile, "profile", "", "burst profile under bursts.profiles (default: the only one, or SLO-Scout's promise when none is configured)")
	fs.StringVar(&o.rate, "rate", "", "override the profile with one step at this rate: N/s or N/min, such as 100000/min (needs --duration)")
	fs.DurationVar(&o.duration, "duration", 0, "length of the --rate step, such as 5m")
	fs.StringVar(&o.report, "report", "slo-canary-report.json", "JSON report path (empty: none)")
	fs.StringVar(&o.junit, "junit", "slo-canary-junit.xml", "JUnit XML report path (empty: none)")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 2*time.Minute, "time allowed for Kafka and every stage to answer before the burst")
}

func newBurstCmd() *cobra.Command {
	var o oneShot
	cmd := &cobra.Command{
		Use:   "burst --once",
		Short: "Run one burst now against the configured pipeline and judge it (exit 0 pass, 1 fail, 2 bad config)",
		Long: `Runs one burst against the pipeline the config points at: load at an exact
rate with markers spread through it, the steady markers beside it, guards that
abort when the pipeline is in trouble, and a verdict against bursts.budgets.
Progress shows on the terminal; the JSON and JUnit reports are written at the
end. Scheduled bursts are the daemon's (bursts.enabled); this is the one-shot.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.once {
				return &exitError{code: exitConfig, err: errors.New("burst: the daemon schedules bursts (bursts.enabled); pass --once to run one now")}
			}
			return runOneShot(cmd, o, false)
		},
	}
	o.bind(cmd)
	cmd.Flags().BoolVar(&o.once, "once", false, "run one burst now and exit with its verdict")
	return cmd
}

// oneShotReport is the JSON report of `burst --once` and `gate`.
type oneShotReport struct {
	Verdict  string              `json:"verdict"` // pass or fail
	Started  time.Time           `json:"started"`
	Finished time.Time           `json:"finished"`
	Burst    *burst.Report       `json:"burst"`
	Capacity *burst.SearchReport `json:"capacity,omitempty"`
	Queries  *gateQueries        `json:"queries,omitempty"`
}

// runOneShot runs a burst (and, for the gate, the query runs) against the
// configured pipeline with a canary of its own, and exits with the verdict.
func runOneShot(cmd *cobra.Command, o oneShot, gate bool) error {
	// No flags go to the config: --rate here is the burst's, not canary.rate.
	cfg, err := config.Load(o.path, nil)
	if err != nil {
		return &exitError{code: exitConfig, err: fmt.Errorf("invalid configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))}
	}
	var (
		profile string
		steps   []config.Step
		spec    config.Search
	)
	if o.search {
		profile, spec, err = o.searchFlags.spec(cfg, o.profile)
		if err == nil && !(o.minHeadroom >= 0) {
			err = fmt.Errorf("--min-headroom: must not be negative, got %v", o.minHeadroom)
		}
	} else {
		profile, steps, err = o.steps(cfg)
	}
	if err != nil {
		return &exitError{code: exitConfig, err: err}
	}
	if ob, ok := cfg.Observers[cfg.Bursts.Stage]; !ok || !ob.Enabled {
		return &exitError{code: exitConfig, err: fmt.Errorf("bursts.stage: %q is not an enabled observer (enabled: %s)", cfg.Bursts.Stage, strings.Join(cfg.EnabledObservers(), ", "))}
	}
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	logger := newLogger(cfg.Log, errw)
	logWarnings(logger, cfg)
	ctx := cmd.Context()
	rep := &oneShotReport{Started: time.Now()}

	var (
		pass   bool
		suites []junit.Suite
	)
	if o.search {
		sr, err := oneSearch(ctx, cfg, logger, out, profile, spec, o.readyTimeout)
		if err != nil {
			return &exitError{code: exitFailure, err: err}
		}
		rep.Capacity = sr
		fmt.Fprintln(out, sr.Summary())
		var why string
		pass, why = searchVerdict(sr, o.minHeadroom*cfg.Bursts.Contract())
		if !pass {
			fmt.Fprintln(out, "  "+why)
		}
		suites = []junit.Suite{searchSuite(sr, fmt.Sprintf("headroom at least %gx the contract rate", o.minHeadroom), pass, why)}
	} else {
		br, err := oneBurst(ctx, cfg, logger, out, profile, steps, o.readyTimeout)
		if err != nil {
			return &exitError{code: exitFailure, err: err}
		}
		rep.Burst = br
		if isTerminal(out) {
			fmt.Fprintln(out) // end the progress line
		}
		fmt.Fprintln(out, br.Summary())
		for _, r := range br.Reasons {
			fmt.Fprintln(out, "  "+r)
		}
		pass = br.Verdict == burst.VerdictPass
		suites = []junit.Suite{burstSuite(br)}
	}
	if gate {
		q, err := runGateQueries(ctx, cfg, logger, out)
		switch {
		case errors.Is(err, errQueriesSkipped):
			fmt.Fprintln(out, "queries: skipped:", err)
			suites = append(suites, junit.Suite{Name: "queries", Cases: []junit.Case{{Name: "query concurrency runs", Classname: "queries", Skipped: err.Error()}}})
		case err != nil && ctx.Err() != nil:
			return &exitError{code: exitFailure, err: fmt.Errorf("query runs: interrupted: %w", err)}
		case err != nil:
			// The config validated, so a run or probe it names cannot be built.
			return &exitError{code: exitConfig, err: fmt.Errorf("query runs: %w", err)}
		default:
			rep.Queries = q
			suites = append(suites, q.Suites...)
			pass = pass && q.Pass
		}
	}
	rep.Finished = time.Now()
	rep.Verdict = burst.VerdictPass
	if !pass {
		rep.Verdict = burst.VerdictFail
	}
	if err := writeReports(o, rep, suites); err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	if !pass {
		return &exitError{code: exitFailure, err: fmt.Errorf("%s: budgets breached", cmd.Name())}
	}
	fmt.Fprintf(out, "%s: PASS\n", cmd.Name())
	return nil
}

// steps resolves the burst to run: --rate/--duration, or a profile.
func (o oneShot) steps(cfg *config.Config) (string, []config.Step, error) {
	if o.rate == "" {
		if o.duration != 0 {
			return "", nil, errors.New("--duration needs --rate")
		}
		return cfg.Bursts.Profile(o.profile)
	}
	rate, err := config.ParseRate(o.rate)
	if err != nil {
		return "", nil, fmt.Errorf("--rate: %w", err)
	}
	if o.duration <= 0 {
		return "", nil, errors.New("--rate needs a positive --duration, such as --duration 5m")
	}
	steps := []config.Step{{Rate: rate, Duration: o.duration}}
	if err := cfg.Bursts.CheckSteps("--rate", steps); err != nil {
		return "", nil, err
	}
	name := o.profile
	if name == "" {
		name = "adhoc"
	}
	return name, steps, nil
}

// oneBurst runs one burst (see withRunner) with a progress line on out.
func oneBurst(ctx context.Context, cfg *config.Config, logger *slog.Logger, out io.Writer, profile string, steps []config.Step, readyTimeout time.Duration) (*burst.Report, error) {
	var rep *burst.Report
	err := withRunner(ctx, cfg, logger, readyTimeout, []string{profile}, burst.Options{Progress: progressPrinter(out)},
		func(ctx context.Context, runner *burst.Runner) error {
			fmt.Fprintf(out, "burst %s: %s, markers every %.0f events, judged at stage %s\n", profile, stepsString(steps), 1/cfg.Bursts.MarkerShare, cfg.Bursts.Stage)
			var err error
			rep, err = runner.Run(ctx, profile, steps)
			return err
		})
	if err != nil {
		return nil, err
	}
	if rep == nil {
		return nil, fmt.Errorf("burst did not run: %w", context.Cause(ctx))
	}
	return rep, nil
}

// withRunner is what burst --once, gate and capacity --once share: it starts a
// canary (markers, stages, consumer-group lag) against the configured
// pipeline, builds a burst runner from o (its service, lag watcher and
// metrics for profiles filled in), waits until the canary is ready, runs job
// and stops everything once job returns. An interruption before or during
// job is not an error here: the caller sees that job produced nothing.
func withRunner(ctx context.Context, cfg *config.Config, logger *slog.Logger, readyTimeout time.Duration, profiles []string, o burst.Options, job func(context.Context, *burst.Runner) error) error {
	reg := prometheus.NewRegistry()
	svc, err := canary.New(ctx, canary.Options{Config: cfg, Registerer: reg, Logger: logger.With("component", "canary")})
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	gl, err := groupLag(cfg, reg, logger)
	if err != nil {
		return err
	}
	if gl != nil {
		defer gl.Close()
	}
	o.Service, o.GroupLag, o.Metrics = svc, gl, burst.NewMetrics(reg, profiles)
	o.Logger = logger.With("component", "burst")
	runner, err := burst.NewRunner(o)
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(sctx)
	g.Go(func() error { return svc.Run(gctx) })
	if gl != nil {
		g.Go(func() error { return gl.Run(gctx) })
	}
	g.Go(func() error {
		defer stop()
		if err := waitReady(gctx, svc, readyTimeout); err != nil {
			return err
		}
		return job(gctx, runner)
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func waitReady(ctx context.Context, svc *canary.Service, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		err := svc.Ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pipeline was not ready within %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func stepsString(steps []config.Step) string {
	s := make([]string, len(steps))
	for i, st := range steps {
		s[i] = st.String()
	}
	return strings.Join(s, ", then ")
}

// progressPrinter shows progress on a terminal as one line rewritten in
// place; elsewhere (CI logs) as a plain line every 5 seconds.
func progressPrinter(w io.Writer) func(burst.Progress) {
	tty := isTerminal(w)
	n := 0
	return func(p burst.Progress) {
		n++
		line := fmt.Sprintf("[%s] step %d/%d %s: %.0f/s (target %.0f/s), %d events, markers %d/%d seen, p95 %s, %s",
			p.Profile, p.Step, p.Steps, p.Phase, p.Rate, p.TargetRate, p.Sent, p.MarkersSeen, p.MarkersSent,
			p.P95.Round(time.Millisecond), left(p))
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
			if p.Phase != "load" && p.MarkersSeen >= p.MarkersSent {
				fmt.Fprintln(w)
			}
			return
		}
		if n%5 == 0 {
			fmt.Fprintln(w, line)
		}
	}
}

func left(p burst.Progress) string {
	if p.Phase == "load" {
		return p.Left.Round(time.Second).String() + " left"
	}
	return "waiting for markers"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
