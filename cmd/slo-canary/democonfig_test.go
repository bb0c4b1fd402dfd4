package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/testbed"
)

// TestDemoConfigGroups: the demo's canary watches only the consumer group
// its testbed runs; one it does not run would be reported down
// (SLOScoutConsumerGroupDown) on a healthy pipeline.
func TestDemoConfigGroups(t *testing.T) {
	t.Parallel()
	p, err := testbed.NewPipeline(context.Background(), testbed.PipelineConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := demoConfig(testbed.ServeInfo{Brokers: p.Brokers(), Pipeline: p}, "127.0.0.1:0", 1, "warn", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{p.Config().Group}; !c.ConsumerLag.Enabled || !slices.Equal(c.ConsumerLag.Groups, want) {
		t.Errorf("consumer_lag %+v, want groups %q", c.ConsumerLag, want)
	}
	if w := c.Warnings(); len(w) > 0 {
		t.Errorf("warnings for the demo's config: %q", w)
	}
}
