package config

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// secret is distinctive so that a leak anywhere is found by a substring search.
const secret = "hunter2-SECRET"

// isolateEnv blanks every SLO_CANARY_* variable of the surrounding
// environment for the test (Load ignores empty variables), so that a CI
// setting cannot change what the test loads.
func isolateEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, EnvPrefix+"_") {
			t.Setenv(name, "")
		}
	}
}

// setEnvFile sets the KEY=VALUE lines of path, if it exists.
func setEnvFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			t.Setenv(k, v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInvalidConfigs(t *testing.T) {
	isolateEnv(t)
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid configs: %v", err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(path, ".yaml") + ".err")
			if err != nil {
				t.Fatalf("every invalid config needs its expected error: %v", err)
			}
			c, err := Load(path, nil)
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want error containing:\n%s\ngot config %+v", path, want, c)
			}
			got := strings.Split(err.Error(), "\n")
			for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, line) }) {
					t.Errorf("error lacks a line containing\n  %s\ngot:\n  %s", line, strings.Join(got, "\n  "))
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func TestValidConfigs(t *testing.T) {
	checks := map[string]func(t *testing.T, c *Config){
		"minimal": func(t *testing.T, c *Config) {
			if want := []string{"kafka-0.kafka:9092", "kafka-1.kafka:9092"}; !slices.Equal(c.Kafka.Brokers, want) {
				t.Errorf("brokers = %q, want %q", c.Kafka.Brokers, want)
			}
			if c.Canary.Instance != "canary-eu-1" || c.Canary.Rate != 1 || c.Canary.Deadline != 5*time.Minute {
				t.Errorf("canary = %+v", c.Canary)
			}
		},
		"empty": func(t *testing.T, c *Config) {
			if d := Defaults(); !reflect.DeepEqual(*c, d) {
				t.Errorf("empty file is not the defaults:\n got %+v\nwant %+v", *c, d)
			}
		},
		"json_perf": func(t *testing.T, c *Config) {
			if c.Canary.Encoding != "json" || c.Canary.Environment != "performance-test" || c.Canary.EventType != "LOG" || c.Canary.Severity != "" {
				t.Errorf("canary = %+v", c.Canary)
			}
		},
		"extra_observers": func(t *testing.T, c *Config) {
			if got, want := c.EnabledObservers(), []string{"dlq", "replica"}; !slices.Equal(got, want) {
				t.Errorf("EnabledObservers = %q, want %q", got, want)
			}
			want := ObserverDefaults()
			want.Type = "sql"
			want.Deadline = 10 * time.Minute
			want.SQL.DSN = "host=replica.db port=5432 user=slo_canary dbname=slo_scout sslmode=disable"
			want.SQL.Query = "SELECT id::text, 1 FROM markers WHERE id = ANY($1::uuid[])"
			if got := c.Observers["replica"]; !reflect.DeepEqual(got, want) {
				t.Errorf("replica = %+v\nwant %+v", got, want)
			}
			dlq := c.Observers["dlq"]
			if dlq.Kafka.Extract != "header" || dlq.Kafka.Field != "event-id" || dlq.Kafka.BufferSize != 100000 ||
				dlq.Kafka.MaxRecordBytes != 1<<20 || dlq.BatchSize != 500 || dlq.PollTimeout != 10*time.Second {
				t.Errorf("dlq lacks its defaults: %+v", dlq)
			}
			if c.Observers["database"].Enabled || c.Observers["database"].SQL.Query != DefaultQuery {
				t.Errorf("database = %+v", c.Observers["database"])
			}
		},
		"sasl_tls": func(t *testing.T, c *Config) {
			if c.Kafka.SASL.Password.Reveal() != secret || c.Kafka.SASL.Mechanism != "SCRAM-SHA-512" || !c.Kafka.TLS.Enabled {
				t.Errorf("kafka = %+v", c.Kafka)
			}
		},
		"nulls": func(t *testing.T, c *Config) {
			if d := Defaults(); !reflect.DeepEqual(*c, d) {
				t.Errorf("nulls are not the defaults:\n got %+v\nwant %+v", *c, d)
			}
		},
		"anchors": func(t *testing.T, c *Config) {
			for _, name := range []string{"database", "replica", "capsules"} {
				if o := c.Observers[name]; o.PollInterval != 2*time.Second || !o.Enabled {
					t.Errorf("%s = %+v", name, o)
				}
			}
			if c.Observers["replica"].PollTimeout != 20*time.Second || c.Observers["capsules"].PollTimeout != 10*time.Second {
				t.Errorf("merge key: %+v", c.Observers)
			}
		},
	}
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid configs: %v", err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			isolateEnv(t)
			setEnvFile(t, strings.TrimSuffix(path, ".yaml")+".env")
			c, err := Load(path, nil)
			if err != nil {
				t.Fatalf("Load(%s): %v", path, err)
			}
			if check := checks[name]; check != nil {
				check(t, c)
			}
		})
	}
}

// TestFullIsReference keeps testdata/valid/full.yaml, the README's reference,
// honest: it sets every key, to its default.
func TestFullIsReference(t *testing.T) {
	isolateEnv(t)
	const path = "testdata/valid/full.yaml"
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Observers["roundtrip"]; !ok {
		t.Fatal("the example observer roundtrip is gone")
	}
	delete(c.Observers, "roundtrip")
	if d := Defaults(); !reflect.DeepEqual(*c, d) {
		t.Errorf("full.yaml differs from Defaults:\n got %+v\nwant %+v", *c, d)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	var flatten func(prefix string, m map[string]any)
	flatten = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := join(prefix, k)
			if slices.Contains(mapKeyPaths(), prefix) {
				key = prefix + ".*" // any entry documents an entry key
			}
			if sub, ok := v.(map[string]any); ok && key != "canary.rate" {
				flatten(key, sub)
				continue
			}
			present[key] = true
		}
	}
	flatten("", raw)
	// Any entry of a map documents an entry key, for the maps that have
	// entries by default.
	for _, key := range KeysFor(func(k string) []string {
		if k == "observers" || len(mapNames(reflect.ValueOf(Defaults()), k)) > 0 {
			return []string{"*"}
		}
		return nil
	}) {
		if isSecretKey(key) {
			// Secrets are documented in a comment: a value is an error.
			if !strings.Contains(string(data), "# "+key[strings.LastIndex(key, ".")+1:]+": never here") {
				t.Errorf("full.yaml does not document %s", key)
			}
			continue
		}
		if !present[key] {
			t.Errorf("full.yaml does not set %s", key)
		}
	}
}

func TestNoFileIsDefaults(t *testing.T) {
	isolateEnv(t)
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := Defaults(); !reflect.DeepEqual(*c, d) {
		t.Errorf("Load(\"\") = %+v\nwant %+v", *c, d)
	}
	if err := d().Validate(); err != nil {
		t.Errorf("Defaults do not validate: %v", err)
	}
	if got := (&Config{}).Validate(); got == nil || strings.Count(got.Error(), "\n") < 10 {
		t.Errorf("the zero Config should fail on many keys, got %v", got)
	}
}

func d() *Config { c := Defaults(); return &c }

// envValue returns a value for the environment variable of a key of v's type,
// different from v, and the value it must decode to.
func envValue(v reflect.Value) (string, any) {
	switch x := v.Interface().(type) {
	case time.Duration:
		return (x + 3*time.Second).String(), x + 3*time.Second
	case Secret:
		return secret, Secret(secret)
	case []string:
		return "env-a:1, env-b:2", []string{"env-a:1", "env-b:2"}
	case string:
		return "env-" + x, "env-" + x
	case bool:
		return strconv.FormatBool(!x), !x
	case int:
		return strconv.Itoa(x + 7), x + 7
	case int32:
		return strconv.Itoa(int(x + 7)), x + 7
	case float64:
		return strconv.FormatFloat(x+0.5, 'g', -1, 64), x + 0.5
	}
	panic(fmt.Sprintf("no env value for %T", v.Interface()))
}

func leaves(c *Config) map[string]reflect.Value {
	m := map[string]reflect.Value{}
	walkLeaves("", reflect.ValueOf(*c), func(key string, v reflect.Value) { m[key] = v })
	return m
}

// TestEnvOverridesEveryKey sets each key, one at a time, through its
// environment variable: for the default observers and for one that exists only
// in the file.
func TestEnvOverridesEveryKey(t *testing.T) {
	isolateEnv(t)
	path := writeFile(t, "c.yaml", "observers:\n  extra:\n    type: kafka\n")
	base, err := load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := leaves(base)
	keys := Keys("capsules", "database", "extra")
	if len(keys) != len(before) {
		t.Fatalf("Keys lists %d keys, the loaded config has %d", len(keys), len(before))
	}
	pwFile := writeFile(t, "pw", secret)
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			env, want := envValue(before[key])
			if base, ok := strings.CutSuffix(key, "_file"); ok && isSecretKey(base) {
				env, want = pwFile, pwFile // it is read
			}
			if key == "http.web_config_file" { // validated: must exist and parse
				env = writeFile(t, "web.yml", "basic_auth_users: {}\n")
				want = env
			}
			t.Setenv(EnvName(key), env)
			c, err := load(path, nil)
			if err != nil {
				t.Fatalf("%s=%s: %v", EnvName(key), env, err)
			}
			if got := leaves(c)[key].Interface(); !reflect.DeepEqual(got, want) {
				t.Errorf("%s=%s: %s = %#v, want %#v", EnvName(key), env, key, got, want)
			}
			if len(c.ignoredEnv) != 0 {
				t.Errorf("%s=%s: reported as setting no key: %v", EnvName(key), env, c.ignoredEnv)
			}
		})
	}
}

// TestIgnoredEnvWarned: a SLO_CANARY_* variable that sets no key (a typo) is
// a warning naming the variable, never its value, and the variable likely
// meant, as for a mistyped key of the file; Kubernetes' service links
// for a Service named slo-canary are not config and pass in silence.
func TestIgnoredEnvWarned(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SLO_CANARY_CANARY_RATEE", "hunter2-typo-value")
	t.Setenv("SLO_CANARY_KAFKA_SASL_PASSWORDD", "hunter2-secret")
	t.Setenv("SLO_CANARY_NOTHING_LIKE_A_KEY", "hunter2-value")
	t.Setenv("SLO_CANARY_CANARY_RATE", "2")
	t.Setenv("SLO_CANARY_TEST_POSTGRES_DSN", "postgres://x@127.0.0.1:1/x")
	t.Setenv("SLO_CANARY_KAFKA_SASL_PASSWORD", "") // an empty Secret
	for _, link := range []string{"SLO_CANARY_SERVICE_HOST", "SLO_CANARY_SERVICE_PORT", "SLO_CANARY_SERVICE_PORT_METRICS",
		"SLO_CANARY_PORT", "SLO_CANARY_PORT_9464_TCP", "SLO_CANARY_PORT_9464_TCP_ADDR",
		"SLO_CANARY_METRICS_SERVICE_HOST", "SLO_CANARY_METRICS_PORT_80_TCP_PROTO"} {
		t.Setenv(link, "10.0.0.1")
	}
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range c.Warnings() {
		if strings.HasPrefix(w, "SLO_CANARY_") {
			got = append(got, w)
		}
		if strings.Contains(w, "hunter2") {
			t.Errorf("a warning shows a value: %s", w)
		}
	}
	want := []string{
		"SLO_CANARY_CANARY_RATEE: sets no config key, ignored (did you mean SLO_CANARY_CANARY_RATE?)",
		"SLO_CANARY_KAFKA_SASL_PASSWORD: set but empty, ignored (an empty Secret or ConfigMap value?)",
		"SLO_CANARY_KAFKA_SASL_PASSWORDD: sets no config key, ignored (did you mean SLO_CANARY_KAFKA_SASL_PASSWORD?)",
		"SLO_CANARY_NOTHING_LIKE_A_KEY: sets no config key (see check-config for the keys), ignored",
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
	if c.Canary.Rate != 2 {
		t.Errorf("canary.rate = %v", c.Canary.Rate)
	}
}

func TestEnvOnlyObserver(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_ENABLED", "false")
	t.Setenv("SLO_CANARY_OBSERVERS_ROUND_TRIP_TYPE", "kafka")
	t.Setenv("SLO_CANARY_OBSERVERS_ROUND_TRIP_KAFKA_TOPIC", "raw-telemetry")
	t.Setenv("SLO_CANARY_OBSERVERS_ROUND_TRIP_KAFKA_EXTRACT", "avro")
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.EnabledObservers(); !slices.Equal(got, []string{"round_trip"}) {
		t.Fatalf("EnabledObservers = %q", got)
	}
	want := ObserverDefaults()
	want.Type, want.Kafka.Topic, want.Kafka.Extract = "kafka", "raw-telemetry", "avro"
	if got := c.Observers["round_trip"]; !reflect.DeepEqual(got, want) {
		t.Errorf("round_trip = %+v\nwant %+v", got, want)
	}
}

func TestEnvObserverErrors(t *testing.T) {
	for _, tc := range []struct{ name, env, want string }{
		{"no key", "SLO_CANARY_OBSERVERS_DATABASE", "environment variable SLO_CANARY_OBSERVERS_DATABASE sets no observer key"},
		{"no name", "SLO_CANARY_OBSERVERS_TYPE", "environment variable SLO_CANARY_OBSERVERS_TYPE sets no observer key"},
		{"lower case", "SLO_CANARY_OBSERVERS_database_TYPE", "sets no observer key: expected SLO_CANARY_OBSERVERS_<NAME>_<KEY> in upper case"},
		{"bad name", "SLO_CANARY_OBSERVERS_9LIVES_ENABLED", `observers: invalid name "9lives"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateEnv(t)
			t.Setenv(tc.env, "true")
			_, err := Load("", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestObserverEnvSuffixesUnambiguous(t *testing.T) {
	s := observerEnvSuffixes()
	for _, a := range s {
		for _, b := range s {
			if a != b && strings.HasSuffix(a, b) {
				t.Errorf("%s ends with %s: an observer variable would split two ways", a, b)
			}
		}
	}
}

func TestEnvSecretForFileObserver(t *testing.T) {
	isolateEnv(t)
	path := writeFile(t, "c.yaml", `
observers:
  replica:
    type: sql
    sql:
      dsn: postgres://canary@replica/slo_scout
      query: SELECT $1
`)
	t.Setenv("SLO_CANARY_OBSERVERS_REPLICA_SQL_PASSWORD", secret)
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_PASSWORD", secret+"-db")
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_DSN", "postgres://other@db/slo_scout")
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Observers["replica"].SQL.Password.Reveal(); got != secret {
		t.Errorf("replica password = %q", got)
	}
	if got := c.Observers["database"].SQL.Password.Reveal(); got != secret+"-db" {
		t.Errorf("database password = %q", got)
	}
	if got := c.Observers["database"].SQL.DSN; got != "postgres://other@db/slo_scout" {
		t.Errorf("database dsn = %q", got)
	}
}

func TestPrecedence(t *testing.T) {
	path := writeFile(t, "c.yaml", "canary:\n  rate: 2\n  instance: from-file\nlog:\n  level: warn\n")
	for _, tc := range []struct {
		name     string
		env      map[string]string
		args     []string
		rate     float64
		instance string
		level    string
		brokers  []string
	}{
		{name: "file over defaults", rate: 2, instance: "from-file", level: "warn", brokers: []string{"slo-scout-kafka:9092"}},
		{name: "env over file", env: map[string]string{"SLO_CANARY_CANARY_RATE": "3", "SLO_CANARY_KAFKA_BROKERS": "e:1,f:2"},
			rate: 3, instance: "from-file", level: "warn", brokers: []string{"e:1", "f:2"}},
		{name: "flag over env", env: map[string]string{"SLO_CANARY_CANARY_RATE": "3", "SLO_CANARY_CANARY_INSTANCE": "from-env"},
			args: []string{"--rate=4", "--log-level=debug", "--kafka-brokers=g:1,h:2"},
			rate: 4, instance: "from-env", level: "debug", brokers: []string{"g:1", "h:2"}},
		{name: "flag over file", args: []string{"--instance=from-flag"}, rate: 2, instance: "from-flag", level: "warn", brokers: []string{"slo-scout-kafka:9092"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			BindFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path, fs)
			if err != nil {
				t.Fatal(err)
			}
			if c.Canary.Rate != tc.rate || c.Canary.Instance != tc.instance || c.Log.Level != tc.level || !slices.Equal(c.Kafka.Brokers, tc.brokers) {
				t.Errorf("rate %v instance %q level %q brokers %q; want %v %q %q %q",
					c.Canary.Rate, c.Canary.Instance, c.Log.Level, c.Kafka.Brokers, tc.rate, tc.instance, tc.level, tc.brokers)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	isolateEnv(t)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse([]string{"--listen=127.0.0.1:0", "--log-format=json"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load("", fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "127.0.0.1:0" || c.Log.Format != "json" {
		t.Errorf("http %+v log %+v", c.HTTP, c.Log)
	}
	for _, fk := range flagKeys {
		if fs.Lookup(fk.flag) == nil {
			t.Errorf("BindFlags does not define --%s", fk.flag)
		}
	}
	if err := fs.Parse([]string{"--rate=fast"}); err == nil {
		t.Error("--rate=fast parsed")
	}
}

func TestSecretFromFile(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "c.yaml", fmt.Sprintf(`
kafka:
  sasl:
    mechanism: PLAIN
    username: canary
    password_file: %s
observers:
  database:
    sql:
      password_file: %s
`, pwFile, pwFile))

	t.Run("read", func(t *testing.T) {
		isolateEnv(t)
		c, err := Load(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Kafka.SASL.Password.Reveal() != secret || c.Observers["database"].SQL.Password.Reveal() != secret {
			t.Errorf("passwords not read from %s", pwFile)
		}
	})
	t.Run("file from env", func(t *testing.T) {
		isolateEnv(t)
		t.Setenv("SLO_CANARY_OBSERVERS_CAPSULES_TYPE", "sql")
		t.Setenv("SLO_CANARY_OBSERVERS_CAPSULES_SQL_PASSWORD_FILE", pwFile)
		c, err := load("", nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Observers["capsules"].SQL.Password.Reveal() != secret {
			t.Errorf("password not read from %s", pwFile)
		}
	})
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"both env and file", map[string]string{"SLO_CANARY_KAFKA_SASL_PASSWORD": secret},
			"kafka.sasl.password: set both by SLO_CANARY_KAFKA_SASL_PASSWORD and by kafka.sasl.password_file; set one"},
		{"missing file", map[string]string{"SLO_CANARY_KAFKA_SASL_PASSWORD_FILE": filepath.Join(dir, "nope")},
			fmt.Sprintf("kafka.sasl.password_file: cannot read %q: no such file or directory", filepath.Join(dir, "nope"))},
		{"empty file", map[string]string{"SLO_CANARY_OBSERVERS_DATABASE_SQL_PASSWORD_FILE": empty},
			fmt.Sprintf("observers.database.sql.password_file: %q is empty", empty)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := Load(cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

// TestSecretsNeverShown loads secrets from every source and looks for them in
// everything that prints a configuration or a configuration error.
func TestSecretsNeverShown(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SLO_CANARY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
	t.Setenv("SLO_CANARY_KAFKA_SASL_USERNAME", "canary")
	t.Setenv("SLO_CANARY_KAFKA_SASL_PASSWORD", secret)
	// From the environment a DSN may hold a password; it is still never shown.
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_DSN", "postgres://canary:"+secret+"@db:5432/slo_scout")
	t.Setenv("SLO_CANARY_OBSERVERS_KW_TYPE", "sql")
	t.Setenv("SLO_CANARY_OBSERVERS_KW_SQL_DSN", "host=db user=canary password='"+secret+"' dbname=x")
	t.Setenv("SLO_CANARY_OBSERVERS_KW_SQL_QUERY", "SELECT $1")
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	// A password in a DSN moves to the observer's secret.
	for name, dsn := range map[string]string{"database": "postgres://canary@db:5432/slo_scout", "kw": "host=db user=canary dbname=x"} {
		if o := c.Observers[name]; o.SQL.DSN != dsn || o.SQL.Password.Reveal() != secret {
			t.Errorf("%s: dsn %q password %v", name, o.SQL.DSN, o.SQL.Password)
		}
	}
	if !bytes.Contains(rendered, []byte("password: <redacted>")) ||
		!bytes.Contains(rendered, []byte("dsn: postgres://canary@db:5432/slo_scout")) ||
		!bytes.Contains(rendered, []byte("dsn: host=db user=canary dbname=x")) {
		t.Errorf("Render does not show the redactions:\n%s", rendered)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ym, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", c, "password", c.Kafka.SASL.Password)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", c, "password", c.Kafka.SASL.Password)
	shown := map[string]string{
		"Render":   string(rendered),
		"json":     string(js),
		"yaml":     string(ym),
		"slog":     logs.String(),
		"%v":       fmt.Sprintf("%v", c),
		"%+v":      fmt.Sprintf("%+v", *c),
		"%#v":      fmt.Sprintf("%#v", *c),
		"%s":       fmt.Sprintf("%s", c.Kafka.SASL),
		"%d":       fmt.Sprintf("%d", c.Kafka.SASL.Password),
		"%x":       fmt.Sprintf("%x", c.Kafka.SASL.Password),
		"%q":       fmt.Sprintf("%q", c.Kafka.SASL.Password),
		"%10.3s":   fmt.Sprintf("%10.3s", c.Kafka.SASL.Password),
		"String()": c.Kafka.SASL.Password.String(),
	}
	for how, s := range shown {
		if strings.Contains(s, secret) || strings.Contains(s, fmt.Sprintf("%x", secret)) {
			t.Errorf("%s shows the secret: %s", how, s)
		}
	}

	// Errors about a DSN that holds a password.
	for _, dsn := range []string{
		"postgres://canary:" + secret + "@db:notaport/slo_scout",
		"postgres://canary:" + secret + "@db:5432/slo_scout?sslmode=bogus",
		"postgres://canary:" + secret + "@[db/slo_scout",
		"postgres://canary:" + secret + "%zz@db/slo_scout",
		"postgres://canary@db:bad/slo_scout?password=" + secret,
		"host=db password=" + secret + " port=notaport",
		"host=db password='" + secret,
		"host=db password=" + secret + " sslmode=bogus",
	} {
		t.Run(dsn, func(t *testing.T) {
			t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_DSN", dsn)
			_, err := Load("", nil)
			if err == nil || !strings.Contains(err.Error(), "observers.database.sql.dsn: invalid DSN") {
				t.Fatalf("err = %v, want an invalid DSN", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func TestRenderRoundTrip(t *testing.T) {
	isolateEnv(t)
	for _, path := range []string{"", "testdata/valid/full.yaml", "testdata/valid/extra_observers.yaml", "testdata/valid/json_perf.yaml"} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			c, err := Load(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Render(c)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Load(writeFile(t, "rendered.yaml", string(out)), nil)
			if err != nil {
				t.Fatalf("rendered config does not load: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(again, c) {
				t.Errorf("round trip changed the config:\n%s", out)
			}
		})
	}
}

func TestRenderFormat(t *testing.T) {
	isolateEnv(t)
	c, err := Load("testdata/valid/extra_observers.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Canary    map[string]any            `yaml:"canary"`
		Observers map[string]map[string]any `yaml:"observers"`
	}
	if err := yaml.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Canary["deadline"] != "5m" || raw.Canary["freshness_budget"] != "1m" {
		t.Errorf("durations: %v %v", raw.Canary["deadline"], raw.Canary["freshness_budget"])
	}
	if _, ok := raw.Observers["replica"]["kafka"]; ok {
		t.Error("an sql observer shows a kafka section")
	}
	if _, ok := raw.Observers["dlq"]["sql"]; ok {
		t.Error("a kafka observer shows an sql section")
	}
	if raw.Observers["capsules"]["deadline"] != "1h15m" {
		t.Errorf("capsules deadline %v", raw.Observers["capsules"]["deadline"])
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 5 * time.Minute: "5m", time.Hour: "1h", 75 * time.Minute: "1h15m", 90 * time.Second: "1m30s",
		1500 * time.Millisecond: "1.5s", 10 * time.Millisecond: "10ms", time.Hour + time.Second: "1h0m1s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(want); err != nil || back != d {
			t.Errorf("%q parses to %v, %v", want, back, err)
		}
	}
}

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u@h:5432/db?sslmode=prefer", "postgres://u@h:5432/db?sslmode=prefer"},
		{"postgres://u:pw@h:5432/db", "postgres://u:xxxxx@h:5432/db"},
		{"postgresql://u:p%40w@h/db", "postgresql://u:xxxxx@h/db"},
		{"postgres://u:pw@h:bad/db", "postgres://u:xxxxx@h:bad/db"},
		{"postgres://u:p w@[h/db", "postgres://u:xxxxx@[h/db"},
		{"postgres://h:bad/db", "postgres://h:bad/db"},
		{"postgres://u@h/db?sslmode=disable&password=pw", "postgres://u@h/db?password=xxxxx&sslmode=disable"},
		{"postgres://u@h:bad/db?password=pw", "<redacted>"},
		{"host=h user=u password=pw dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"host=h password = 'p w\\' x' dbname=d", "host=h password = xxxxx dbname=d"},
		{"host=h password='unterminated", "<redacted>"},
		{"host=h dbname=d", "host=h dbname=d"},
		{"", ""},
	} {
		if got := RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSplitDSNPassword(t *testing.T) {
	for _, tc := range []struct {
		in, dsn string
		pw      Secret
		ok      bool
	}{
		{"postgres://u:pw@h:5432/db?sslmode=require", "postgres://u@h:5432/db?sslmode=require", "pw", true},
		{"postgres://u:p%40w@h/db", "postgres://u@h/db", "p@w", true},
		{"postgres://u@h/db", "postgres://u@h/db", "", false},
		{"postgres://u@h/db?password=pw&sslmode=disable", "postgres://u@h/db?sslmode=disable", "pw", true},
		{"postgres://h/db?password=pw", "postgres://h/db", "pw", true},
		{"postgres://u:pw@h:bad/db", "postgres://u:pw@h:bad/db", "", false},
		{"host=h password='p w' user=u", "host=h user=u", "p w", true},
		{"password=pw host=h", "host=h", "pw", true},
		{"host=h password=pw", "host=h", "pw", true},
		{"host=h password='pw", "host=h password='pw", "", false},
		{"host=h", "host=h", "", false},
	} {
		dsn, pw, ok := splitDSNPassword(tc.in)
		if dsn != tc.dsn || pw != tc.pw || ok != tc.ok {
			t.Errorf("splitDSNPassword(%q) = %q, %q, %v; want %q, %q, %v", tc.in, dsn, pw.Reveal(), ok, tc.dsn, tc.pw.Reveal(), tc.ok)
		}
	}
}

func TestDSNPasswordAndPassword(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_DSN", "postgres://canary:"+secret+"@db/slo_scout")
	t.Setenv("SLO_CANARY_OBSERVERS_DATABASE_SQL_PASSWORD", secret+"2")
	_, err := Load("", nil)
	want := "observers.database.sql.dsn: holds a password, and observers.database.sql.password or observers.database.sql.password_file is set too; set one"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestSecretFormatting(t *testing.T) {
	s := Secret(secret)
	for _, got := range []string{
		s.String(), fmt.Sprint(s), fmt.Sprintf("%s|%v|%q|%x|%d|%+v", s, s, s, s, s, s), s.GoString(),
		fmt.Sprintf("%#v", s), s.LogValue().String(),
	} {
		if strings.Contains(got, secret) || !strings.Contains(got, "<redacted>") {
			t.Errorf("got %q", got)
		}
	}
	if text, _ := s.MarshalText(); string(text) != "<redacted>" {
		t.Errorf("MarshalText = %q", text)
	}
	if y, _ := s.MarshalYAML(); y != "<redacted>" {
		t.Errorf("MarshalYAML = %q", y)
	}
	if s.Reveal() != secret {
		t.Errorf("Reveal = %q", s.Reveal())
	}
	if empty := Secret(""); empty.String() != "" || fmt.Sprint(empty) != "" {
		t.Errorf("an empty secret shows as %q", empty.String())
	}
}

func TestEffectiveDeadline(t *testing.T) {
	if got := (Observer{}).EffectiveDeadline(5 * time.Minute); got != 5*time.Minute {
		t.Errorf("no deadline: %v", got)
	}
	if got := (Observer{Deadline: time.Hour}).EffectiveDeadline(5 * time.Minute); got != time.Hour {
		t.Errorf("own deadline: %v", got)
	}
	c := Defaults()
	if got := c.Observers["capsules"].EffectiveDeadline(c.Canary.Deadline); got != 75*time.Minute {
		t.Errorf("capsules: %v", got)
	}
}

func TestEnabledObservers(t *testing.T) {
	c := &Config{Observers: map[string]Observer{"b": {Enabled: true}, "a": {Enabled: true}, "c": {}}}
	if got := c.EnabledObservers(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("EnabledObservers = %q", got)
	}
	if got := d().EnabledObservers(); !slices.Equal(got, []string{"database"}) {
		t.Errorf("default EnabledObservers = %q", got)
	}
}

// TestValidateProgrammatic covers checks a file cannot reach, on a Config
// built in code.
func TestValidateProgrammatic(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(c *Config)
		want   string
	}{
		{"bad observer name", func(c *Config) { c.Observers["Bad"] = c.Observers["database"] }, `observers: invalid name "Bad"`},
		{"nan rate", func(c *Config) { c.Canary.Rate = math.NaN() }, "canary.rate: must be 0 (no injection) or more, got NaN"},
		{"observer deadline under budget", func(c *Config) {
			o := c.Observers["database"]
			o.Deadline = 30 * time.Second
			c.Observers["database"] = o
		}, "observers.database.deadline: 30s is shorter than canary.freshness_budget 1m0s"},
		{"no type", func(c *Config) { c.Observers["x"] = ObserverDefaults() }, "observers.x.type: required: sql or kafka"},
		{"sasl password without mechanism", func(c *Config) { c.Kafka.SASL.Password = secret },
			"kafka.sasl.mechanism: empty, but a username or password is set"},
		{"bad topic", func(c *Config) { c.Canary.Topic = "raw telemetry" }, `canary.topic: "raw telemetry" is not a valid Kafka topic name`},
		{"instance", func(c *Config) { c.Canary.Instance = "" }, `canary.instance: "" must be 1-128 letters`},
		{"rate zero is fine without max_rate", func(c *Config) { c.Canary.Rate, c.Canary.MaxRate = 0, 0 }, ""},
		{"recovery off ignores its limits", func(c *Config) { c.Canary.Recovery = Recovery{} }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := d()
			tc.modify(c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func FuzzLoad(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("observers:\n  x:\n    sql: {dsn: 'postgres://u:p@h:1/d'}\n"))
	f.Add([]byte("kafka: {brokers: a:1}\ncanary: {rate: .nan, deadline: 1e400}\n"))
	path := filepath.Join(f.TempDir(), "fuzz.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, nil)
		if err != nil {
			return
		}
		// Whatever loads must also render and pass its own validation again.
		if _, err := Render(c); err != nil {
			t.Fatalf("Render of a loaded config: %v", err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a loaded config does not validate: %v", err)
		}
	})
}

// TestWarnings: each config that works but is probably not meant gets one
// warning naming its key; the defaults with real journey ids get none.
func TestWarnings(t *testing.T) {
	isolateEnv(t)
	quiet := func() Config {
		c := Defaults()
		for _, n := range []string{"sli", "sli_evidence"} {
			p := c.Queries.Probes[n]
			p.Rotate.JourneyIDs = []string{"fc4936e9-d47b-5bb5-97ec-d3ea0dfd7ae0"}
			c.Queries.Probes[n] = p
		}
		return c
	}
	if c := quiet(); len(c.Warnings()) != 0 {
		t.Fatalf("warnings for a meant config: %q", c.Warnings())
	}
	// The defaults discover journeys: nothing to warn about.
	if c := Defaults(); len(c.Warnings()) != 0 {
		t.Fatalf("warnings for the defaults: %q", c.Warnings())
	}
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"placeholder journey": {func(c *Config) {
			p := c.Queries.Probes["sli"]
			p.Rotate.JourneyIDs = []string{PlaceholderJourneyID}
			c.Queries.Probes["sli"] = p
		}, "queries.probes.sli.rotate.journey_ids: holds the placeholder"},
		"plain without TLS": {func(c *Config) { c.Kafka.SASL.Mechanism = "PLAIN" },
			"kafka.sasl.mechanism: plain without kafka.tls.enabled"},
		"unverified TLS": {func(c *Config) { c.Kafka.TLS.Enabled, c.Kafka.TLS.InsecureSkipVerify = true, true },
			"kafka.tls.insecure_skip_verify: the brokers' certificates are not verified"},
	} {
		t.Run(name, func(t *testing.T) {
			c := quiet()
			tc.mod(&c)
			var hit int
			for _, w := range c.Warnings() {
				if strings.HasPrefix(w, tc.want) {
					hit++
				}
			}
			if hit != 1 {
				t.Errorf("warnings %q, want one starting %q", c.Warnings(), tc.want)
			}
		})
	}
}
