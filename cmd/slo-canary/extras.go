package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/sched"
)

// daemonDeps is what the daemon's optional parts are built from.
type daemonDeps struct {
	cfg       *config.Config
	reg       prometheus.Registerer
	logger    *slog.Logger
	scheduler *sched.Scheduler
	service   *canary.Service
}

// part is one long-running piece of the daemon, owned by its errgroup.
type part struct {
	name  string
	run   func(ctx context.Context) error
	ready func() error // nil: always ready
}

// extraParts builds the daemon's parts beyond the marker service: query
// probes, bursts, consumer-group lag. Each is added here explicitly.
func extraParts(ctx context.Context, d daemonDeps) ([]part, error) {
	var parts []part
	bp, err := burstParts(d) // consumer-group lag and scheduled bursts: bursts.go
	if err != nil {
		return nil, err
	}
	parts = append(parts, bp...)
	qp, err := queryParts(ctx, d) // query probes and concurrency runs: queriescmd.go
	if err != nil {
		return nil, err
	}
	parts = append(parts, qp...)
	return parts, nil
}
