package burst_test

import (
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
)

func kafkaOpts(t *testing.T, cfg *config.Config) []kgo.Opt {
	t.Helper()
	opts, err := canary.KafkaOpts(cfg.Kafka, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

func steps(t *testing.T, specs ...string) []config.Step {
	t.Helper()
	s, err := config.ParseSteps(specs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
