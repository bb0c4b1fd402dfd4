package config

import (
	"reflect"
	"sort"
	"strings"
	"time"
)

// The key schema is derived from the mapstructure tags of Config by reflection,
// so defaults, the unknown-key check, the environment scan, rendering and the
// tests all agree on one list of keys and cannot drift from the struct.

var (
	durationType    = reflect.TypeFor[time.Duration]()
	secretType      = reflect.TypeFor[Secret]()
	stringSliceType = reflect.TypeFor[[]string]()
	observerType    = reflect.TypeFor[Observer]()
	sqlObserverType = reflect.TypeFor[SQLObserver]()
)

// EnvPrefix prefixes every environment variable that sets a key: canary.rate is
// SLO_CANARY_CANARY_RATE.
const EnvPrefix = "SLO_CANARY"

// EnvName is the environment variable that sets key.
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// field is one mapstructure-tagged field of a struct.
type field struct {
	tag   string
	index int
	typ   reflect.Type
}

// fieldsOf lists t's tagged fields in declaration order.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("mapstructure"), ",")
		if !sf.IsExported() || tag == "" || tag == "-" {
			continue
		}
		fs = append(fs, field{tag: tag, index: i, typ: sf.Type})
	}
	return fs
}

// fieldByTag finds the field of struct type t whose tag is exactly tag.
func fieldByTag(t reflect.Type, tag string) (field, bool) {
	for _, f := range fieldsOf(t) {
		if f.tag == tag {
			return f, true
		}
	}
	return field{}, false
}

// isLeaf reports whether a value of type t is one key (not a section).
func isLeaf(t reflect.Type) bool {
	return t.Kind() != reflect.Struct && t.Kind() != reflect.Map
}

// walkLeaves calls fn for every leaf key under v in a stable order: struct
// fields in declaration order, map entries sorted by name.
func walkLeaves(prefix string, v reflect.Value, fn func(key string, v reflect.Value)) {
	switch {
	case isLeaf(v.Type()):
		fn(prefix, v)
	case v.Kind() == reflect.Struct:
		for _, f := range fieldsOf(v.Type()) {
			walkLeaves(join(prefix, f.tag), v.Field(f.index), fn)
		}
	case v.Kind() == reflect.Map:
		for _, k := range sortedKeys(v) {
			walkLeaves(join(prefix, k), v.MapIndex(reflect.ValueOf(k)), fn)
		}
	}
}

// leafKeys lists the leaf keys of struct type t, relative to it.
func leafKeys(t reflect.Type) []string {
	var keys []string
	walkLeaves("", reflect.New(t).Elem(), func(key string, _ reflect.Value) {
		keys = append(keys, key)
	})
	return keys
}

// Keys lists every leaf key of the configuration for the given observer names
// (the observers map makes the key set open-ended), in a stable order. Maps
// nested in sections (queries.probes) list the entries Defaults has.
func Keys(observers ...string) []string {
	d := reflect.ValueOf(Defaults())
	return KeysFor(func(mapKey string) []string {
		if mapKey == "observers" {
			return observers
		}
		return mapNames(d, mapKey)
	})
}

// KeysFor lists every leaf key of the configuration, in a stable order, with
// the entries names returns for each map, by the map's dotted key.
func KeysFor(names func(mapKey string) []string) []string {
	var keys []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		switch {
		case isLeaf(t):
			keys = append(keys, prefix)
		case t.Kind() == reflect.Map:
			for _, name := range names(prefix) {
				walk(prefix+"."+name, t.Elem())
			}
		default:
			for _, f := range fieldsOf(t) {
				walk(join(prefix, f.tag), f.typ)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return keys
}

func sortedKeys(m reflect.Value) []string {
	keys := make([]string, 0, m.Len())
	for _, k := range m.MapKeys() {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	return keys
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}
