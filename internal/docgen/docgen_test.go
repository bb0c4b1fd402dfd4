package docgen

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "regenerate the metrics tables of docs/metrics.md")

const (
	repoRoot   = "../.."
	metricsDoc = "docs/metrics.md"
	regenerate = "go test ./internal/docgen -update"
)

// TestMetricsDoc: docs/metrics.md has a table for every golden metric list
// the tests keep, each current with its list, and every metric described.
func TestMetricsDoc(t *testing.T) {
	path := filepath.Join(repoRoot, metricsDoc)
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, covered, err := MetricsTables(doc, repoRoot)
	if err != nil {
		t.Fatalf("%s: %v", metricsDoc, err)
	}
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		doc = got
	}
	if string(got) != string(doc) {
		t.Errorf("%s is out of step with the golden metric lists (%s):\n%s\nregenerate with: %s",
			metricsDoc, strings.Join(covered, ", "), firstDifference(string(doc), string(got)), regenerate)
	}

	lists, err := GoldenLists(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if len(lists) == 0 {
		t.Fatal("no golden metric lists found under the repository root")
	}
	for _, l := range lists {
		if !slices.Contains(covered, l) {
			t.Errorf("%s has no table in %s: add a section with the lines\n<!-- metrics:begin %s -->\n<!-- metrics:end -->\nthen run %s and describe its metrics", l, metricsDoc, l, regenerate)
		}
	}

	generated, written := Rows(got)
	inGolden := map[string]bool{}
	for _, m := range generated {
		inGolden[m.Name] = true
		if m.Meaning == "" {
			t.Errorf("%s: describe %s (its labels and meaning)", metricsDoc, m.Name)
		}
	}
	for _, m := range written {
		if inGolden[m.Name] {
			t.Errorf("%s: %s is in a golden list now; delete its hand-written row (%s keeps its description)", metricsDoc, m.Name, regenerate)
		}
	}
}

// TestLinks: every relative link of the README and the docs resolves.
func TestLinks(t *testing.T) {
	var files []string
	for _, pattern := range []string{"*.md", "docs/*.md", "deploy/*.md"} {
		m, err := filepath.Glob(filepath.Join(repoRoot, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			rel, err := filepath.Rel(repoRoot, f)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, filepath.ToSlash(rel))
		}
	}
	if !slices.Contains(files, "README.md") || !slices.Contains(files, metricsDoc) {
		t.Fatalf("README.md or %s not found (looked at %v)", metricsDoc, files)
	}
	broken, err := BrokenLinks(repoRoot, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range broken {
		t.Error(b)
	}
}

func TestMetricsTables(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a", "testdata"), 0o755); err != nil {
		t.Fatal(err)
	}
	golden := "slo_canary_x_kept gauge\nslo_canary_x_moved_in counter\nslo_canary_x_new histogram\n"
	if err := os.WriteFile(filepath.Join(root, "a", "testdata", "metrics.golden"), []byte(golden), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := strings.Join([]string{
		"# Metrics",
		"<!-- metrics:begin a/testdata/metrics.golden -->",
		"| metric | type | labels | meaning |",
		"|---|---|---|---|",
		"| `slo_canary_gone` | gauge | | dropped with its list entry |",
		"| `slo_canary_x_kept` | counter | stage | the type is the list's |",
		"<!-- metrics:end -->",
		"",
		"| `slo_canary_x_moved_in` | counter | a, b | written by hand |",
		"",
	}, "\n")

	got, covered, err := MetricsTables([]byte(doc), root)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"# Metrics",
		"<!-- metrics:begin a/testdata/metrics.golden -->",
		"| metric | type | labels | meaning |",
		"|---|---|---|---|",
		"| `slo_canary_x_kept` | gauge | stage | the type is the list's |",
		"| `slo_canary_x_moved_in` | counter | a, b | written by hand |",
		"| `slo_canary_x_new` | histogram |  |  |",
		"<!-- metrics:end -->",
		"",
		"| `slo_canary_x_moved_in` | counter | a, b | written by hand |",
		"",
	}, "\n")
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if !slices.Equal(covered, []string{"a/testdata/metrics.golden"}) {
		t.Errorf("covered = %v", covered)
	}
	again, _, err := MetricsTables(got, root)
	if err != nil || string(again) != string(got) {
		t.Errorf("not stable on its own output (err %v):\n%s", err, again)
	}
	generated, written := Rows(got)
	if len(generated) != 3 || len(written) != 1 || written[0].Name != "slo_canary_x_moved_in" {
		t.Errorf("Rows: generated %v, written %v", generated, written)
	}

	for _, bad := range []string{
		"<!-- metrics:begin a/testdata/moved.golden -->\n<!-- metrics:end -->\n",
		"<!-- metrics:begin a/testdata/metrics.golden -->\n| no end |\n",
	} {
		if _, _, err := MetricsTables([]byte(bad), root); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestAnchors(t *testing.T) {
	doc := "# The reference pipeline (`testbed/`)\n## Reloading the config; TLS\n```sh\n# not a heading\n```\n## Notes\n## Notes\n#no-space\n"
	got := Anchors([]byte(doc))
	for _, a := range []string{"the-reference-pipeline-testbed", "reloading-the-config-tls", "notes", "notes-1"} {
		if !got[a] {
			t.Errorf("anchor %q missing from %v", a, got)
		}
	}
	if got["not-a-heading"] || got["no-space"] || len(got) != 4 {
		t.Errorf("anchors %v", got)
	}
}

func TestBrokenLinks(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"README.md": "# Top\n[ok](docs/a.md#part-one) [dir](docs/) [web](https://example.com/x) [self](#top)\n" +
			"```\n[in code](nowhere.md)\n```\n`[in a span](nowhere.md)`\n[gone](docs/b.md)\n",
		"docs/a.md": "# A\n## Part one\n[up](../README.md#top) [bad anchor](../README.md#bottom) [not md](../go.mod#x)\n",
		"go.mod":    "module x\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := BrokenLinks(root, []string{"README.md", "docs/a.md"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"README.md:7: docs/b.md: no such file or directory",
		"docs/a.md:3: ../README.md#bottom: no heading with that anchor in README.md",
		"docs/a.md:3: ../go.mod#x: a fragment into a file that is not Markdown",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// firstDifference shows where two texts first differ, line by line.
func firstDifference(have, want string) string {
	h, w := strings.Split(have, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(h) || i < len(w); i++ {
		var hl, wl string
		if i < len(h) {
			hl = h[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if hl != wl {
			return fmt.Sprintf("line %d:\n  have: %s\n  want: %s", i+1, hl, wl)
		}
	}
	return ""
}
