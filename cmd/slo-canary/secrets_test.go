package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestNoSecretInLogsOrMetrics runs the real daemon (`slo-canary run`, log
// level debug, JSON logs) three times against the reference pipeline, a
// throwaway PostgreSQL that demands passwords, a kfake cluster that demands
// SASL and a reference API that demands JWTs, with every secret the
// configuration has (kafka.sasl.password, observers.database.sql.password,
// queries.auth.jwt_signing_key, queries.auth.token,
// queries.probes.timescaledb.sql.password) set to a distinctive random value,
// from the environment, from *_file keys and inside a DSN from the
// environment:
//
//   - all_right: every secret right; markers go through the pipeline (a
//     mirror carries them from the SASL cluster to the pipeline's) and are
//     observed at the database and on Kafka, every query probe succeeds; then
//     a secret pasted into the file is rejected on SIGHUP.
//   - db_and_api_wrong: wrong database passwords (observer and SQL probe) and
//     a wrong JWT signing key: auth errors and 401s are logged.
//   - kafka_wrong: a wrong Kafka password (PLAIN): SASL failures are logged;
//     a static bearer token authenticates the query probes.
//
// Each runs until it has done that work (read from /metrics and the log),
// then /metrics (text and OpenMetrics), /healthz, /readyz and `check-config`
// on the same configuration are read and the daemon is stopped (exit 0).
// config_errors feeds secrets to check-config and run through invalid
// configurations. No secret, nor the bearer tokens the API received, may
// appear in stdout, stderr, the endpoints' bodies, check-config's output,
// any error text or the checkpoint file: not as is, not base64, hex or as a
// byte list.
func TestNoSecretInLogsOrMetrics(t *testing.T) {
	sec := &secretSet{}
	kafkaPW := sec.add(t, "kafka")
	kafkaWrong := sec.add(t, "kafka-wrong")
	dbPW := sec.add(t, "db")
	dbWrong := sec.add(t, "db-wrong")
	probePW := sec.add(t, "probe")
	probeWrong := sec.add(t, "probe-wrong")
	jwtKey := sec.add(t, "jwt-key")
	jwtWrong := sec.add(t, "jwt-key-wrong")
	mirrorPW := sec.add(t, "mirror") // the test's own client; never the canary's

	// The SQL probe connects as a role of its own, a member of the
	// read-only role, so that its password differs from the observer's.
	const probeRole = "slo_canary_queries"
	db := startDBTestbed(t, dbPW, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s IN ROLE %s", probeRole, quoteLiteral(probePW), testbed.ServeReadRole))

	_, addrs := testenv.Kafka(t,
		kfake.SeedTopics(2, "raw-telemetry"),
		kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "canary", kafkaPW),
		kfake.Superuser("PLAIN", "canary", kafkaPW),
		kfake.Superuser("SCRAM-SHA-256", "mirror", mirrorPW),
	)
	saslBroker := addrs[0]
	mirrorTopic(t, saslBroker, "mirror", mirrorPW, db.pipeline.Brokers(), "raw-telemetry")

	api, err := testbed.NewAPI(testbed.APIOptions{Profile: fastAPIProfile(), JWTKey: []byte(jwtKey)})
	if err != nil {
		t.Fatal(err)
	}
	var bearers sync.Map // every bearer token the API was sent
	apiURL := serveAPI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			bearers.Store(tok, true)
		}
		api.Handler().ServeHTTP(w, r)
	}))
	// A static token is a secret too: here a JWT the API accepts.
	token := mintJWT(t, jwtKey, "slo-canary-static")
	sec.addValue("static-token", token)

	dir := t.TempDir()
	file := func(t *testing.T, name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The bearer tokens the API received were minted from the signing keys
	// (or are the static token): credentials as much as the keys.
	withBearers := func() *secretSet {
		bearers.Range(func(k, _ any) bool {
			sec.addValue("bearer token", k.(string))
			return true
		})
		return sec
	}

	spec := func(instance string) runSpec {
		return runSpec{
			instance: instance, broker: saslBroker, mech: "SCRAM-SHA-256",
			dbDSN: db.dsn(testbed.ServeReadRole), probeDSN: db.dsn(probeRole),
			apiURL: apiURL, journey: api.JourneyIDs()[0], service: api.Services()[0],
			stateFile: filepath.Join(dir, instance+".state.json"),
		}
	}

	t.Run("all_right", func(t *testing.T) {
		s := spec("secrets-all-right")
		t.Setenv("SLO_CANARY_KAFKA_SASL_PASSWORD", kafkaPW)
		s.dbPasswordFile = file(t, "db-password", dbPW)
		t.Setenv("SLO_CANARY_QUERIES_AUTH_JWT_SIGNING_KEY", jwtKey)
		t.Setenv("SLO_CANARY_QUERIES_PROBES_TIMESCALEDB_SQL_PASSWORD", probePW)
		cfgPath := filepath.Join(dir, "all-right.yaml")
		writeAtomic(t, cfgPath, s.yaml())
		unauthorized := api.Stats().Unauthorized

		out := secretRun(t, cfgPath, s.stateFile, func(d *cliDaemon) {
			d.waitFor(40*time.Second, "markers observed at the database and on Kafka, and every query probe succeeding", func() bool {
				m := d.metrics()
				ok := m.sum("slo_canary_markers_sent_total") >= 4 &&
					m.sum("slo_canary_markers_observed_total", "stage", "database") >= 3 &&
					m.sum("slo_canary_markers_observed_total", "stage", "ingest") >= 3
				for _, p := range []string{"sli", "sli_evidence", "journeys", "health", "timescaledb"} {
					ok = ok && m.sum("slo_canary_query_requests_total", "probe", p, "outcome", "success") >= 1
				}
				return ok
			})
			if n := api.Stats().Unauthorized - unauthorized; n != 0 {
				t.Errorf("the API refused %d requests signed with the right key", n)
			}
			// An operator pastes secrets into the file and reloads: the
			// file is rejected, and the log says why without repeating them.
			pasted := sec.add(t, "pasted-token")
			pastedPW := sec.add(t, "pasted-db")
			s2 := s
			s2.authLines = fmt.Sprintf("    token: %q\n", pasted)
			s2.dbDSN = strings.Replace(s.dbDSN, testbed.ServeReadRole+"@", testbed.ServeReadRole+":"+pastedPW+"@", 1)
			writeAtomic(t, cfgPath, s2.yaml())
			d.signal(syscall.SIGHUP)
			d.waitFor(20*time.Second, "the pasted secrets rejected on reload", func() bool {
				return len(d.logLines("config reload rejected; keeping the running config")) > 0 &&
					d.metrics().sum("slo_canary_config_last_reload_successful") == 0
			})
			line := d.logLines("config reload rejected; keeping the running config")[0]
			if e, _ := line["err"].(string); !strings.Contains(e, "queries.auth.token") || !strings.Contains(e, "observers.database.sql.dsn") {
				t.Errorf("reload rejection does not name both keys: %q", e)
			}
			writeAtomic(t, cfgPath, s.yaml()) // check-config reads the running configuration
		})
		withBearers().check(t, out)
	})

	t.Run("db_and_api_wrong", func(t *testing.T) {
		s := spec("secrets-wrong-db-api")
		s.kafkaPasswordFile = file(t, "kafka-password", kafkaPW)
		t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_PASSWORD", dbWrong)
		s.jwtKeyFile = file(t, "jwt-wrong", jwtWrong)
		// The password inside a DSN from the environment.
		t.Setenv("SLO_CANARY_QUERIES_PROBES_TIMESCALEDB_SQL_DSN", strings.Replace(db.dsn(probeRole), probeRole+"@", probeRole+":"+probeWrong+"@", 1))
		cfgPath := filepath.Join(dir, "wrong-db-api.yaml")
		writeAtomic(t, cfgPath, s.yaml())

		out := secretRun(t, cfgPath, s.stateFile, func(d *cliDaemon) {
			d.waitFor(40*time.Second, "database auth errors and 401s counted and logged", func() bool {
				m := d.metrics()
				return m.sum("slo_canary_markers_sent_total") >= 2 &&
					m.sum("slo_canary_observer_errors_total", "stage", "database", "reason", "auth") >= 1 &&
					m.sum("slo_canary_query_requests_total", "probe", "sli", "outcome", "http_4xx") >= 1 &&
					m.sum("slo_canary_query_requests_total", "probe", "sli_evidence", "outcome", "http_4xx") >= 1 &&
					m.sum("slo_canary_query_requests_total", "probe", "timescaledb", "outcome", "connect_error") >= 1 &&
					len(d.logLines("sql observe failed")) > 0 &&
					len(d.logLines("observation failed")) > 0 &&
					len(d.logLines("query probe failed")) > 0
			})
			var sawPasswordError bool
			for _, l := range d.logLines("sql observe failed") {
				e, _ := l["err"].(string)
				sawPasswordError = sawPasswordError || strings.Contains(e, "password authentication failed")
			}
			if !sawPasswordError {
				t.Errorf("no 'password authentication failed' in the observer's errors: %v", d.logLines("sql observe failed"))
			}
		})
		withBearers().check(t, out)
	})

	t.Run("kafka_wrong", func(t *testing.T) {
		s := spec("secrets-wrong-kafka")
		s.mech = "PLAIN"
		t.Setenv("SLO_CANARY_KAFKA_SASL_PASSWORD", kafkaWrong)
		t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_DSN", strings.Replace(db.dsn(testbed.ServeReadRole), testbed.ServeReadRole+"@", testbed.ServeReadRole+":"+dbPW+"@", 1))
		s.tokenFile = file(t, "token", token)
		s.probePasswordFile = file(t, "probe-password", probePW)
		cfgPath := filepath.Join(dir, "wrong-kafka.yaml")
		writeAtomic(t, cfgPath, s.yaml())

		out := secretRun(t, cfgPath, s.stateFile, func(d *cliDaemon) {
			d.waitFor(40*time.Second, "the Kafka failure counted and logged, and the token-authenticated probes succeeding", func() bool {
				m := d.metrics()
				return m.sum("slo_canary_observer_errors_total", "stage", "ingest") >= 1 &&
					len(d.logLines("ingest topic metadata failed; keeping the last known partitions")) > 0 &&
					saslFailureInLog(d) &&
					m.sum("slo_canary_query_requests_total", "probe", "sli", "outcome", "success") >= 1 &&
					m.sum("slo_canary_query_requests_total", "probe", "timescaledb", "outcome", "success") >= 1
			})
			if n := d.metrics().sum("slo_canary_markers_sent_total"); n != 0 {
				t.Errorf("%v markers acknowledged with a wrong Kafka password", n)
			}
		})
		withBearers().check(t, out)
	})

	t.Run("config_errors", func(t *testing.T) {
		valid := spec("secrets-config-errors")
		cases := []struct {
			name string
			env  map[string]string
			file string // the config file; "" : valid's
			want []string
		}{
			{name: "token_and_signing_key", env: map[string]string{
				"SLO_CANARY_QUERIES_AUTH_TOKEN":           sec.add(t, "both-token"),
				"SLO_CANARY_QUERIES_AUTH_JWT_SIGNING_KEY": sec.add(t, "both-key"),
			}, want: []string{"queries.auth.token"}},
			{name: "malformed_url_dsn_with_password", env: map[string]string{
				"SLO_CANARY_OBSERVERS_DATABASE_SQL_DSN": "postgres://slo_canary:" + sec.add(t, "malformed-url") + "@127.0.0.1:notaport/slo_scout",
			}, want: []string{"observers.database.sql.dsn"}},
			{name: "malformed_url_dsn_with_password_parameter", env: map[string]string{
				"SLO_CANARY_QUERIES_PROBES_TIMESCALEDB_SQL_DSN": "postgres://slo_canary@127.0.0.1:notaport/slo_scout?password=" + sec.add(t, "malformed-param"),
			}, want: []string{"queries.probes.timescaledb.sql.dsn"}},
			{name: "malformed_keyword_dsn_with_password", env: map[string]string{
				"SLO_CANARY_OBSERVERS_DATABASE_SQL_DSN": "host=127.0.0.1 port=notaport user=slo_canary password=" + sec.add(t, "malformed-kv"),
			}, want: []string{"observers.database.sql.dsn"}},
			{name: "unterminated_keyword_dsn_with_password", env: map[string]string{
				"SLO_CANARY_OBSERVERS_DATABASE_SQL_DSN": "host=127.0.0.1 user=slo_canary password='" + sec.add(t, "unterminated-kv"),
			}, want: []string{"observers.database.sql.dsn"}},
			{name: "dsn_password_and_password", env: map[string]string{
				"SLO_CANARY_OBSERVERS_DATABASE_SQL_DSN":      "postgres://slo_canary:" + sec.add(t, "twice-dsn") + "@127.0.0.1:5432/slo_scout",
				"SLO_CANARY_OBSERVERS_DATABASE_SQL_PASSWORD": sec.add(t, "twice-env"),
			}, want: []string{"observers.database.sql.dsn"}},
			{name: "secret_and_secret_file", env: map[string]string{
				"SLO_CANARY_KAFKA_SASL_PASSWORD":      sec.add(t, "env-and-file"),
				"SLO_CANARY_KAFKA_SASL_PASSWORD_FILE": file(t, "kafka-password-2", sec.add(t, "file-and-env")),
			}, want: []string{"kafka.sasl.password"}},
			{name: "secrets_in_the_file", file: fmt.Sprintf(`kafka:
  sasl:
    mechanism: PLAIN
    username: canary
    password: %q
observers:
  database:
    sql:
      dsn: %q
queries:
  auth:
    jwt_signing_key: %q
  probes:
    timescaledb:
      sql:
        password: %q
`, sec.add(t, "file-kafka"), "postgres://slo_canary:"+sec.add(t, "file-dsn")+"@127.0.0.1:5432/slo_scout", sec.add(t, "file-jwt"), sec.add(t, "file-probe")),
				want: []string{"kafka.sasl.password", "observers.database.sql.dsn", "queries.auth.jwt_signing_key", "queries.probes.timescaledb.sql.password"}},
		}
		// The baseline is valid: each case breaks it in one way.
		t.Setenv("SLO_CANARY_KAFKA_SASL_PASSWORD", kafkaPW)
		validPath := filepath.Join(dir, "valid.yaml")
		writeAtomic(t, validPath, valid.yaml())
		if code, _, stderr := runCLI(t, "check-config", "--config", validPath); code != 0 {
			t.Fatalf("the baseline config is invalid: exit %d\n%s", code, stderr)
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				for k, v := range c.env {
					t.Setenv(k, v)
				}
				path := validPath
				if c.file != "" {
					path = filepath.Join(t.TempDir(), "c.yaml")
					writeAtomic(t, path, c.file)
				}
				out := map[string]string{}
				for _, cmd := range []string{"check-config", "run"} {
					code, stdout, stderr := runCLI(t, cmd, "--config", path, "--log-level", "debug", "--log-format", "json", "--listen", "127.0.0.1:0")
					out[cmd+" stdout"], out[cmd+" stderr"] = stdout, stderr
					if code != exitConfig {
						// A config check-config accepts would start the
						// daemon under run: stop here.
						t.Errorf("%s: exit %d, want %d; stderr:\n%s", cmd, code, exitConfig, stderr)
						break
					}
					for _, w := range c.want {
						if !strings.Contains(stderr, w) {
							t.Errorf("%s: the error does not name %s:\n%s", cmd, w, stderr)
						}
					}
				}
				sec.check(t, out)
			})
		}
	})

	// One token minted from each key (reused for half its lifetime), and
	// the static one.
	n := 0
	bearers.Range(func(_, _ any) bool { n++; return true })
	if n < 3 {
		t.Errorf("the API saw %d distinct bearer tokens, want at least 3", n)
	}
}

// secretRun runs `slo-canary run` on cfgPath at log level debug, in JSON,
// lets work wait for what the run must have done, reads every endpoint and
// `check-config` on the same configuration, stops the daemon (exit 0) and
// returns everything it wrote, by where it was found.
func secretRun(t *testing.T, cfgPath, stateFile string, work func(*cliDaemon)) map[string]string {
	t.Helper()
	flags := []string{"--config", cfgPath, "--listen", "127.0.0.1:0", "--log-level", "debug", "--log-format", "json"}
	d := startCLIDaemon(t, append([]string{"run"}, flags...)...)
	work(d)

	out := map[string]string{}
	for _, ep := range []struct{ path, accept string }{
		{"/metrics", ""},
		{"/metrics", "application/openmetrics-text; version=1.0.0"},
		{"/healthz", ""},
		{"/readyz", ""},
	} {
		code, body := d.get(ep.path, ep.accept)
		out[fmt.Sprintf("GET %s (Accept %q, status %d)", ep.path, ep.accept, code)] = body
	}
	code, stdout, stderr := runCLI(t, append([]string{"check-config"}, flags...)...)
	if code != 0 || !strings.Contains(stdout, "<redacted>") {
		t.Errorf("check-config: exit %d, secrets redacted: %v; stderr:\n%s", code, strings.Contains(stdout, "<redacted>"), stderr)
	}
	out["check-config stdout"], out["check-config stderr"] = stdout, stderr

	if code := d.stop(); code != 0 {
		t.Errorf("daemon exited %d after SIGINT, want 0", code)
	}
	out["daemon stdout"], out["daemon stderr (logs and errors)"] = d.out.String(), d.errb.String()
	if b, err := os.ReadFile(stateFile); err == nil {
		out["checkpoint file"] = string(b)
	} else {
		t.Errorf("checkpoint file: %v", err)
	}
	if !strings.Contains(d.errb.String(), `"level":"DEBUG"`) {
		t.Errorf("no debug line logged: the run did not log at debug level")
	}
	var sizes []string
	for _, k := range slices.Sorted(maps.Keys(out)) {
		sizes = append(sizes, fmt.Sprintf("%s %d B", k, len(out[k])))
	}
	t.Logf("checking %s", strings.Join(sizes, ", "))
	return out
}

// saslFailureInLog reports whether the Kafka client logged a failed
// SASLAuthenticate exchange (kfake closes the connection on bad credentials).
func saslFailureInLog(d *cliDaemon) bool {
	for _, v := range []string{"v0", "v1", "v2"} {
		for _, l := range d.logLines("read SASLAuthenticate " + v) {
			if l["err"] != nil {
				return true
			}
		}
	}
	return false
}

// runSpec is one run's configuration file: where each secret is not set here
// it comes from the environment.
type runSpec struct {
	instance, broker, mech string
	dbDSN, probeDSN        string
	apiURL                 string
	journey, service       string
	stateFile              string

	kafkaPasswordFile, dbPasswordFile, probePasswordFile string
	jwtKeyFile, tokenFile                                string
	authLines                                            string // more lines under queries.auth
}

func (s runSpec) yaml() string {
	opt := func(indent, key, val string) string {
		if val == "" {
			return ""
		}
		return fmt.Sprintf("%s%s: %q\n", indent, key, val)
	}
	return fmt.Sprintf(`kafka:
  brokers: [%q]
  dial_timeout: 2s
  request_timeout: 2s
  sasl:
    mechanism: %s
    username: canary
%scanary:
  instance: %s
  rate: 2
  produce_timeout: 3s
  shutdown_timeout: 3s
  state_file: %q
  checkpoint_interval: 1s
  recovery:
    enabled: false
observers:
  database:
    poll_interval: 200ms
    poll_timeout: 3s
    sql:
      dsn: %q
%s  ingest:
    type: kafka
    poll_interval: 100ms
    poll_timeout: 2s
    kafka:
      topic: raw-telemetry
      extract: avro
queries:
  base_url: %q
  auth:
%s%s%s  probes:
    sli_evidence:
      interval: 300ms
      rotate:
        journey_ids: [%q]
    sli:
      interval: 300ms
      rotate:
        journey_ids: [%q]
    journeys:
      interval: 300ms
      rotate:
        services: [%q]
    health:
      interval: 300ms
    timescaledb:
      enabled: true
      interval: 300ms
      sql:
        dsn: %q
%s  concurrency:
    c100:
      enabled: false
    c200:
      enabled: false
`, s.broker, s.mech, opt("    ", "password_file", s.kafkaPasswordFile),
		s.instance, s.stateFile,
		s.dbDSN, opt("      ", "password_file", s.dbPasswordFile),
		s.apiURL, opt("    ", "jwt_signing_key_file", s.jwtKeyFile), opt("    ", "token_file", s.tokenFile), s.authLines,
		s.journey, s.journey, s.service,
		s.probeDSN, opt("        ", "password_file", s.probePasswordFile))
}

// secretSet is what must never be written anywhere.
type secretSet struct {
	mu   sync.Mutex
	vals []namedSecret
}

type namedSecret struct{ name, value string }

// add returns a new distinctive random secret and remembers it.
func (s *secretSet) add(t *testing.T, name string) string {
	v := "sekret-" + name + "-" + randomHex(t, 16)
	s.addValue(name, v)
	return v
}

func (s *secretSet) addValue(name, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.vals {
		if e.value == v {
			return
		}
	}
	s.vals = append(s.vals, namedSecret{name, v})
}

// check fails the test for every secret found, in any of its forms, in any
// of the texts (keyed by where they come from).
func (s *secretSet) check(t *testing.T, texts map[string]string) {
	t.Helper()
	s.mu.Lock()
	vals := slices.Clone(s.vals)
	s.mu.Unlock()
	for _, where := range slices.Sorted(maps.Keys(texts)) {
		text := texts[where]
		for _, sv := range vals {
			for _, f := range secretForms(sv.value) {
				if i := strings.Index(text, f.text); i >= 0 {
					t.Errorf("%s holds secret %q (%s): …%s…", where, sv.name, f.how, excerpt(text, i, len(f.text)))
					break // one report per secret and place
				}
			}
		}
	}
}

// excerpt is the text around a find, for the failure message.
func excerpt(text string, i, n int) string {
	return strings.ReplaceAll(text[max(i-120, 0):min(i+n+40, len(text))], "\n", "⏎")
}

type secretForm struct{ how, text string }

// secretForms are the ways v can be written out: as is, its random part
// alone, base64 (standard and URL alphabets, at each of the three byte
// alignments it can start at inside a longer encoded string: only the part
// that depends on v alone), hex, and as a Go byte list. A JWT also by its
// signature alone.
func secretForms(v string) []secretForm {
	forms := []secretForm{{"as is", v}}
	if i := strings.LastIndexByte(v, '-'); i >= 0 && len(v)-i > 16 {
		forms = append(forms, secretForm{"its random part", v[i+1:]})
	}
	if parts := strings.Split(v, "."); len(parts) == 3 {
		forms = append(forms, secretForm{"its JWT signature", parts[2]})
	}
	for _, enc := range []struct {
		name string
		e    *base64.Encoding
	}{{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding}} {
		for shift := range 3 {
			e := enc.e.EncodeToString(append(make([]byte, shift), v...))
			// Group 0 mixes in the bytes before v; groups up to the last
			// whole one hold v's bytes only.
			end := 4 * ((shift + len(v)) / 3)
			if end > 4+8 {
				forms = append(forms, secretForm{fmt.Sprintf("%s at offset %d", enc.name, shift), e[4:end]})
			}
		}
	}
	forms = append(forms,
		secretForm{"hex", hex.EncodeToString([]byte(v))},
		secretForm{"byte list", strings.Trim(fmt.Sprint([]byte(v)), "[]")},
	)
	return forms
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// mintJWT returns an HS256 JWT the reference API accepts (its default
// issuer and audience), valid for an hour.
func mintJWT(t *testing.T, key, sub string) string {
	t.Helper()
	now := time.Now()
	claims, err := json.Marshal(map[string]any{
		"iss": "slo-scout", "aud": "slo-scout-api", "sub": sub,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

// mirrorTopic copies topic from the SASL cluster at from to the brokers to,
// record for record onto the same partition, until the test ends: the
// reference pipeline (which speaks no SASL) then processes what the canary
// produced to the SASL cluster.
func mirrorTopic(t *testing.T, from, user, pass string, to []string, topic string) {
	t.Helper()
	src, err := kgo.NewClient(
		kgo.SeedBrokers(from),
		kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := kgo.NewClient(
		kgo.SeedBrokers(to...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		src.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := src.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				dst.Produce(ctx, &kgo.Record{
					Topic: r.Topic, Partition: r.Partition, Key: r.Key, Value: r.Value,
					Headers: r.Headers, Timestamp: r.Timestamp,
				}, nil)
			})
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		src.Close()
		dst.Close()
	})
}
