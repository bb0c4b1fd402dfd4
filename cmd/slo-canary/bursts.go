package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/slo-scout/slo-canary/canary/burst"
)

// burstParts wires consumer-group lag (a part of its own) and scheduled
// bursts (jobs of the scheduler, group "burst") into the daemon.
func burstParts(d daemonDeps) ([]part, error) {
	var parts []part
	gl, err := groupLag(d.cfg, d.reg, d.logger)
	if err != nil {
		return nil, fmt.Errorf("consumer_lag: %w", err)
	}
	if gl != nil {
		parts = append(parts, part{name: "consumer_lag", run: func(ctx context.Context) error {
			defer gl.Close()
			return gl.Run(ctx)
		}})
	}
	if !d.cfg.Bursts.Enabled {
		return parts, nil
	}
	profiles := slices.Sorted(maps.Keys(d.cfg.Bursts.Profiles))
	logger := d.logger.With("component", "burst")
	runner, err := burst.NewRunner(burst.Options{
		Service: d.service, GroupLag: gl, Metrics: burst.NewMetrics(d.reg, profiles),
		Logger: logger, Progress: progressLogger(logger),
	})
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
	logger.Info("bursts scheduled", "profiles", profiles, "report_dir", d.cfg.Bursts.ReportDir)
	return parts, nil
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
