package queries

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/config"
)

// Report is the outcome of running concurrency runs once: for
// `slo-canary queries --once` and the gate. It is JSON-serialisable.
type Report struct {
	// Verdict is pass if every run passed, fail otherwise.
	Verdict string      `json:"verdict"`
	Runs    []RunResult `json:"runs"`
}

// Passed reports whether every run met its budgets.
func (r Report) Passed() bool { return r.Verdict == VerdictPass }

// OnceOptions configure RunOnce.
type OnceOptions struct {
	// Runs names the runs to run, in order; empty: every enabled run, by
	// name. A named run runs even if disabled.
	Runs []string
	// Registerer, if set, gets the runs' metrics (the concurrency series).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Progress, if set, is called about once a second while a run runs,
	// from a goroutine of the run's own; never after RunOnce returns.
	Progress func(RunProgress)
}

// RunOnce runs concurrency runs now, one after the other (they never
// overlap), whatever queries.enabled says, and judges each against its
// budgets. The error is for what kept a run from running: a run or probe
// that is not configured, a probe that cannot be built, ctx cancelled; a
// breached budget is a fail verdict in the Report, not an error.
func RunOnce(ctx context.Context, cfg *config.Config, opts OnceOptions) (Report, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	q := cfg.Queries
	names := opts.Runs
	if len(names) == 0 {
		for _, n := range slices.Sorted(maps.Keys(q.Concurrency)) {
			if q.Concurrency[n].Enabled {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return Report{}, fmt.Errorf("no enabled run under queries.concurrency")
		}
	}
	for _, n := range names {
		if _, ok := q.Concurrency[n]; !ok {
			return Report{}, fmt.Errorf("%w %q under queries.concurrency (configured: %s)", errNoRun, n,
				strings.Join(slices.Sorted(maps.Keys(q.Concurrency)), ", "))
		}
	}
	var m *Metrics
	if opts.Registerer != nil {
		m = NewMetrics(opts.Registerer, nil, names)
	}
	rep := Report{Verdict: VerdictPass}
	for i, n := range names {
		var progress func(RunProgress)
		if opts.Progress != nil {
			progress = func(p RunProgress) {
				p.Index, p.Runs = i+1, len(names)
				opts.Progress(p)
			}
		}
		r, err := runOne(ctx, q, n, opts.Logger, nil, progress)
		if err != nil {
			return rep, err
		}
		if m != nil {
			m.exportRun(r)
		}
		rep.Runs = append(rep.Runs, r)
		if r.Verdict != VerdictPass {
			rep.Verdict = VerdictFail
		}
	}
	return rep, nil
}

// String is the run as one line, for humans.
func (r RunResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s  probe %s, %d clients, %g/s for %s, %d requests  p50 %s p95 %s p99 %s max %s  success %.2f%%",
		r.Run, strings.ToUpper(r.Verdict), r.Probe, r.Clients, r.Rate, r.Duration, r.Requests,
		secs(r.Latency.P50), secs(r.Latency.P95), secs(r.Latency.P99), secs(r.Latency.Max), 100*r.SuccessRatio)
	var failed []string
	for _, o := range slices.Sorted(maps.Keys(r.Outcomes)) {
		if n := r.Outcomes[o]; n > 0 && o != "success" {
			failed = append(failed, fmt.Sprintf("%s %d", o, n))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(failed, ", "))
	}
	if len(r.Breaches) > 0 {
		fmt.Fprintf(&b, "  breached: %s", strings.Join(r.Breaches, "; "))
	}
	return b.String()
}

// secs formats seconds as a rounded duration: 1.234s, 87ms.
func secs(s float64) string {
	switch {
	case s >= 10:
		return fmt.Sprintf("%.1fs", s)
	case s >= 1:
		return fmt.Sprintf("%.2fs", s)
	default:
		return fmt.Sprintf("%.1fms", s*1000)
	}
}

// Summary is one line for the demo: each probe's recent p95 and success
// share over the evidence window, and the evidence overhead.
func (s *Service) Summary() string {
	if len(s.probes) == 0 {
		return "queries: off"
	}
	now := time.Now()
	var parts []string
	for _, c := range s.probes {
		ok, total := c.window.since(now.Add(-s.cfg.Evidence.Window))
		if total == 0 {
			parts = append(parts, c.name+" -")
			continue
		}
		p := percentiles(ok)
		parts = append(parts, fmt.Sprintf("%s p95 %s ok %d/%d", c.name, secs(p.P95), len(ok), total))
	}
	line := "queries: " + strings.Join(parts, ", ")
	if pair := s.evidencePair(); pair != nil {
		if o, ok := s.overhead(pair[0], pair[1], now); ok {
			verdict := "within"
			if !o.WithinBudget {
				verdict = "OVER"
			}
			line += fmt.Sprintf("; evidence +%s p95 (%s %s)", secs(o.P95), verdict, secs(o.Budget))
		}
	}
	return line
}
