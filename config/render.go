package config

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Render returns the effective configuration as YAML, in the key names and
// order of the file format, for `slo-canary check-config`. Secrets show as
// "<redacted>" (or "" when unset) and a password inside a DSN as "xxxxx". An
// observer shows only the section of its type, and an http query probe no sql
// section. Without secrets set, the output loads back to the same
// configuration.
func Render(c *Config) ([]byte, error) {
	root := renderNode(reflect.ValueOf(*c), reflect.TypeFor[Config](), "")
	root.HeadComment = "slo-canary effective configuration; secrets are redacted"
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, fmt.Errorf("rendering configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rendering configuration: %w", err)
	}
	return buf.Bytes(), nil
}

// renderNode renders v; parent and tag say where it sits, for the values that
// need redaction.
func renderNode(v reflect.Value, parent reflect.Type, tag string) *yaml.Node {
	switch {
	case v.Type() == durationType:
		return scalar(FormatDuration(time.Duration(v.Int())))
	case v.Type() == secretType:
		return scalar(Secret(v.String()).String())
	case parent == sqlObserverType && tag == "dsn":
		return scalar(RedactDSN(v.String()))
	case v.Kind() == reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range fieldsOf(v.Type()) {
			if v.Type() == observerType {
				typ := v.FieldByName("Type").String()
				if (f.tag == "sql" && typ == "kafka") || (f.tag == "kafka" && typ == "sql") {
					continue
				}
			}
			if v.Type() == queryProbeType && f.tag == "sql" && v.FieldByName("Type").String() == "http" {
				continue
			}
			m.Content = append(m.Content, scalar(f.tag), renderNode(v.Field(f.index), v.Type(), f.tag))
		}
		return m
	case v.Kind() == reflect.Map:
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range sortedKeys(v) {
			m.Content = append(m.Content, scalar(k), renderNode(v.MapIndex(reflect.ValueOf(k)), v.Type(), k))
		}
		return m
	case v.Kind() == reflect.Slice:
		s := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := range v.Len() {
			s.Content = append(s.Content, renderNode(v.Index(i), v.Type(), ""))
		}
		return s
	}
	var n yaml.Node
	if err := n.Encode(v.Interface()); err != nil {
		// Only the scalar kinds of Config reach here, and yaml encodes all
		// of them; show the failure rather than hide the key.
		return scalar(fmt.Sprintf("<%v>", err))
	}
	return &n
}

// scalar is a string node; yaml quotes it if it would read back as another type.
func scalar(s string) *yaml.Node {
	var n yaml.Node
	_ = n.Encode(s) // encoding a string cannot fail
	return &n
}

// FormatDuration spells d as time.Duration.String does, without its zero
// tails: 5m rather than 5m0s, 1h15m rather than 1h15m0s. It parses back with
// time.ParseDuration.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
