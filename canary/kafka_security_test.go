package canary_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
)

// secCase is one way of securing the canary's Kafka connection: how the
// cluster listens and what the canary is configured with.
type secCase struct {
	name      string
	serverTLS func(p *testenv.PKI) *tls.Config // nil: plaintext listener
	mech      string                           // "" : no SASL
	// client side
	tls          bool
	clientCert   bool
	wrongCA      bool
	wrongPass    bool
	noServerName bool
	passFile     bool // password from kafka.sasl.password_file, else from the environment
	// kafkaAnswer: the broker answers a wrong password as Apache Kafka does,
	// SASL_AUTHENTICATION_FAILED in the SASLAuthenticate response, where
	// kfake on its own closes the connection.
	kafkaAnswer bool
	// expectations for a failing case
	failReason string // observer error reason expected ("" : any)
	wantLog    string // a failing case: the logged error mentions this (lower case)
}

// TestKafkaSecurity runs the marker service (a pure Kafka round trip: the
// only stage consumes the ingest topic) against kfake listening with TLS,
// mutual TLS and SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512, configured the
// way an operator would (a YAML file, the password from the environment or a
// file). Good credentials see every marker; bad ones fail visibly without
// crashing; the password never appears in a log line, an error or a metric.
func TestKafkaSecurity(t *testing.T) {
	tlsOnly := func(p *testenv.PKI) *tls.Config { return p.ServerTLS(false) }
	mutual := func(p *testenv.PKI) *tls.Config { return p.ServerTLS(true) }
	good := []secCase{
		{name: "tls", serverTLS: tlsOnly, tls: true},
		// No kafka.tls.server_name: the name checked is the broker's host
		// (127.0.0.1, an IP SAN of the certificate).
		{name: "tls_server_name_from_address", serverTLS: tlsOnly, tls: true, noServerName: true},
		{name: "mtls", serverTLS: mutual, tls: true, clientCert: true},
		{name: "sasl_plain_over_tls", serverTLS: tlsOnly, tls: true, mech: "PLAIN"},
		{name: "sasl_scram_sha256", mech: "SCRAM-SHA-256"},
		{name: "sasl_plain_cleartext_warns", mech: "PLAIN"},
		{name: "sasl_scram_sha512_mtls_password_file", serverTLS: mutual, tls: true, clientCert: true, mech: "SCRAM-SHA-512", passFile: true},
	}
	bad := []secCase{
		{name: "wrong_password_scram", mech: "SCRAM-SHA-256", wrongPass: true},
		{name: "wrong_password_plain", serverTLS: tlsOnly, tls: true, mech: "PLAIN", wrongPass: true, passFile: true},
		{name: "wrong_password_answered_as_kafka_does", serverTLS: tlsOnly, tls: true, mech: "PLAIN", wrongPass: true, kafkaAnswer: true, failReason: "auth"},
		{name: "wrong_ca", serverTLS: tlsOnly, tls: true, wrongCA: true, wantLog: "certificate"},
		{name: "missing_client_cert", serverTLS: mutual, tls: true, wantLog: "certificate"},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) { runSecCase(t, tc, true) })
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) { runSecCase(t, tc, false) })
	}
}

func runSecCase(t *testing.T, tc secCase, wantOK bool) {
	pki := testenv.NewPKI(t, "slo-canary")
	buf := make([]byte, 12)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	password := "pw-" + hex.EncodeToString(buf)

	kopts := []kfake.Opt{kfake.SeedTopics(2, "raw-telemetry")}
	if tc.serverTLS != nil {
		kopts = append(kopts, kfake.TLS(tc.serverTLS(pki)))
	}
	if tc.mech != "" {
		kopts = append(kopts, kfake.EnableSASL(), kfake.Superuser(tc.mech, "canary", password))
	}
	cluster, addrs := testenv.Kafka(t, kopts...)
	if tc.kafkaAnswer {
		cluster.ControlKey(int16(kmsg.SASLAuthenticate), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			req := kreq.(*kmsg.SASLAuthenticateRequest)
			if parts := bytes.Split(req.SASLAuthBytes, []byte{0}); len(parts) == 3 && string(parts[2]) == password {
				return nil, nil, false // the right password: kfake handles it
			}
			resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
			resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
			msg := "Authentication failed: Invalid username or password"
			resp.ErrorMessage = &msg
			return resp, nil, true
		})
	}

	dir := t.TempDir()
	var y strings.Builder
	fmt.Fprintf(&y, "kafka:\n  brokers: [%q]\n  dial_timeout: 2s\n  request_timeout: 2s\n", addrs[0])
	if tc.tls {
		ca := pki.CAFile
		if tc.wrongCA {
			ca = testenv.NewPKI(t, "other").CAFile
		}
		fmt.Fprintf(&y, "  tls:\n    enabled: true\n    ca_file: %q\n", ca)
		if !tc.noServerName {
			y.WriteString("    server_name: localhost\n")
		}
		if tc.clientCert {
			fmt.Fprintf(&y, "    cert_file: %q\n    key_file: %q\n", pki.ClientCert, pki.ClientKey)
		}
	}
	clientPass := password
	if tc.wrongPass {
		clientPass = password + "-wrong"
	}
	if tc.mech != "" {
		fmt.Fprintf(&y, "  sasl:\n    mechanism: %s\n    username: canary\n", tc.mech)
		if tc.passFile {
			pf := filepath.Join(dir, "kafka-password")
			if err := os.WriteFile(pf, []byte(clientPass+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&y, "    password_file: %q\n", pf)
		} else {
			t.Setenv(config.EnvPrefix+"_KAFKA_SASL_PASSWORD", clientPass)
		}
	}
	y.WriteString(`canary:
  rate: 5
  produce_timeout: 3s
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
      topic: raw-telemetry
      extract: avro
`)
	cfgPath := filepath.Join(dir, "canary.yaml")
	if err := os.WriteFile(cfgPath, []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatalf("config.Load:\n%s\n%v", y.String(), err)
	}
	if tc.mech != "" && cfg.Kafka.SASL.Password.Reveal() != clientPass {
		t.Fatalf("password not loaded from the %s", map[bool]string{true: "file", false: "environment"}[tc.passFile])
	}

	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	var mu sync.Mutex
	var okSent, observed int
	var errs []string
	const markers = 6
	svc, err := canary.New(context.Background(), canary.Options{
		Config: cfg, Registerer: reg, Logger: logger, MaxMarkers: markers,
		Hooks: canary.Hooks{
			Sent: func(_ canary.Marker, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err.Error())
					return
				}
				okSent++
			},
			Result: func(stage string, _ probes.Sighting, r canary.Result) {
				mu.Lock()
				defer mu.Unlock()
				if stage == "ingest" {
					observed++
				}
			},
		},
	})
	if err != nil {
		t.Fatalf("canary.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)

	if wantOK {
		testenv.WaitFor(t, 20*time.Second, "every marker sent and observed", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return okSent == markers && observed >= markers
		})
		if err := svc.Ready(); err != nil {
			t.Errorf("service not ready with good credentials: %v", err)
		}
		// PLAIN over plaintext works, but the operator is told it is unsafe.
		warned := false
		for _, w := range cfg.Warnings() {
			warned = warned || strings.HasPrefix(w, "kafka.sasl.mechanism: plain without kafka.tls.enabled")
		}
		if warned != (tc.mech == "PLAIN" && !tc.tls) {
			t.Errorf("clear-text PLAIN warning given: %v", warned)
		}
	} else {
		// The injector cannot learn the ingest topic's partitions and the
		// observer cannot fetch: both say so, and the canary keeps running.
		var reasons map[string]float64
		testenv.WaitFor(t, 20*time.Second, "the observer's failure counted and the metadata failure logged", func() bool {
			reasons = observerErrors(t, reg, "ingest")
			var n float64
			for _, v := range reasons {
				n += v
			}
			return n > 0 && len(logs.lines(t, "ingest topic metadata failed; keeping the last known partitions")) > 0
		})
		if tc.failReason != "" && reasons[tc.failReason] == 0 {
			t.Errorf("observer_errors_total{stage=ingest} by reason = %v, want %q counted", reasons, tc.failReason)
		}
		mu.Lock()
		if okSent != 0 || observed != 0 {
			t.Errorf("with bad credentials: %d markers acknowledged, %d observed", okSent, observed)
		}
		mu.Unlock()
		if got := testenv.MetricValue(t, reg, "slo_canary_stage_ready", map[string]string{"stage": "ingest"}); got != 0 {
			t.Errorf("stage_ready{stage=ingest} = %v with bad credentials", got)
		}
		// The log names the cause, so an operator can fix it.
		line := logs.lines(t, "ingest topic metadata failed; keeping the last known partitions")[0]
		if tc.wrongPass && !tc.kafkaAnswer {
			// kfake closes the connection on bad credentials where a real
			// broker first answers SASL_AUTHENTICATION_FAILED (then counted
			// with reason auth, see probes' classifyKafka), so here the
			// evidence is the client's failed SASLAuthenticate exchange.
			if !saslFailureLogged(t, &logs) {
				t.Errorf("no failed SASLAuthenticate logged")
			}
		} else if msg, _ := line["err"].(string); !strings.Contains(strings.ToLower(msg), tc.wantLog) {
			t.Errorf("metadata failure logged as %q, want it to mention %q", msg, tc.wantLog)
		}
		if svc.Ready() == nil {
			t.Errorf("service reports ready with bad credentials")
		}
	}
	stop()

	// Nothing the canary wrote may hold the password: logs, errors, metrics.
	var metrics bytes.Buffer
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&metrics, mf); err != nil {
			t.Fatal(err)
		}
	}
	logs.mu.Lock()
	logText := logs.b.String()
	logs.mu.Unlock()
	mu.Lock()
	errText := strings.Join(errs, "\n")
	mu.Unlock()
	for what, text := range map[string]string{"logs": logText, "errors": errText, "metrics": metrics.String()} {
		for _, pw := range []string{password, clientPass} {
			if strings.Contains(text, pw) {
				t.Errorf("%s contain the password", what)
			}
		}
	}
}

// saslFailureLogged reports whether the Kafka client logged a SASLAuthenticate
// response that failed to read.
func saslFailureLogged(t *testing.T, logs *syncBuffer) bool {
	t.Helper()
	for _, msg := range []string{"read SASLAuthenticate v0", "read SASLAuthenticate v1", "read SASLAuthenticate v2"} {
		for _, l := range logs.lines(t, msg) {
			if l["err"] != nil {
				return true
			}
		}
	}
	return false
}

// observerErrors returns slo_canary_observer_errors_total for stage by reason.
func observerErrors(t *testing.T, reg *prometheus.Registry, stage string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "slo_canary_observer_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var st, reason string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "stage":
					st = lp.GetValue()
				case "reason":
					reason = lp.GetValue()
				}
			}
			if st == stage {
				out[reason] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}
