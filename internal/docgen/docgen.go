// Package docgen keeps the documentation in step with the code: it
// regenerates the metrics tables of docs/metrics.md from the golden metric
// lists the tests keep, and checks that every relative link in the
// documentation resolves. The tests of this package run both checks;
// `go test ./internal/docgen -update` regenerates the tables.
package docgen

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// A generated table sits between a begin marker naming its golden list,
// relative to the repository root, and an end marker:
//
//	<!-- metrics:begin canary/testdata/metrics.golden -->
//	| metric | type | labels | meaning |
//	...
//	<!-- metrics:end -->
//
// The markers are the one place that says which golden lists the document
// covers: when a list moves, its marker changes with it.
var (
	beginMarker = regexp.MustCompile(`^<!-- metrics:begin (\S+) -->$`)
	endMarker   = "<!-- metrics:end -->"
	metricRow   = regexp.MustCompile("^\\| `(slo_canary_[a-z0-9_]+)` \\|")
)

var tableHeader = []string{"| metric | type | labels | meaning |", "|---|---|---|---|"}

// Metric is one row of a metrics table.
type Metric struct {
	Name, Type, Labels, Meaning string
}

// MetricsTables returns doc with every generated table rewritten from its
// golden list under root: one row per metric, in the list's order, with the
// name and type from the list and the labels and meaning kept from the row
// the document already has for that name (anywhere in it, so a metric that
// moves between lists keeps its description). A metric the document does
// not describe yet gets a row with empty labels and meaning. It also returns
// the golden lists the markers name.
func MetricsTables(doc []byte, root string) ([]byte, []string, error) {
	described := map[string]Metric{}
	for _, line := range strings.Split(string(doc), "\n") {
		if m, ok := parseRow(line); ok {
			described[m.Name] = m
		}
	}
	var out []string
	var goldens []string
	inTable := false
	for i, line := range strings.Split(string(doc), "\n") {
		if inTable {
			if line == endMarker {
				out = append(out, line)
				inTable = false
			}
			continue // the old rows, replaced by the generated ones
		}
		out = append(out, line)
		m := beginMarker.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		metrics, err := ReadGolden(filepath.Join(root, filepath.FromSlash(m[1])))
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w (moved? change the marker)", i+1, err)
		}
		goldens = append(goldens, m[1])
		out = append(out, tableHeader...)
		for _, g := range metrics {
			d := described[g.Name]
			out = append(out, fmt.Sprintf("| `%s` | %s | %s | %s |", g.Name, g.Type, d.Labels, d.Meaning))
		}
		inTable = true
	}
	if inTable {
		return nil, nil, fmt.Errorf("%s missing after the last begin marker", endMarker)
	}
	return []byte(strings.Join(out, "\n")), goldens, nil
}

// ReadGolden reads a golden metric list: one "name type" line per metric.
func ReadGolden(path string) ([]Metric, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ms []Metric
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		name, typ, ok := strings.Cut(line, " ")
		if !ok || name == "" || typ == "" || strings.Contains(typ, " ") {
			return nil, fmt.Errorf("%s:%d: want \"name type\", got %q", path, i+1, line)
		}
		ms = append(ms, Metric{Name: name, Type: typ})
	}
	return ms, nil
}

// Rows returns the metric rows of doc, split by whether they are inside a
// generated table.
func Rows(doc []byte) (generated, written []Metric) {
	inTable := false
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case beginMarker.MatchString(line):
			inTable = true
		case line == endMarker:
			inTable = false
		default:
			if m, ok := parseRow(line); ok {
				if inTable {
					generated = append(generated, m)
				} else {
					written = append(written, m)
				}
			}
		}
	}
	return generated, written
}

// parseRow reads a table row whose first cell is one backquoted metric name.
func parseRow(line string) (Metric, bool) {
	if !metricRow.MatchString(line) {
		return Metric{}, false
	}
	cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
	if len(cells) != 4 {
		return Metric{}, false
	}
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return Metric{Name: strings.Trim(cells[0], "`"), Type: cells[1], Labels: cells[2], Meaning: cells[3]}, true
}

// GoldenLists finds the golden metric lists in the repository at root, as
// the tests name them (testdata/*metrics.golden), relative to root with
// forward slashes.
func GoldenLists(root string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), "metrics.golden") && filepath.Base(filepath.Dir(path)) == "testdata" {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			found = append(found, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(found)
	return found, err
}
