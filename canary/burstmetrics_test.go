package canary

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

// burstRegistry holds the burst and consumer-group metrics as a daemon
// exports them, with one finished burst and one lag reading.
func burstRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := NewBurstMetrics(reg, []string{"nightly"})
	rate := 1666.0
	m.record(&BurstReport{Profile: "nightly", Verdict: VerdictAborted, Abort: &BurstAbort{Reason: "marker_lag"},
		Processing: Processing{EventsPerSecond: &rate}})
	gl, err := NewGroupLag(GroupLagConfig{KafkaOpts: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, Groups: []string{"fingerprinting-job"}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gl.Close)
	gl.publish(GroupLagSnapshot{Groups: []GroupLagInfo{{Group: "fingerprinting-job", Status: GroupOK, State: "Stable",
		Topics: []TopicLag{{Topic: "raw-telemetry", Records: 5, Seconds: 2, SecondsKnown: true, Partitions: []PartitionLag{{Partition: 0, Lag: 5}}}}}}})
	return reg
}

// TestBurstMetricNamesGolden keeps the burst and consumer-group metric names
// under review: alert rules and the dashboard use them.
func TestBurstMetricNamesGolden(t *testing.T) {
	testenv.MetricNamesGolden(t, burstRegistry(t), "testdata/burst_metrics.golden", *updateGolden)
}

func TestBurstPromtoolCheckMetrics(t *testing.T) {
	testenv.PromtoolCheckMetrics(t, burstRegistry(t), nil)
}
