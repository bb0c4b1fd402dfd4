package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/coord"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/sched"
)

// coordination joins the replicas' coordination group when it is enabled,
// and makes the scheduler run its jobs on the group's leader only. It
// returns the part that stays in the group and the coordinator, or nils.
func coordination(cfg *config.Config, reg prometheus.Registerer, logger *slog.Logger, sc *sched.Scheduler) (*part, *coord.Coordinator, error) {
	if !cfg.Coordination.Enabled {
		return nil, nil, nil
	}
	kopts, err := canary.KafkaOpts(cfg.Kafka, logger)
	if err != nil {
		return nil, nil, err
	}
	co, err := coord.New(coord.Config{
		KafkaOpts: kopts, Group: cfg.Coordination.Group, Topic: cfg.Coordination.Topic, Instance: cfg.Canary.Instance,
		SessionTimeout: cfg.Coordination.SessionTimeout, Timeout: cfg.Kafka.RequestTimeout,
		Registerer: reg, Logger: logger.With("component", "coordination"),
		// A shutdown waits for the leave no longer than for the markers'
		// flush (canary.shutdown_timeout), and never past the session
		// timeout, after which the broker has dropped this member anyway.
		LeaveTimeout: min(cfg.Canary.ShutdownTimeout, cfg.Coordination.SessionTimeout),
	})
	if err != nil {
		return nil, nil, err
	}
	sc.LeaderOnly(co)
	return &part{name: "coordination", run: co.Run}, co, nil
}
