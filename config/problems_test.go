package config

import (
	"slices"
	"strings"
	"testing"
)

// TestEveryProblemInOneRun: unknown keys, values that cannot be read (from
// the file or the environment) and invalid values are reported together, each
// once: a key that cannot be read is not reported again by validation.
func TestEveryProblemInOneRun(t *testing.T) {
	isolateEnv(t)
	t.Setenv("SLO_CANARY_OBSERVERS_CAPSULES_DEADLINE", "soon")
	path := writeFile(t, "c.yaml", `canary:
  ratee: 5
  rate: -1
  deadline: 5x
kafka:
  brokers: []
http:
  listen: [a, b]
observers:
  database:
    deadline: 0
    type: nosql
`)
	_, err := Load(path, nil)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`unknown key "canary.ratee" in ` + path + ` (did you mean "canary.rate"?)`,
		`http.listen: expected a single value, got a list in ` + path,
		`canary.deadline: invalid duration "5x" (use a unit: 300ms, 10s, 5m, 1h30m)`,
		`observers.capsules.deadline: invalid duration "soon" (use a unit: 300ms, 10s, 5m, 1h30m)`,
		`kafka.brokers: empty: at least one host:port is required`,
		`canary.rate: must be 0 (no injection) or more, got -1`,
		`observers.database.type: unknown type "nosql" (sql or kafka)`,
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestYAMLSyntaxErrorLine: a syntax error names the line it is on, counted
// from 1, whichever part of the YAML library finds it.
func TestYAMLSyntaxErrorLine(t *testing.T) {
	isolateEnv(t)
	for _, tc := range []struct{ name, yaml, want string }{
		{"unclosed list on line 1", "rate: [1, 2", "yaml: line 1: did not find expected ',' or ']'"},
		{"unclosed list on the last line", "canary:\n  x: 1\n  rate: [1\n", "yaml: line 3: did not find expected ',' or ']'"},
		{"unclosed list on line 2", "canary:\n  rate: [1\n", "yaml: line 2: did not find expected ',' or ']'"},
		{"unclosed mapping on line 3", "canary:\n  rate: 1\n  x: {a: 1\n", "yaml: line 3: did not find expected ',' or '}'"},
		{"bad indentation on line 3", "canary:\n  rate: 1\n rate: 2\n", "yaml: line 3: did not find expected key"},
		{"tab on line 2", "canary:\n\trate: 1\n", "yaml: line 2: found character that cannot start any token"},
		{"mapping in a value on line 3", "canary:\n  rate: 1\n  x: a: b\n", "yaml: line 3: mapping values are not allowed in this context"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "c.yaml", tc.yaml)
			_, err := Load(path, nil)
			if want := path + ": " + tc.want; err == nil || err.Error() != want {
				t.Errorf("err = %v\nwant %s", err, want)
			}
		})
	}
}
