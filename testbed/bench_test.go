package testbed_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// BenchmarkPipelineThroughput measures how fast the pipeline drains a backlog
// of b.N events into PostgreSQL and the capsule topic (10 partitions, both
// sinks, no faults). The backlog is produced before Run starts, so the figure
// is the pipeline's, not the producer's. SLO-Scout's Enterprise tier needs
// 1,667 events/s sustained and 3,334/s in bursts.
//
//	go test -run '^$' -bench PipelineThroughput -benchtime 50000x ./testbed/
func BenchmarkPipelineThroughput(b *testing.B) {
	dsn := testenv.PostgresDSN(b)
	const parts = 10
	p, err := testbed.NewPipeline(context.Background(), testbed.PipelineConfig{Partitions: parts, PostgresDSN: dsn})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()

	events := newEvents(b.N, parts)
	recs := make([]*kgo.Record, len(events))
	for i := range events {
		v, err := canary.Encode(canary.EncodingAvro, &events[i])
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = &kgo.Record{Value: v, Partition: int32(i) % parts}
	}
	produceRecords(b, p.Brokers(), recs)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- p.Run(ctx) }()
	n := int64(b.N)
	testenv.WaitFor(b, 10*time.Minute, "backlog drained", func() bool {
		s := p.Stats()
		return s.DBRows == n && s.Forwarded == n
	})
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
