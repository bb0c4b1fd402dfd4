package canary_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
)

// blindRun is a marker service started for an ingest test.
type blindRun struct {
	svc  *canary.Service
	reg  *prometheus.Registry
	logs *syncBuffer
	stop func()
}

// startIngestCanary runs the marker service against brokers, sending to
// topic, with one Kafka stage that reads observed (which may differ from
// topic, so that the stage answers while injection fails).
func startIngestCanary(t *testing.T, brokers, topic, observed, extraKafka string) *blindRun {
	t.Helper()
	y := fmt.Sprintf(`kafka:
  brokers: [%q]
  dial_timeout: 1s
  request_timeout: 2s
%scanary:
  topic: %s
  rate: 5
  produce_timeout: 2s
  metadata_refresh: 500ms
  deadline: 10s
  freshness_budget: 5s
  late_window: 10s
  shutdown_timeout: 3s
  recovery:
    enabled: false
observers:
  database:
    enabled: false
  ingest:
    type: kafka
    poll_interval: 100ms
    poll_timeout: 2s
    kafka:
      topic: %s
      extract: avro
`, brokers, extraKafka, topic, observed)
	path := filepath.Join(t.TempDir(), "canary.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("config.Load:\n%s\n%v", y, err)
	}
	r := &blindRun{reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	logger := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r.svc, err = canary.New(context.Background(), canary.Options{Config: cfg, Registerer: r.reg, Logger: logger})
	if err != nil {
		t.Fatalf("canary.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.svc.Run(ctx) }()
	stopped := false
	r.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(r.stop)
	return r
}

func (r *blindRun) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return testenv.MetricValue(t, r.reg, name, labels)
}

// ingestErrors is slo_canary_ingest_errors_total by reason.
func (r *blindRun) ingestErrors(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, reason := range []string{"connect", "auth", "unknown_topic", "no_partitions", "produce"} {
		out[reason] = r.metric(t, "slo_canary_ingest_errors_total", map[string]string{"reason": reason})
	}
	return out
}

// closedPort is a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// answerSASLAsKafka makes the cluster answer a wrong password with
// SASL_AUTHENTICATION_FAILED, as Apache Kafka does (kfake would close the
// connection).
func answerSASLAsKafka(c *kfake.Cluster, password string) {
	c.ControlKey(int16(kmsg.SASLAuthenticate), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.SASLAuthenticateRequest)
		if parts := strings.Split(string(req.SASLAuthBytes), "\x00"); len(parts) == 3 && parts[2] == password {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := "Authentication failed: Invalid username or password"
		resp.ErrorMessage = &msg
		return resp, nil, true
	})
}

// listNoPartitions makes the single-broker cluster's metadata list every
// topic asked for with no partitions.
func listNoPartitions(t *testing.T, c *kfake.Cluster, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	c.ControlKey(int16(kmsg.Metadata), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.MetadataRequest)
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = 0, host, int32(p)
		resp.Brokers = append(resp.Brokers, b)
		resp.ControllerID = 0
		for _, rt := range req.Topics {
			st := kmsg.NewMetadataResponseTopic()
			st.Topic = rt.Topic
			if rt.Topic != nil {
				st.TopicID = c.TopicInfo(*rt.Topic).TopicID
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// TestIngestBlind: a canary that cannot inject says so. With nothing
// listening, a wrong topic, a refused SASL login or metadata that lists no
// partitions, every round counts as failed events of the ingest SLI with the
// reason, slo_canary_ingest_up is 0, the failure is logged once (not once a
// marker), and neither /readyz nor a stage whose observer answers reads as
// ready.
func TestIngestBlind(t *testing.T) {
	cases := []struct {
		name   string
		reason string
		// setup returns the brokers, the topic to send to, the topic the
		// stage reads, and extra kafka keys.
		setup func(t *testing.T) (brokers, topic, observed, kafka string)
		// stageAnswers: the stage's observer works, injection does not.
		stageAnswers bool
	}{
		{name: "closed_port", reason: "connect", setup: func(t *testing.T) (string, string, string, string) {
			return closedPort(t), "raw-telemetry", "raw-telemetry", ""
		}},
		{name: "wrong_topic", reason: "unknown_topic", stageAnswers: true, setup: func(t *testing.T) (string, string, string, string) {
			_, addrs := testenv.Kafka(t, kfake.SeedTopics(2, "raw-telemetry"))
			return addrs[0], "raw-telemtry", "raw-telemetry", ""
		}},
		{name: "wrong_sasl_password", reason: "auth", setup: func(t *testing.T) (string, string, string, string) {
			c, addrs := testenv.Kafka(t, kfake.SeedTopics(2, "raw-telemetry"), kfake.EnableSASL(), kfake.Superuser("PLAIN", "canary", "right"))
			answerSASLAsKafka(c, "right")
			t.Setenv(config.EnvPrefix+"_KAFKA_SASL_PASSWORD", "wrong")
			return addrs[0], "raw-telemetry", "raw-telemetry", "  sasl:\n    mechanism: PLAIN\n    username: canary\n"
		}},
		{name: "no_partitions", reason: "no_partitions", setup: func(t *testing.T) (string, string, string, string) {
			c, addrs := testenv.Kafka(t, kfake.NumBrokers(1), kfake.SeedTopics(2, "raw-telemetry"))
			listNoPartitions(t, c, addrs[0])
			return addrs[0], "raw-telemetry", "raw-telemetry", ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			brokers, topic, observed, kafka := tc.setup(t)
			r := startIngestCanary(t, brokers, topic, observed, kafka)
			testenv.WaitFor(t, 30*time.Second, "failed rounds counted with reason "+tc.reason, func() bool {
				return r.ingestErrors(t)[tc.reason] >= 10 && r.metric(t, "slo_canary_ingest_sli_total", nil) >= 10
			})
			if tc.stageAnswers {
				testenv.WaitFor(t, 30*time.Second, "the stage's observer answering", func() bool {
					return r.metric(t, "slo_canary_observer_polls_total", map[string]string{"stage": "ingest"}) >= 3 &&
						r.svc.Summary().Stages[0].Ready
				})
			}
			r.stop()

			errs := r.ingestErrors(t)
			total := r.metric(t, "slo_canary_ingest_sli_total", nil)
			good := r.metric(t, "slo_canary_ingest_sli_good_total", nil)
			var failed float64
			for reason, n := range errs {
				failed += n
				if reason != tc.reason && n != 0 {
					t.Errorf("ingest_errors_total{reason=%q} = %v; want only %s", reason, n, tc.reason)
				}
			}
			if good != 0 || failed != total-good {
				t.Errorf("ingest SLI: good %v, total %v, errors %v: want no good event, and every other one an error", good, total, errs)
			}
			if up := r.metric(t, "slo_canary_ingest_up", nil); up != 0 {
				t.Errorf("ingest_up = %v while no marker reaches Kafka", up)
			}
			if got := r.metric(t, "slo_canary_stage_ready", map[string]string{"stage": "ingest"}); got != 0 {
				t.Errorf("stage_ready{stage=ingest} = %v while the canary sends nothing", got)
			}
			if err := r.svc.Ready(); err == nil || !strings.Contains(err.Error(), "("+tc.reason+")") {
				t.Errorf("Ready() = %v, want the ingest failure (%s)", err, tc.reason)
			}
			if n := r.metric(t, "slo_canary_markers_sent_total", nil); n != 0 {
				t.Errorf("%v markers acknowledged", n)
			}
			lines := r.logs.lines(t, "marker injection failing: no marker reaches Kafka on some partition")
			if len(lines) != 1 {
				t.Fatalf("the failure was logged %d times over %v failed events, want once", len(lines), total)
			}
			if lines[0]["level"] != "ERROR" || lines[0]["reason"] != tc.reason || lines[0]["err"] == nil {
				t.Errorf("failure logged as %v", lines[0])
			}
		})
	}
}

// TestIngestHealthyThenKafkaGone: while Kafka takes every marker, ingest_up
// is 1, every SLI event is good and the service is ready; when the cluster
// goes away, ingest_up drops to 0 with reason connect, and readiness and
// the stage follow.
func TestIngestHealthyThenKafkaGone(t *testing.T) {
	c, addrs := testenv.Kafka(t, kfake.NumBrokers(1), kfake.SeedTopics(2, "raw-telemetry"))
	r := startIngestCanary(t, addrs[0], "raw-telemetry", "raw-telemetry", "")
	testenv.WaitFor(t, 30*time.Second, "markers acknowledged and the service ready", func() bool {
		return r.metric(t, "slo_canary_ingest_sli_good_total", nil) >= 10 && r.svc.Ready() == nil
	})
	if up := r.metric(t, "slo_canary_ingest_up", nil); up != 1 {
		t.Errorf("ingest_up = %v while Kafka acknowledges every marker", up)
	}
	if got := r.metric(t, "slo_canary_stage_ready", map[string]string{"stage": "ingest"}); got != 1 {
		t.Errorf("stage_ready{stage=ingest} = %v on a healthy pipeline", got)
	}
	for reason, n := range r.ingestErrors(t) {
		if n != 0 {
			t.Errorf("ingest_errors_total{reason=%q} = %v on a healthy pipeline", reason, n)
		}
	}
	// Events count when their produce completes: good and total move together.
	good, total := r.metric(t, "slo_canary_ingest_sli_good_total", nil), r.metric(t, "slo_canary_ingest_sli_total", nil)
	if good != total || good > r.metric(t, "slo_canary_markers_sent_total", nil) {
		t.Errorf("healthy ingest SLI: good %v of %v (sent %v)", good, total, r.metric(t, "slo_canary_markers_sent_total", nil))
	}

	c.Close()
	defer func() {
		if t.Failed() {
			t.Logf("errors %v up %v ready %v", r.ingestErrors(t), r.metric(t, "slo_canary_ingest_up", nil), r.svc.Ready())
			r.logs.mu.Lock()
			t.Log(r.logs.b.String())
			r.logs.mu.Unlock()
		}
	}()
	testenv.WaitFor(t, 30*time.Second, "the lost cluster seen", func() bool {
		return r.metric(t, "slo_canary_ingest_up", nil) == 0 &&
			r.ingestErrors(t)["connect"] > 0 && r.svc.Ready() != nil
	})
	if got := r.metric(t, "slo_canary_stage_ready", map[string]string{"stage": "ingest"}); got != 0 {
		t.Errorf("stage_ready{stage=ingest} = %v with Kafka gone", got)
	}
	if err := r.svc.Ready(); !strings.Contains(err.Error(), "(connect)") {
		t.Errorf("Ready() = %v, want the reason connect", err)
	}
	r.stop()
	if good, total := r.metric(t, "slo_canary_ingest_sli_good_total", nil), r.metric(t, "slo_canary_ingest_sli_total", nil); good >= total {
		t.Errorf("ingest SLI with Kafka gone: good %v of %v", good, total)
	}
}
