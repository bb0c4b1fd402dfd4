package canary

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
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
	mfs, err := burstRegistry(t).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName()+" "+strings.ToLower(mf.GetType().String()))
		if mf.GetHelp() == "" || !strings.HasPrefix(mf.GetName(), "slo_canary_") || len(mf.GetMetric()) == 0 {
			t.Errorf("%s: needs HELP, the prefix and series at start", mf.GetName())
		}
	}
	slices.Sort(names)
	got := strings.Join(names, "\n") + "\n"
	const golden = "testdata/burst_metrics.golden"
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./canary -run BurstMetricNamesGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("metric names changed; review and run with -update.\ngot:\n%s\nwant:\n%s", got, want)
	}
}

func TestBurstPromtoolCheckMetrics(t *testing.T) {
	promtool := testenv.Binary(t, "promtool")
	mfs, err := burstRegistry(t).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
