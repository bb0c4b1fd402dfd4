package grouplag

import (
	"flag"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// lagRegistry holds the consumer-group metrics as a daemon exports them,
// with one lag reading.
func lagRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	gl, err := New(Config{KafkaOpts: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, Groups: []string{"fingerprinting-job"}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gl.Close)
	gl.publish(Snapshot{Groups: []Group{{Group: "fingerprinting-job", Status: StatusOK, State: "Stable",
		Topics: []Topic{{Topic: "raw-telemetry", Records: 5, Seconds: 2, SecondsKnown: true, Partitions: []Partition{{Partition: 0, Lag: 5}}}}}}})
	return reg
}

// TestMetricNamesGolden keeps the consumer-group metric names under review:
// alert rules and the dashboard use them.
func TestMetricNamesGolden(t *testing.T) {
	testenv.MetricNamesGolden(t, lagRegistry(t), "testdata/grouplag_metrics.golden", *updateGolden)
}

func TestPromtoolCheckMetrics(t *testing.T) {
	testenv.PromtoolCheckMetrics(t, lagRegistry(t), nil)
}
