package testbed_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/slo-scout/slo-canary/testbed"
)

// TestPipelineGroupCommittedAtStart: a new pipeline's consumer group has
// committed offsets on every ingest partition before it runs or sees an
// event, as a stream job that has been running has, so a canary watching it
// finds it up from its first look; nothing is counted as lag.
func TestPipelineGroupCommittedAtStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, err := testbed.NewPipeline(ctx, testbed.PipelineConfig{Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	group := p.Config().Group
	lags, err := kadm.NewClient(newClient(t, p.Brokers())).Lag(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	l := lags[group]
	if err := l.Error(); err != nil {
		t.Fatalf("group %s: %v", group, err)
	}
	parts := l.Lag[p.Config().IngestTopic]
	if len(parts) != 3 || l.Lag.Total() != 0 {
		t.Fatalf("group %s (state %s): lag %+v, want 3 partitions at 0", group, l.State, l.Lag)
	}
	for part, ml := range parts {
		if ml.Commit.At != 0 {
			t.Errorf("partition %d: committed %d, want 0", part, ml.Commit.At)
		}
	}
}
