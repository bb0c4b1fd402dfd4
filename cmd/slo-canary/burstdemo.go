package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/config"
)

// demoBurstFlags let the demo run a burst on demand, so a newcomer sees one
// without any setup: slo-canary demo --burst 100000/min --burst-duration 30s.
type demoBurstFlags struct {
	rate     string
	duration time.Duration
	after    time.Duration
	steps    []config.Step
}

func (f *demoBurstFlags) bind(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.rate, "burst", "", "run one burst at this rate once the canary is ready: N/s or N/min, such as 100000/min")
	fs.DurationVar(&f.duration, "burst-duration", 30*time.Second, "length of the --burst")
	fs.DurationVar(&f.after, "burst-after", 10*time.Second, "steady markers to show before the --burst starts")
}

func (f *demoBurstFlags) validate() error {
	if f.rate == "" {
		return nil
	}
	rate, err := config.ParseRate(f.rate)
	if err != nil {
		return fmt.Errorf("--burst: %w", err)
	}
	if f.duration <= 0 {
		return errors.New("--burst-duration must be positive")
	}
	f.steps = []config.Step{{Rate: rate, Duration: f.duration}}
	b := config.BurstsDefaults()
	return b.CheckSteps("--burst", f.steps)
}

// run runs the demo's burst on its canary and prints progress and verdict.
func (f *demoBurstFlags) run(ctx context.Context, out io.Writer, cfg *config.Config, svc *canary.Service, logger *slog.Logger) error {
	if f.steps == nil {
		return nil
	}
	c := *cfg
	if o, ok := c.Observers["database"]; !ok || !o.Enabled {
		c.Bursts.Stage = "capsules"
	}
	reg := prometheus.NewRegistry()
	gl, err := groupLag(&c, reg, logger)
	if err != nil {
		return err
	}
	if gl != nil {
		defer gl.Close()
	}
	runner, err := burst.NewRunner(burst.Options{
		Service: svc, Config: &c, GroupLag: gl, Metrics: burst.NewMetrics(reg, []string{"demo"}),
		Logger: logger.With("component", "burst"), Progress: progressPrinter(out),
	})
	if err != nil {
		return err
	}
	if err := waitReady(ctx, svc, time.Minute); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(f.after):
	}
	fmt.Fprintf(out, "burst:    %s, judged at stage %s\n", stepsString(f.steps), c.Bursts.Stage)
	rep, err := runner.Run(ctx, "demo", f.steps)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if isTerminal(out) {
		fmt.Fprintln(out) // end the progress line
	}
	fmt.Fprintln(out, rep.Summary())
	for _, r := range rep.Reasons {
		fmt.Fprintln(out, "  "+r)
	}
	return nil
}
