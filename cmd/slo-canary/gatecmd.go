package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/internal/junit"
)

func newGateCmd() *cobra.Command {
	var o oneShot
	cmd := &cobra.Command{
		Use:   "gate",
		Short: "One verdict for CI: a burst, then the query concurrency runs (exit 0 pass, 1 a budget breached, 2 bad config)",
		Long: `Runs against the configured pipeline, once, the checks the daemon runs on a
schedule: a burst judged against bursts.budgets (lag percentiles, loss,
achieved rate), then the query concurrency runs judged against their budgets.
Progress shows on the terminal (plain lines when not a terminal); a JSON
report and a JUnit XML report are written; the exit code is the verdict. It
replaces SLO-Scout's pytest performance job:

  slo-canary gate --config canary.yaml --rate 100000/min --duration 5m \
    --report out.json --junit out.xml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runOneShot(cmd, o, true) },
	}
	o.bind(cmd)
	fs := cmd.Flags()
	fs.BoolVar(&o.search, "search", false, "run a capacity search instead of the burst (see slo-canary capacity): fail unless its headroom, the sustainable rate over bursts.contract_rate, is at least --min-headroom")
	fs.Float64Var(&o.minHeadroom, "min-headroom", 2, "with --search: the least sustainable rate, as a multiple of bursts.contract_rate (the contract promises bursts at 2x)")
	o.searchFlags.bind(cmd)
	return cmd
}

// burstSuite turns a burst's checks into JUnit test cases.
func burstSuite(r *burst.Report) junit.Suite {
	s := junit.Suite{Name: "burst " + r.Profile, Time: r.Finished.Sub(r.Started).Seconds()}
	class := "burst." + r.Profile
	if r.Abort != nil {
		s.Cases = append(s.Cases, junit.Case{Name: "not aborted", Classname: class, Failure: "aborted: " + r.Abort.Detail})
	}
	for _, c := range r.Checks {
		jc := junit.Case{Name: c.Name, Classname: class, Detail: c.String()}
		if !c.Pass {
			jc.Failure = c.String()
		}
		s.Cases = append(s.Cases, jc)
	}
	return s
}

// writeReports writes the JSON and JUnit reports the flags ask for.
func writeReports(o oneShot, rep *oneShotReport, suites []junit.Suite) error {
	if o.report != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := writeFile(o.report, append(data, '\n')); err != nil {
			return err
		}
	}
	if o.junit != "" {
		if err := os.MkdirAll(filepath.Dir(o.junit), 0o755); err != nil {
			return fmt.Errorf("junit report: %w", err)
		}
		f, err := os.Create(o.junit)
		if err != nil {
			return fmt.Errorf("junit report: %w", err)
		}
		if err := junit.Write(f, suites); err != nil {
			f.Close()
			return fmt.Errorf("junit report %s: %w", o.junit, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("junit report %s: %w", o.junit, err)
		}
	}
	return nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
