package probes_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/probes"
)

// TestKafkaNoGoroutineLeak: an observer that consumed a marker leaves no
// goroutine of its own or of its Kafka client behind after Run and Close.
func TestKafkaNoGoroutineLeak(t *testing.T) {
	cl := newCluster(t)
	// Taken once the cluster is up: its goroutines are not the observer's.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	k, err := probes.NewKafka("x", config.KafkaObserver{Topic: topic, Extract: "header", Field: "id"},
		probes.Deps{KafkaOpts: []kgo.Opt{kgo.SeedBrokers(cl.ListenAddrs()...)}})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	id := uuid.New()
	produce(t, cl, headerRec("id", []byte(id.String())))
	collectUntil(t, k, id)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
