package main

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// durationKeys are the log attributes that hold a time.Duration. A JSON
// handler writes one as a bare number of nanoseconds unless told otherwise.
// The kafka client's (kslog) are among them.
var durationKeys = []string{
	"after", "backoff", "deadline", "delay", "elapsed", "every", "interval", "poll_interval",
	"push_interval", "read_wait", "time_to_read", "time_to_write", "timeout", "wait", "write_wait",
}

// checkJSONLogs checks that every line of logs is a JSON object with unique
// keys, at every level, and that durations read as durations ("1s").
func checkJSONLogs(t *testing.T, what, logs string) {
	t.Helper()
	n := 0
	for line := range strings.Lines(logs) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		n++
		dups, err := duplicateKeys(line)
		if err != nil {
			t.Errorf("%s: not a JSON object (%v): %s", what, err, line)
			continue
		}
		if len(dups) > 0 {
			t.Errorf("%s: keys %q repeated in %s", what, dups, line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("%s: %v: %s", what, err, line)
			continue
		}
		for _, k := range durationKeys {
			v, ok := m[k]
			if !ok {
				continue
			}
			if s, isString := v.(string); !isString {
				t.Errorf("%s: %s is %v, not a duration such as \"1s\": %s", what, k, v, line)
			} else if _, err := time.ParseDuration(s); err != nil {
				t.Errorf("%s: %s is %q, not a duration such as \"1s\": %s", what, k, s, line)
			}
		}
	}
	if n == 0 {
		t.Errorf("%s: no log lines", what)
	}
}

// duplicateKeys returns the keys that appear twice in one object of the JSON
// value line, as dotted paths; encoding/json keeps the last one silently.
func duplicateKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	var dups []string
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k := kt.(string)
				if seen[k] {
					dups = append(dups, path+k)
				}
				seen[k] = true
				if err := walk(path + k + "."); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(path); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("want an object, got %v (%v)", tok, err)
	}
	dec = json.NewDecoder(strings.NewReader(line))
	if err := walk(""); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the object (%v)", err)
	}
	return dups, nil
}

func TestDuplicateKeys(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{`{"a":1,"b":{"a":2},"c":[{"a":1}]}`, nil},
		{`{"component":"canary","component":"injector"}`, []string{"component"}},
		{`{"a":{"b":1,"b":2},"c":[{"d":1,"d":1}]}`, []string{"a.b", "c.d"}},
	} {
		got, err := duplicateKeys(tc.line)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("duplicateKeys(%s) = %q, %v; want %q", tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{`[1]`, `{"a":1} {}`, `{"a":`, `level=INFO msg=x`} {
		if _, err := duplicateKeys(bad); err == nil {
			t.Errorf("duplicateKeys(%s): no error", bad)
		}
	}
}

// TestJSONLogs: every JSON log line of a demo with a burst, a burst and a gate,
// at debug level, has unique keys (a sub-component's logger says
// "component":"canary.injector", not "component":"canary","component":"injector")
// and durations that read as durations.
func TestJSONLogs(t *testing.T) {
	t.Run("demo", func(t *testing.T) {
		var out, errb lockedBuffer
		code := make(chan int, 1)
		go func() {
			code <- run([]string{"demo", "--no-postgres", "--listen", "127.0.0.1:0", "--partitions", "2", "--rate", "5",
				"--summary-interval", "500ms", "--log-level", "debug",
				"--burst", "50/s", "--burst-duration", "2s", "--burst-after", "500ms"}, &out, &errb)
		}()
		verdict := regexp.MustCompile(`(?m)^burst demo: (PASS|FAIL)`)
		deadline := time.Now().Add(90 * time.Second)
		for !verdict.MatchString(out.String()) {
			select {
			case c := <-code:
				t.Fatalf("demo exited %d before its burst's verdict\nstdout:\n%s\nstderr:\n%s", c, out.String(), errb.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no burst verdict within 90s\nstdout:\n%s", out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Ctrl-C, as TestDemo does.
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-code:
			if c != 0 {
				t.Errorf("demo exited %d after Ctrl-C", c)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("demo did not exit within 30s of Ctrl-C")
		}
		checkJSONLogs(t, "demo", errb.String())
	})

	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn})
	cfg := writeConfig(t, fmt.Sprintf(`log:
  level: debug
  format: json
kafka:
  brokers: [%q]
canary:
  rate: 2
  recovery:
    enabled: false
observers:
  database:
    poll_interval: 200ms
    sql:
      dsn: %q
consumer_lag:
  groups: [capsule-ingest-consumer]
queries:
  enabled: false
bursts:
  budgets:
    rate_tolerance: 0.1
`, p.Brokers()[0], dsn))
	for _, cmd := range []string{"burst", "gate"} {
		t.Run(cmd, func(t *testing.T) {
			args := []string{cmd, "--config", cfg, "--rate", "600/s", "--duration", "3s", "--report", "", "--junit", ""}
			if cmd == "burst" {
				args = append(args, "--once")
			}
			code, out, errs := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
			}
			checkJSONLogs(t, cmd, errs)
		})
	}
}

// TestLoggerComponents: nested components join with dots, in JSON and text,
// and durations read as durations wherever they are added.
func TestLoggerComponents(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var b strings.Builder
			l := newLogger(config.Log{Level: "info", Format: format}, &b)
			l = l.With("component", "testbed", "run", 1).With("component", "pipeline").With("every", time.Second)
			l.With("component", "kafka").Info("m", "wait", 1500*time.Millisecond)
			l.WithGroup("g").With("component", "x").Info("m", "d", time.Minute)
			lines := strings.Split(strings.TrimSpace(b.String()), "\n")
			want := [][]string{
				{`"component":"testbed.pipeline.kafka","run":1,"every":"1s","wait":"1.5s"}`,
					`component=testbed.pipeline.kafka run=1 every=1s wait=1.5s`},
				{`"component":"testbed.pipeline","run":1,"every":"1s","g":{"component":"x","d":"1m0s"}}`,
					`component=testbed.pipeline run=1 every=1s g.component=x g.d=1m0s`},
			}
			if len(lines) != len(want) {
				t.Fatalf("lines:\n%s", b.String())
			}
			for i, w := range want {
				s := w[0]
				if format == "text" {
					s = w[1]
				}
				if !strings.HasSuffix(lines[i], s) {
					t.Errorf("line %d:\n  %s\nwant it to end with\n  %s", i, lines[i], s)
				}
			}
		})
	}
}
