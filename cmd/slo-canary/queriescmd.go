package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/queries"
	"github.com/slo-scout/slo-canary/testbed"
)

func newQueriesCmd() *cobra.Command {
	var (
		path    string
		once    bool
		runs    []string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "queries --once",
		Short: "Run the query concurrency runs now and judge them (exit 0 pass, 1 a budget breached, 2 bad config)",
		Long: `Runs the configured concurrency runs (queries.concurrency) now, one after the
other, open-loop: requests are due on a fixed schedule and each latency counts
from when it was due. Prints p50/p95/p99/max, the success ratio and the verdict
of each run. The daemon (slo-canary run) schedules the same runs by cron.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !once {
				return &exitError{code: exitConfig, err: errors.New("queries: give --once (the daemon, slo-canary run, schedules the runs)")}
			}
			cfg, err := loadConfig(path, cmd)
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log, cmd.ErrOrStderr())
			logWarnings(logger, cfg)
			out := cmd.OutOrStdout()
			pw := out
			if jsonOut {
				pw = cmd.ErrOrStderr() // stdout is the JSON report's
			}
			progress, endProgress := queryProgress(pw) // queryprogress.go
			rep, err := queries.RunOnce(cmd.Context(), cfg, queries.OnceOptions{Runs: runs, Logger: logger.With("component", "queries"), Progress: progress})
			endProgress()
			switch {
			case err != nil && cmd.Context().Err() != nil:
				return &exitError{code: exitFailure, err: fmt.Errorf("queries: interrupted: %w", err)}
			case err != nil:
				// Validation passed, so this is a run or probe the
				// configuration does not define or cannot build.
				return &exitError{code: exitConfig, err: fmt.Errorf("queries: %w", err)}
			}
			if jsonOut {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return &exitError{code: exitFailure, err: err}
				}
			} else {
				for _, r := range rep.Runs {
					fmt.Fprintln(out, r)
				}
			}
			if !rep.Passed() {
				var failed []string
				for _, r := range rep.Runs {
					if r.Verdict != queries.VerdictPass {
						failed = append(failed, r.Run)
					}
				}
				return &exitError{code: exitFailure, err: fmt.Errorf("queries: budget breached by %s", strings.Join(failed, ", "))}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&path, "config", "", "path of the YAML config file")
	fs.BoolVar(&once, "once", false, "run the concurrency runs now, then exit")
	fs.StringSliceVar(&runs, "run", nil, "run only these runs (repeatable or comma-separated; default: every enabled run)")
	fs.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	config.BindLogFlags(fs) // the runs serve nothing and send no marker
	return cmd
}

// demoQueries aims the query probes at the demo's reference API.
func demoQueries(c *config.Config, info testbed.ServeInfo) {
	if info.API == nil {
		c.Queries.Enabled = false
		return
	}
	c.Queries.BaseURL = info.APIURL
	for name, p := range c.Queries.Probes {
		switch name {
		case "sli", "sli_evidence":
			p.Rotate.JourneyIDs = info.API.JourneyIDs()
		case "journeys":
			p.Rotate.Services = info.API.Services()
		}
		p.Interval = 2 * time.Second // livelier than a daemon's 10 s
		c.Queries.Probes[name] = p
	}
	c.Queries.Evidence.Window = 5 * time.Minute
}
