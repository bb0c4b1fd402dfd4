package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/spf13/viper"
)

// A named map holds entries the user names, such as observers.<name> or
// queries.probes.<name>; the names become metric label values. An entry added
// in the file, or only in the environment, starts from its defaults like any
// key, so that each of its keys can be set from the environment too.
type namedMap struct {
	key      string     // dotted key of the map
	noun     string     // what an entry is, in messages
	example  string     // <NAME>_<KEY> of a variable that sets one entry key
	defaults func() any // what an added entry starts from
}

// namedMaps lists every named map of the tree that users may add entries to.
var namedMaps = []namedMap{
	{key: "observers", noun: "observer", example: "DATABASE_SQL_PASSWORD", defaults: func() any { return ObserverDefaults() }},
	{key: "queries.probes", noun: "query probe", example: "SLI_TIMEOUT", defaults: func() any { return QueryProbeDefaults() }},
	{key: "queries.concurrency", noun: "concurrency run", example: "C100_CLIENTS", defaults: func() any { return ConcurrencyRunDefaults() }},
	{key: "bursts.profiles", noun: "burst profile", example: "NIGHTLY_STEPS", defaults: func() any { return BurstProfile{} }},
}

// setEntryDefaults registers, for every entry of a named map that defaults
// lacks and that file (the parsed config file, or nil) or environ names, a
// viper default for each of its keys. Viper finds an environment variable only
// for a key it already knows, so entries named only in the environment are
// discovered from it here.
func setEntryDefaults(v *viper.Viper, file map[string]any, environ []string, defaults Config) error {
	var errs []error
	for _, nm := range namedMaps {
		builtin := mapNames(reflect.ValueOf(defaults), nm.key)
		known := map[string]bool{}
		for _, n := range builtin {
			known[n] = true
		}
		for _, n := range fileNames(file, nm.key) {
			known[n] = true
		}
		env, err := nm.namesFromEnv(environ, known)
		errs = append(errs, err)
		for _, n := range env {
			known[n] = true
		}
		for n := range known {
			if !slices.Contains(builtin, n) {
				setDefaults(v, nm.key+"."+n, nm.defaults())
			}
		}
	}
	return errors.Join(errs...)
}

// envSuffixes are the environment spellings of the keys of an entry of type
// t: "_SQL_PASSWORD" for sql.password.
func envSuffixes(t reflect.Type) []string {
	var out []string
	for _, k := range leafKeys(t) {
		out = append(out, "_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_")))
	}
	return out
}

// namesFromEnv returns the entry names, lower-cased, that variables
// <PREFIX>_<MAP>_<NAME>_<KEY> mention. A variable that splits two ways (the
// key timeout of entry X_SQL_STATEMENT, or sql.statement_timeout of entry X)
// is read as naming the entry known from the defaults, the file or another
// variable; if neither or both are known, it is an error rather than a guess.
func (nm namedMap) namesFromEnv(environ []string, known map[string]bool) ([]string, error) {
	prefix := EnvName(nm.key) + "_"
	suffixes := envSuffixes(reflect.TypeOf(nm.defaults()))
	var names []string
	var errs []error
	type split struct {
		variable string
		names    []string
	}
	var ambiguous []split
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, prefix) || val == "" {
			continue // viper ignores empty variables too
		}
		rest := name[len(prefix):]
		var cands []string
		for _, suf := range suffixes {
			// An entry name in lower case is never read by viper: reported below.
			if entry, ok := strings.CutSuffix(rest, suf); ok && entry != "" && entry == strings.ToUpper(entry) {
				cands = append(cands, strings.ToLower(entry))
			}
		}
		switch len(cands) {
		case 0:
			errs = append(errs, fmt.Errorf("environment variable %s sets no %s key: expected %s<NAME>_<KEY> in upper case, such as %s%s",
				name, nm.noun, prefix, prefix, nm.example))
		case 1:
			names = append(names, cands[0])
		default:
			ambiguous = append(ambiguous, split{name, cands})
		}
	}
	for _, n := range names {
		known[n] = true
	}
	for _, a := range ambiguous {
		var hits []string
		for _, c := range a.names {
			if known[c] {
				hits = append(hits, c)
			}
		}
		if len(hits) != 1 {
			errs = append(errs, fmt.Errorf("environment variable %s could set a key of %s %s: name the %s in the config file, or set another of its keys, to say which",
				a.variable, nm.noun, strings.Join(quoteAll(a.names), " or "), nm.noun))
			continue
		}
		names = append(names, hits[0])
	}
	return names, errors.Join(errs...)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// mapNames returns the sorted entry names of the map at dotted key in v, a
// Config or a section of one; none if there is no such map.
func mapNames(v reflect.Value, key string) []string {
	for _, part := range strings.Split(key, ".") {
		if v.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByTag(v.Type(), part)
		if !ok {
			return nil
		}
		v = v.Field(f.index)
	}
	if v.Kind() != reflect.Map {
		return nil
	}
	return sortedKeys(v)
}

// fileNames returns the entry names of the map at dotted key in a parsed
// config file.
func fileNames(file map[string]any, key string) []string {
	parts := strings.Split(key, ".")
	m := file
	for _, part := range parts[:len(parts)-1] {
		sub, ok := m[part].(map[string]any)
		if !ok {
			return nil
		}
		m = sub
	}
	entries, ok := m[parts[len(parts)-1]].(map[string]any)
	if !ok {
		return nil
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
