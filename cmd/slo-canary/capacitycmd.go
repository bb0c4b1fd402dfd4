package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/junit"
)

// searchFlags override a profile's search, or make one when no profile has
// a search.
type searchFlags struct {
	start, max, minRate string
	stepDuration        time.Duration
	precision           float64
	timeout             time.Duration
}

func (f *searchFlags) bind(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.start, "start", "", "first step's rate, N/s or N/min (default: the profile's, else max/16)")
	fs.StringVar(&f.max, "max", "", "highest rate to try, N/s or N/min (default: the profile's, else bursts.max_rate)")
	fs.DurationVar(&f.stepDuration, "step-duration", 0, "how long each step's load is held (default: the profile's, else 1m)")
	fs.Float64Var(&f.precision, "precision", 0, "stop bisecting when the last pass is within this fraction of the first fail (default: the profile's, else 0.1)")
	fs.DurationVar(&f.timeout, "timeout", 0, "time cap of the whole search (default: the profile's, else 1h)")
}

// spec resolves the search: the named profile's (or the only one with a
// search), else the defaults, with the flags over it; checked against the caps.
func (f searchFlags) spec(cfg *config.Config, profile string) (string, config.Search, error) {
	bc := cfg.Bursts
	name, s, err := bc.SearchProfile(profile)
	if err != nil {
		if profile != "" || hasSearch(bc) {
			return "", s, err
		}
		name = "adhoc"
		s = config.Search{Max: bc.MaxRate, StepDuration: config.DefaultSearchStepDuration, Precision: config.DefaultSearchPrecision,
			Timeout: config.DefaultSearchTimeout, BacklogTolerance: config.DefaultSearchBacklogTolerance,
			LagGrowth: config.DefaultSearchLagGrowth}
		s.Start = s.Max / 16
	}
	if f.max != "" {
		if s.Max, err = config.ParseRate(f.max); err != nil {
			return "", s, fmt.Errorf("--max: %w", err)
		}
		if f.start == "" && s.Start > s.Max {
			s.Start = s.Max / 16
		}
	}
	if f.start != "" {
		if s.Start, err = config.ParseRate(f.start); err != nil {
			return "", s, fmt.Errorf("--start: %w", err)
		}
	}
	if f.stepDuration != 0 {
		s.StepDuration = f.stepDuration
	}
	if f.precision != 0 {
		s.Precision = f.precision
	}
	if f.timeout != 0 {
		s.Timeout = f.timeout
	}
	return name, s, bc.CheckSearch("capacity "+name, s)
}

func hasSearch(bc config.Bursts) bool {
	for _, p := range bc.Profiles {
		if p.Search.Enabled() {
			return true
		}
	}
	return false
}

func newCapacityCmd() *cobra.Command {
	var (
		o    oneShot
		sf   searchFlags
		once bool
	)
	cmd := &cobra.Command{
		Use:   "capacity --once",
		Short: "Search now for the highest rate the pipeline sustains (exit 0 at or above --min-rate, 1 below it or aborted, 2 bad config)",
		Long: `Runs a capacity search against the pipeline the config points at: steps of
--step-duration at one rate each, doubling from --start while they pass, then
bisecting between the last pass and the first fail to --precision, never
above --max nor bursts.max_rate. A step passes when the burst budgets hold
(marker lag, loss, achieved rate) and the watched consumer groups keep up
(their lag does not grow, the sink's rate matches the produce rate). The
guards run throughout and abort the search, with no figure. Scheduled
searches are the daemon's (a profile with a search, bursts.enabled).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !once {
				return &exitError{code: exitConfig, err: errors.New("capacity: the daemon schedules searches (bursts.enabled); pass --once to run one now")}
			}
			return runCapacity(cmd, o, sf)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.path, "config", "", "path of the YAML config file")
	fs.StringVar(&o.profile, "profile", "", "burst profile with a search (default: the only one; none: a search from the defaults)")
	fs.StringVar(&o.report, "report", "slo-canary-capacity.json", "JSON report path (empty: none)")
	fs.StringVar(&o.junit, "junit", "slo-canary-capacity-junit.xml", "JUnit XML report path (empty: none)")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 2*time.Minute, "time allowed for Kafka and every stage to answer before the search")
	fs.StringVar(&sf.minRate, "min-rate", "", "exit 1 unless the sustainable rate is at least this, N/s or N/min (default: no minimum)")
	fs.BoolVar(&once, "once", false, "run one search now and exit with its verdict")
	sf.bind(cmd)
	return cmd
}

func runCapacity(cmd *cobra.Command, o oneShot, sf searchFlags) error {
	cfg, err := config.Load(o.path, nil)
	if err != nil {
		return &exitError{code: exitConfig, err: fmt.Errorf("invalid configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))}
	}
	profile, spec, err := sf.spec(cfg, o.profile)
	if err != nil {
		return &exitError{code: exitConfig, err: err}
	}
	var minRate float64
	if sf.minRate != "" {
		if minRate, err = config.ParseRate(sf.minRate); err != nil {
			return &exitError{code: exitConfig, err: fmt.Errorf("--min-rate: %w", err)}
		}
	}
	if ob, ok := cfg.Observers[cfg.Bursts.Stage]; !ok || !ob.Enabled {
		return &exitError{code: exitConfig, err: fmt.Errorf("bursts.stage: %q is not an enabled observer (enabled: %s)", cfg.Bursts.Stage, strings.Join(cfg.EnabledObservers(), ", "))}
	}
	out := cmd.OutOrStdout()
	logger := newLogger(cfg.Log, cmd.ErrOrStderr())
	logWarnings(logger, cfg)
	rep, err := oneSearch(cmd.Context(), cfg, logger, out, profile, spec, o.readyTimeout)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	fmt.Fprintln(out, rep.Summary())
	pass, why := searchVerdict(rep, minRate)
	if !pass {
		fmt.Fprintln(out, "  "+why)
	}
	suite := searchSuite(rep, "sustainable rate at least --min-rate", pass, why)
	if o.report != "" {
		if err := rep.WriteJSON(o.report); err != nil {
			return &exitError{code: exitFailure, err: err}
		}
	}
	if err := writeReports(oneShot{junit: o.junit}, nil, []junit.Suite{suite}); err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	if !pass {
		return &exitError{code: exitFailure, err: fmt.Errorf("capacity: %s", why)}
	}
	fmt.Fprintln(out, "capacity: PASS")
	return nil
}

// searchVerdict: a search passes when it was not aborted and its sustainable
// rate is at least minRate.
func searchVerdict(rep *burst.SearchReport, minRate float64) (bool, string) {
	switch {
	case rep.Aborted:
		return false, "aborted: " + rep.AbortReason
	case rep.Sustainable == nil && minRate > 0:
		return false, fmt.Sprintf("no rate sustained, below the minimum %.0f/s", minRate)
	case rep.Sustainable != nil && *rep.Sustainable < minRate:
		return false, fmt.Sprintf("sustainable rate %.0f/s is below the minimum %.0f/s", *rep.Sustainable, minRate)
	}
	return true, ""
}

// searchSuite is a search as JUnit: not aborted, the verdict, and one case
// per step (a failing step is how a search finds its limit, not a failure).
func searchSuite(rep *burst.SearchReport, verdictName string, pass bool, why string) junit.Suite {
	s := junit.Suite{Name: "capacity " + rep.Profile, Time: rep.Finished.Sub(rep.Started).Seconds()}
	class := "capacity." + rep.Profile
	c := junit.Case{Name: "not aborted", Classname: class}
	if rep.Aborted {
		c.Failure = "aborted: " + rep.AbortReason
	}
	s.Cases = append(s.Cases, c)
	v := junit.Case{Name: verdictName, Classname: class, Detail: rep.Summary()}
	if !pass && !rep.Aborted {
		v.Failure = why
	}
	s.Cases = append(s.Cases, v)
	for i, st := range rep.Steps {
		d := fmt.Sprintf("target %.0f/s, achieved %.0f/s, lag p95 %.3fs, passed %v", st.TargetRate, st.AchievedRate, st.LagP95, st.Passed)
		if !st.Passed {
			d += ", failed on " + st.FailedCheck + ": " + strings.Join(st.Reasons, "; ")
		}
		s.Cases = append(s.Cases, junit.Case{Name: fmt.Sprintf("step %d at %.0f/s", i+1, st.TargetRate), Classname: class, Detail: d})
	}
	return s
}

// oneSearch runs one capacity search (see withRunner), one line per step on out.
func oneSearch(ctx context.Context, cfg *config.Config, logger *slog.Logger, out io.Writer, profile string, spec config.Search, readyTimeout time.Duration) (*burst.SearchReport, error) {
	if !cfg.ConsumerLag.Enabled {
		fmt.Fprintln(out, "capacity: consumer_lag is disabled: steps are judged without backlog and sink-rate checks")
	}
	n := 0
	o := burst.Options{StepDone: func(s burst.SearchStep) {
		n++
		verdict := "pass"
		if !s.Passed {
			verdict = "FAIL (" + s.FailedCheck + ")"
		}
		fmt.Fprintf(out, "[%s] step %d: %.0f/s for %s: achieved %.0f/s, lag p95 %.3fs, %s\n",
			profile, n, s.TargetRate, spec.StepDuration, s.AchievedRate, s.LagP95, verdict)
	}}
	var rep *burst.SearchReport
	err := withRunner(ctx, cfg, logger, readyTimeout, nil, o, func(ctx context.Context, runner *burst.Runner) error {
		fmt.Fprintf(out, "capacity %s: from %s up to %s, steps of %s, precision %.0f%%, time cap %s, judged at stage %s\n",
			profile, config.FormatRate(spec.Start), config.FormatRate(min(spec.Max, cfg.Bursts.MaxRate)), spec.StepDuration, 100*spec.Precision, spec.Timeout, cfg.Bursts.Stage)
		var err error
		rep, err = runner.Search(ctx, profile, spec)
		return err
	})
	if err != nil {
		return nil, err
	}
	if rep == nil {
		return nil, fmt.Errorf("search did not run: %w", context.Cause(ctx))
	}
	return rep, nil
}
