package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/junit"
	"github.com/slo-scout/slo-canary/queries"
)

// gateQueries is the query half of the gate's report.
type gateQueries struct {
	Pass   bool           `json:"pass"`
	Report queries.Report `json:"report"`
	Suites []junit.Suite  `json:"-"`
}

// errQueriesSkipped: the gate has no query run to run (queries.enabled is
// false, or no run under queries.concurrency is enabled).
var errQueriesSkipped = errors.New("no query concurrency run to run")

// runGateQueries runs every enabled query concurrency run once (the query
// probes' queries.RunOnce: open-loop, one after the other) and judges each
// against its budgets.
func runGateQueries(ctx context.Context, cfg *config.Config, logger *slog.Logger, out io.Writer) (*gateQueries, error) {
	if !cfg.Queries.Enabled {
		return nil, fmt.Errorf("%w: queries.enabled is false", errQueriesSkipped)
	}
	enabled := 0
	for _, n := range slices.Sorted(maps.Keys(cfg.Queries.Concurrency)) {
		if cfg.Queries.Concurrency[n].Enabled {
			enabled++
		}
	}
	if enabled == 0 {
		return nil, fmt.Errorf("%w: none is enabled under queries.concurrency", errQueriesSkipped)
	}
	fmt.Fprintf(out, "queries: %d concurrency runs\n", enabled)
	progress, endProgress := queryProgress(out) // queryprogress.go
	rep, err := queries.RunOnce(ctx, cfg, queries.OnceOptions{Logger: logger.With("component", "queries"), Progress: progress})
	endProgress()
	if err != nil {
		return nil, err
	}
	q := &gateQueries{Pass: rep.Passed(), Report: rep}
	s := junit.Suite{Name: "queries"}
	for _, r := range rep.Runs {
		fmt.Fprintln(out, r)
		c := junit.Case{Name: r.Run, Classname: "queries." + r.Run, Time: r.Elapsed, Detail: r.String()}
		if r.Verdict != queries.VerdictPass {
			c.Failure = strings.Join(r.Breaches, "; ")
			if c.Failure == "" {
				c.Failure = r.Verdict
			}
		}
		s.Cases = append(s.Cases, c)
		s.Time += r.Elapsed
	}
	q.Suites = []junit.Suite{s}
	return q, nil
}
