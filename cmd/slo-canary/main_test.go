package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckConfig(t *testing.T) {
	const secret = "hunter2-SECRET"
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_PASSWORD", secret)
	t.Setenv("SLO_CANARY_KAFKA_SASL_PASSWORD", secret)
	t.Run("valid", func(t *testing.T) {
		p := writeConfig(t, "kafka:\n  brokers: [k1:9092]\n  sasl:\n    mechanism: PLAIN\n    username: canary\n"+
			"queries:\n  probes:\n    sli:\n      rotate:\n        journey_ids: ["+config.PlaceholderJourneyID+"]\n"+
			"    sli_evidence:\n      rotate:\n        journey_ids: ["+config.PlaceholderJourneyID+"]\n")
		code, out, errs := runCLI(t, "check-config", "--config", p)
		if code != 0 {
			t.Fatalf("exit %d, stderr %s", code, errs)
		}
		if !strings.Contains(out, "k1:9092") || !strings.Contains(errs, "config OK") {
			t.Errorf("output lacks the effective config:\n%s\n%s", out, errs)
		}
		if strings.Contains(out+errs, secret) {
			t.Errorf("check-config printed a secret:\n%s", out)
		}
		if !strings.Contains(out, "<redacted>") {
			t.Errorf("secrets not shown as redacted:\n%s", out)
		}
		// Valid but almost certainly not meant: said, naming the key.
		for _, w := range []string{"warning: queries.probes.sli.rotate.journey_ids: holds the placeholder",
			"warning: queries.probes.sli_evidence.rotate.journey_ids", "warning: kafka.sasl.mechanism: plain without kafka.tls.enabled"} {
			if !strings.Contains(errs, w) {
				t.Errorf("stderr lacks %q:\n%s", w, errs)
			}
		}
	})
	t.Run("no warning when journeys are set", func(t *testing.T) {
		p := writeConfig(t, "kafka:\n  brokers: [k1:9092]\n  sasl:\n    mechanism: SCRAM-SHA-256\n    username: canary\nqueries:\n  probes:\n    sli:\n      rotate:\n        journey_ids: [6b2f0000-0000-4000-8000-000000000001]\n    sli_evidence:\n      rotate:\n        journey_ids: [6b2f0000-0000-4000-8000-000000000001]\n")
		code, _, errs := runCLI(t, "check-config", "--config", p)
		if code != 0 || strings.Contains(errs, "warning:") {
			t.Errorf("exit %d, stderr %s; want 0 and no warning", code, errs)
		}
	})
	for _, c := range []struct{ name, body, want string }{
		{"unknown key", "canary:\n  ratee: 2\n", `unknown key "canary.ratee"`},
		{"bad duration", "canary:\n  deadline: 5 minutes\n", "canary.deadline"},
		{"negative rate", "canary:\n  rate: -1\n", "canary.rate"},
		{"empty brokers", "kafka:\n  brokers: []\n", "kafka.brokers"},
		{"malformed dsn", "observers:\n  database:\n    sql:\n      dsn: 'postgres://x:y:z@/'\n", "observers.database.sql.dsn"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runCLI(t, "check-config", "--config", writeConfig(t, c.body))
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, errs)
			}
			if !strings.Contains(errs, c.want) {
				t.Errorf("stderr %q does not name %q", errs, c.want)
			}
			if out != "" {
				t.Errorf("printed a config for an invalid file: %s", out)
			}
			if strings.Contains(errs, secret) {
				t.Errorf("error output contains a secret: %s", errs)
			}
		})
	}
	t.Run("run refuses a bad config and starts nothing", func(t *testing.T) {
		code, _, errs := runCLI(t, "run", "--config", writeConfig(t, "canary:\n  rate: -3\n"))
		if code != 2 || !strings.Contains(errs, "canary.rate") {
			t.Fatalf("exit %d stderr %q", code, errs)
		}
	})
	t.Run("unknown flag is a usage error", func(t *testing.T) {
		if code, _, _ := runCLI(t, "run", "--no-such-flag"); code != 2 {
			t.Fatalf("exit %d, want 2", code)
		}
	})
}

// TestCheckConfigShipped: the config deploy/base ships, as `kubectl apply
// -k` installs it with the database password from its Secret, has nothing
// to warn about; in particular no placeholder journey (the SLI probes
// discover journeys).
func TestCheckConfigShipped(t *testing.T) {
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_PASSWORD", "from-the-secret")
	code, out, errs := runCLI(t, "check-config", "--config", filepath.Join("..", "..", "deploy", "base", "slo-canary.yaml"))
	if code != 0 || strings.Contains(errs, "warning:") || strings.Contains(errs, "placeholder") {
		t.Errorf("exit %d, stderr %s; want 0 and no warning", code, errs)
	}
	if !strings.Contains(out, "journey_discovery:") || strings.Contains(out, config.PlaceholderJourneyID) {
		t.Errorf("the effective config does not discover journeys:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "slo-canary ") {
		t.Fatalf("exit %d out %q", code, out)
	}
}

// TestDaemonServesAndShutsDown runs the daemon against the reference pipeline:
// /healthz answers at once, /readyz turns ready once Kafka and the stage have
// answered, /metrics carries the canary's series, and cancelling returns
// within the shutdown bound.
func TestDaemonServesAndShutsDown(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn})

	// A placeholder journey listed: valid, but not meant.
	c := pipelineConfig(t, p, dsn, 200*time.Millisecond, func(c *config.Config) {
		sli := c.Queries.Probes["sli"]
		sli.Rotate.JourneyIDs = []string{config.PlaceholderJourneyID}
		c.Queries.Probes["sli"] = sli
	})
	var logs lockedBuffer
	d := startDaemon(t, daemonOpts{cfg: c, logger: newLogger(config.Log{Level: "warn", Format: "json"}, &logs)})
	get := func(path string) (int, string) {
		resp, err := http.Get(d.url() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	// The placeholder journey is valid but not meant: the daemon says so at
	// start, naming the key (logged before it listens).
	if !strings.Contains(logs.String(), `"msg":"config warning","warning":"queries.probes.sli.rotate.journey_ids: holds the placeholder`) {
		t.Errorf("no config warning for the placeholder journey logged:\n%s", logs.String())
	}
	d.waitReady()
	_, metrics := get("/metrics")
	for _, want := range []string{"slo_canary_build_info{", "slo_canary_markers_sent_total", `slo_canary_stage_ready{stage="database"} 1`, "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if err := d.stop(); err != nil { // within its shutdown bound, or the test fails
		t.Fatalf("daemon: %v", err)
	}
}
