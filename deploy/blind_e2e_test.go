package deploy

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

// TestEndToEndBlindCanary runs the slo-canary binary three times where it
// cannot inject, each scraped by a real Prometheus with the generated rules
// (windows scaled 60x down): brokers at a closed port, a topic that does not
// exist, and a SASL password the cluster refuses (answered as Apache Kafka
// does). Each canary stays up and raises both the ingest-availability page
// and SLOCanaryBlind, with the reason counted; TestEndToEndAlerting checks
// that the healthy testbed raises neither.
func TestEndToEndBlindCanary(t *testing.T) {
	t.Parallel()
	promBin := testenv.Binary(t, "prometheus")
	bin := canaryBinary(t)
	dir := t.TempDir()

	// A closed port: nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	// A healthy cluster, asked for a topic it does not have.
	_, plain := testenv.Kafka(t, kfake.NumBrokers(1), kfake.SeedTopics(2, "raw-telemetry"))

	// A cluster with SASL that refuses the canary's password.
	sasl, saslAddrs := testenv.Kafka(t, kfake.NumBrokers(1), kfake.SeedTopics(2, "raw-telemetry"),
		kfake.EnableSASL(), kfake.Superuser("PLAIN", "canary", "the-right-one"))
	sasl.ControlKey(int16(kmsg.SASLAuthenticate), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		sasl.KeepControl()
		req := kreq.(*kmsg.SASLAuthenticateRequest)
		if parts := strings.Split(string(req.SASLAuthBytes), "\x00"); len(parts) == 3 && parts[2] == "the-right-one" {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := "Authentication failed: Invalid username or password"
		resp.ErrorMessage = &msg
		return resp, nil, true
	})
	passFile := filepath.Join(dir, "kafka-password")
	if err := os.WriteFile(passFile, []byte("a-wrong-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, reason string
		brokers      string
		topic        string
		kafka        string // extra kafka keys
	}{
		{name: "closed port", reason: "connect", brokers: closed, topic: "raw-telemetry"},
		{name: "wrong topic", reason: "unknown_topic", brokers: plain[0], topic: "raw-telemtry"},
		{name: "wrong SASL password", reason: "auth", brokers: saslAddrs[0], topic: "raw-telemetry",
			kafka: fmt.Sprintf("  sasl:\n    mechanism: PLAIN\n    username: canary\n    password_file: %q\n", passFile)},
	}
	addrs := make([]string, len(cases))
	for i, c := range cases {
		path := filepath.Join(dir, fmt.Sprintf("blind-%d.yaml", i))
		cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  dial_timeout: 1s
  request_timeout: 2s
%scanary:
  topic: %s
  rate: 2
  produce_timeout: 2s
  metadata_refresh: 1s
  recovery:
    enabled: false
observers:
  database:
    enabled: false
  ingest:
    type: kafka
    kafka:
      topic: raw-telemetry
      extract: avro
queries:
  enabled: false
`, c.brokers, c.kafka, c.topic)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		addrs[i] = runCanary(t, bin, path)
	}

	p := DefaultParams()
	prom := startPrometheusJobs(t, promBin, dir, "", map[string][]string{p.CanaryJob: addrs})
	for i, c := range cases {
		inst := fmt.Sprintf(`job=%q, instance=%q`, p.CanaryJob, addrs[i])
		prom.waitFor(t, c.name+": the ingest-availability page firing", 2*time.Minute,
			fmt.Sprintf(`ALERTS{alertname="SLOScoutIngestAvailabilityBudgetBurnFast", alertstate="firing", severity="page", %s}`, inst), nonEmpty)
		prom.waitFor(t, c.name+": SLOCanaryBlind firing", 2*time.Minute,
			fmt.Sprintf(`ALERTS{alertname="SLOCanaryBlind", alertstate="firing", %s}`, inst), nonEmpty)
		prom.waitFor(t, c.name+": failures counted with reason "+c.reason, 10*time.Second,
			fmt.Sprintf(`slo_canary_ingest_errors_total{reason=%q, %s} > 0 and on () slo_canary_ingest_up{%s} == 0`, c.reason, inst, inst), nonEmpty)
		// The canary is up (scraped) all along: it is blind, not down.
		if got := prom.query(t, fmt.Sprintf(`up{%s} == 1`, inst)); len(got) == 0 {
			t.Errorf("%s: the canary is not up", c.name)
		}
	}
}
