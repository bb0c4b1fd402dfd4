package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// flagKeys are the flags BindFlags defines and the keys they set. Only
// everyday keys get a flag; secrets never do (they would show in ps).
var flagKeys = []struct{ flag, key string }{
	{"listen", "http.listen"},
	{"log-level", "log.level"},
	{"log-format", "log.format"},
	{"kafka-brokers", "kafka.brokers"},
	{"instance", "canary.instance"},
	{"rate", "canary.rate"},
}

// BindFlags defines on fs the flags Load understands. Their defaults are the
// configuration defaults, for --help; a flag overrides the file and the
// environment only when it is given.
func BindFlags(fs *pflag.FlagSet) {
	d := Defaults()
	fs.String("listen", d.HTTP.Listen, "address serving /metrics, /healthz and /readyz (http.listen)")
	BindLogFlags(fs)
	fs.StringSlice("kafka-brokers", d.Kafka.Brokers, "Kafka bootstrap brokers, host:port, comma-separated (kafka.brokers)")
	fs.String("instance", d.Canary.Instance, "name of this canary, stable across restarts and distinct per replica (canary.instance)")
	fs.Float64("rate", d.Canary.Rate, "markers per second per partition; 0 disables injection (canary.rate)")
}

// BindLogFlags defines on fs only the log flags of BindFlags: for commands
// that neither serve HTTP nor send markers (queries), where the other flags
// would act on nothing.
func BindLogFlags(fs *pflag.FlagSet) {
	d := Defaults()
	fs.String("log-level", d.Log.Level, "log level: debug, info, warn or error (log.level)")
	fs.String("log-format", d.Log.Format, "log format: json, text, or auto for text on a terminal (log.format)")
}

// Load builds the configuration from, in increasing precedence: Defaults, the
// YAML file at path (none if path is ""), SLO_CANARY_* environment variables,
// and the flags of flags that BindFlags defined and that were set (flags may be
// nil). Secret *_file keys are read. The result is validated; the error lists
// every problem found, one per line, each naming its key: unknown keys, values
// that cannot be read and invalid settings come together, so that one run shows
// them all. Only a file that cannot be read or parsed stops at that.
func Load(path string, flags *pflag.FlagSet) (*Config, error) {
	c, errs, err := loadAll(path, flags)
	if err != nil {
		return nil, err
	}
	if verr := c.Validate(); verr != nil {
		for _, e := range flatten(verr) {
			// A key that could not be read was validated at its default;
			// its problem is already reported.
			if !slices.ContainsFunc(errs, func(r error) bool { return sameKey(r, e) }) {
				errs = append(errs, e)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// flatten returns the errors err joins (errors.Join), or err alone.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// sameKey reports whether problems a and b, both "key: ...", name one key.
func sameKey(a, b error) bool {
	ka, _, okA := strings.Cut(a.Error(), ": ")
	kb, _, okB := strings.Cut(b.Error(), ": ")
	return okA && okB && ka == kb && !strings.Contains(ka, " ")
}

// load is Load without validation.
func load(path string, flags *pflag.FlagSet) (*Config, error) {
	c, problems, err := loadAll(path, flags)
	if err == nil {
		err = errors.Join(problems...)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// loadAll is Load without validation. It returns err only for a file that cannot
// be read or parsed; every other problem goes to problems, and c is built from
// the rest: a key of the file that is refused is left out, and a key whose
// value cannot be decoded keeps its default, so that validation reports the
// other keys' problems in the same run.
func loadAll(path string, flags *pflag.FlagSet) (c *Config, problems []error, err error) {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	defaults := Defaults()
	var file map[string]any
	if path != "" {
		m, err := readFile(path)
		if err != nil {
			return nil, nil, err
		}
		problems = append(problems, checkTree(path, "", m, reflect.TypeFor[Config]())...)
		if err := v.MergeConfigMap(m); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		file = m
	}

	// Every entry of a named map (observers, query probes), whether from the
	// defaults, the file or only the environment, gets a default for each of
	// its keys: see setEntryDefaults.
	setDefaults(v, "", defaults)
	if err := setEntryDefaults(v, file, os.Environ(), defaults); err != nil {
		problems = append(problems, flatten(err)...)
	}

	if flags != nil {
		for _, fk := range flagKeys {
			if f := flags.Lookup(fk.flag); f != nil {
				if err := v.BindPFlag(fk.key, f); err != nil {
					return nil, nil, fmt.Errorf("binding flag --%s: %w", fk.flag, err)
				}
			}
		}
	}

	c, decodeProblems, err := decode(v, file, defaults)
	if err != nil {
		return nil, nil, err
	}
	problems = append(problems, decodeProblems...)
	if err := moveDSNPasswords(c); err != nil {
		problems = append(problems, flatten(err)...)
	}
	if err := readSecretFiles(c); err != nil {
		problems = append(problems, flatten(err)...)
	}
	return c, problems, nil
}

// decode unmarshals v into a Config. A key whose value cannot be decoded is a
// problem, one line naming the key, and the key is decoded again at its
// default so that the rest of the configuration is still built and checked.
// err is for a failure that names no key.
func decode(v *viper.Viper, file map[string]any, defaults Config) (c *Config, problems []error, err error) {
	unmarshal := func(c *Config) error {
		return v.Unmarshal(c,
			viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(durationHook, commaListHook)),
			func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true },
		)
	}
	c = &Config{ignoredEnv: ignoredEnv(v.AllKeys(), os.Environ())}
	derr := unmarshal(c)
	if derr == nil {
		return c, nil, nil
	}
	problems, keys := decodeError(derr)
	slices.Sort(keys)
	if len(keys) == 0 {
		return nil, nil, errors.Join(problems...)
	}
	// The defaults of every key, entries of named maps included.
	dv := viper.New()
	setDefaults(dv, "", defaults)
	// Its error, if any, load has reported: it called it on v.
	_ = setEntryDefaults(dv, file, os.Environ(), defaults)
	for _, k := range keys {
		// A list element, "bursts.load.templates.0", falls back with its list.
		for !dv.IsSet(k) && strings.Contains(k, ".") {
			k = k[:strings.LastIndex(k, ".")]
		}
		if !dv.IsSet(k) {
			return nil, nil, errors.Join(problems...)
		}
		v.Set(k, dv.Get(k))
	}
	c = &Config{ignoredEnv: c.ignoredEnv}
	if err := unmarshal(c); err != nil {
		return nil, nil, errors.Join(append(problems, err)...)
	}
	return c, problems, nil
}

// setDefaults registers every leaf of val, under prefix, as a viper default.
// A default per key is what makes the key visible to AutomaticEnv.
func setDefaults(v *viper.Viper, prefix string, val any) {
	walkLeaves(prefix, reflect.ValueOf(val), func(key string, fv reflect.Value) {
		x := fv.Interface()
		switch t := x.(type) {
		case Secret:
			x = string(t)
		case []string:
			x = slices.Clone(t)
		}
		v.SetDefault(key, x)
	})
}

// readFile parses the YAML file, to be checked by checkTree before viper sees
// it: viper folds key case, has no notion of secrets and reports unknown keys
// only by their parent, so those checks are done on the file's own keys.
func readFile(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var m map[string]any
	if err := dec.Decode(&m); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// yaml quotes the offending value; if the wrong file was passed,
			// say a secret, it must not end up in the error.
			return nil, fmt.Errorf("%s: the top level must be a mapping of keys", path)
		}
		return nil, fmt.Errorf("%s: %w", path, yamlLine(err, data))
	}
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: holds more than one YAML document; use one", path)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// yamlParserProblems are the problems yaml.v3 reports from its parser, as
// opposed to its scanner. For those it counts lines from 0, and names no line
// at all for the first: a syntax error on line 2 says "line 1".
var yamlParserProblems = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"found undefined tag handle",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
}

var yamlErrorRE = regexp.MustCompile(`^yaml: (?:line ([0-9]+): )?(.*)$`)

// yamlLine corrects the line number of a yaml.v3 syntax error in data: see
// yamlParserProblems. A problem found at the end of the input (an unclosed
// list) is put on the last line, not on the one after it.
func yamlLine(err error, data []byte) error {
	m := yamlErrorRE.FindStringSubmatch(err.Error())
	if m == nil || !slices.Contains(yamlParserProblems, m[2]) {
		return err
	}
	line := 1
	if m[1] != "" {
		n, convErr := strconv.Atoi(m[1])
		if convErr != nil {
			return err
		}
		line = n + 1
	}
	lines := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		lines++
	}
	return fmt.Errorf("yaml: line %d: %s", max(min(line, lines), 1), m[2])
}

var observerNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// checkTree checks the file's mapping m against struct type t: every key must
// exist, sections must be mappings and values must not be, and no secret may
// be written in the file. It also normalises m for viper: a null value means
// "not set" and is removed, so that it cannot hide the defaults under it; a
// key with a problem is removed too, so that the rest is still loaded and
// checked and every problem is reported in one run.
func checkTree(file, prefix string, m map[string]any, t reflect.Type) []error {
	var errs []error
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		key := join(prefix, k)
		val := m[k]
		f, ok := fieldByTag(t, k)
		if !ok {
			errs = append(errs, unknownKeyError(file, prefix, k, t))
			delete(m, k)
			continue
		}
		if val == nil {
			delete(m, k)
			continue
		}
		switch {
		case f.typ.Kind() == reflect.Struct:
			sub, ok := asMap(val)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: expected a mapping of keys, got %s in %s", key, describe(val), file))
				delete(m, k)
				continue
			}
			m[k] = sub
			errs = append(errs, checkTree(file, key, sub, f.typ)...)
		case f.typ.Kind() == reflect.Map:
			sub, ok := asMap(val)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: expected a mapping of names to their settings, got %s in %s", key, describe(val), file))
				delete(m, k)
				continue
			}
			m[k] = sub
			names := make([]string, 0, len(sub))
			for name := range sub {
				names = append(names, name)
			}
			slices.Sort(names)
			for _, name := range names {
				if !observerNameRE.MatchString(name) {
					errs = append(errs, fmt.Errorf("%s: invalid name %q in %s: it must match %s (it becomes a metric label value)", key, name, file, observerNameRE))
					delete(sub, name)
					continue
				}
				entry, ok := asMap(sub[name])
				if sub[name] == nil {
					entry, ok = map[string]any{}, true
				}
				if !ok {
					errs = append(errs, fmt.Errorf("%s.%s: expected a mapping of keys, got %s in %s", key, name, describe(sub[name]), file))
					delete(sub, name)
					continue
				}
				sub[name] = entry
				errs = append(errs, checkTree(file, key+"."+name, entry, f.typ.Elem())...)
			}
		case f.typ == secretType:
			if s, ok := val.(string); !ok || s != "" {
				errs = append(errs, secretError(key, key))
				delete(m, k)
			}
		case f.typ == stringSliceType:
			list, isList := val.([]any)
			if !isList {
				list = []any{val}
			}
			for _, e := range list {
				if !isScalar(e) {
					errs = append(errs, fmt.Errorf("%s: expected a list of strings, got %s in %s", key, describe(val), file))
					delete(m, k)
					break
				}
			}
		default:
			if !isScalar(val) {
				errs = append(errs, fmt.Errorf("%s: expected a single value, got %s in %s", key, describe(val), file))
				delete(m, k)
				continue
			}
			if t == sqlObserverType && k == "dsn" {
				if s, ok := val.(string); ok {
					if _, found, _ := dsnPassword(s); found {
						errs = append(errs, secretError(key, join(prefix, "password")))
					}
				}
			}
		}
	}
	return errs
}

// secretError reports a secret written in the file at key; secretKey is the
// key it must be set through instead.
func secretError(key, secretKey string) error {
	what := ""
	if key != secretKey {
		what = "holds a password; "
	}
	return fmt.Errorf("%s: %ssecrets must come from the environment or a file (%s or %s_file)",
		key, what, EnvName(secretKey), secretKey)
}

// unknownKeyError names the key in full and, for a likely typo, the key meant.
func unknownKeyError(file, prefix, k string, t reflect.Type) error {
	key := join(prefix, k)
	best, bestDist := "", 3
	for _, f := range fieldsOf(t) {
		d := editDistance(strings.ToLower(k), f.tag)
		if d < bestDist {
			best, bestDist = f.tag, d
		}
	}
	hint := ""
	if best != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", join(prefix, best))
	}
	return fmt.Errorf("unknown key %q in %s%s", key, file, hint)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// asMap accepts a YAML mapping. yaml.v3 gives map[any]any when some key is not
// a string; such keys are spelled out so that they are reported as unknown.
func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, e := range m {
			out[fmt.Sprint(k)] = e
		}
		return out, true
	}
	return nil, false
}

func isScalar(v any) bool {
	switch v.(type) {
	case map[string]any, map[any]any, []any:
		return false
	}
	return true
}

func describe(v any) string {
	switch v.(type) {
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	}
	return fmt.Sprintf("a %T", v)
}

// observerEnvSuffixes are the environment spellings of an observer's keys,
// "_SQL_PASSWORD" for sql.password. None is a suffix of another, so a variable
// splits into observer name and key in exactly one way.
func observerEnvSuffixes() []string { return envSuffixes(observerType) }

// durationHook decodes durations from strings such as "5m". A bare number is
// refused: mapstructure would take it as nanoseconds, so "deadline: 300" would
// silently mean 300ns.
func durationHook(_ reflect.Type, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch d := data.(type) {
	case string:
		v, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q (use a unit: 300ms, 10s, 5m, 1h30m)", d)
		}
		return v, nil
	case time.Duration:
		return d, nil
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		if reflect.ValueOf(d).IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("invalid duration %v: a number has no unit; write it as \"%vs\" or the like", d, d)
	}
	return data, nil
}

// commaListHook splits "a:9092, b:9092" into a list: an environment variable
// or flag is a single string.
func commaListHook(from reflect.Type, to reflect.Type, data any) (any, error) {
	if to != stringSliceType || from.Kind() != reflect.String {
		return data, nil
	}
	var out []string
	for _, s := range strings.Split(reflect.ValueOf(data).String(), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// decodeError turns mapstructure's nested errors into one line per key,
// "canary.rate: ...", spelling map entries as keys (observers.database, not
// observers[database]), and returns those keys. With no key to name, the one
// error is returned whole and keys is empty.
func decodeError(err error) (errs []error, keys []string) {
	leaves := decodeLeaves(err)
	if len(leaves) == 0 {
		return []error{fmt.Errorf("decoding configuration: %w", err)}, nil
	}
	for _, de := range leaves {
		key := strings.NewReplacer("[", ".", "]", "").Replace(de.Name())
		keys = append(keys, key)
		inner := de.Unwrap()
		var pe *mapstructure.ParseError
		var ue *mapstructure.UnconvertibleTypeError
		switch {
		case errors.As(inner, &pe):
			errs = append(errs, fmt.Errorf("%s: cannot read %q as %s", key, fmt.Sprint(pe.Value), typeName(pe.Expected.Type())))
		case errors.As(inner, &ue):
			errs = append(errs, fmt.Errorf("%s: expected %s, got %s", key, typeName(ue.Expected.Type()), describe(ue.Value)))
		default:
			errs = append(errs, fmt.Errorf("%s: %w", key, inner))
		}
	}
	return errs, keys
}

func decodeLeaves(err error) []*mapstructure.DecodeError {
	switch x := err.(type) {
	case *mapstructure.DecodeError:
		if sub := decodeLeaves(x.Unwrap()); len(sub) > 0 {
			return sub
		}
		return []*mapstructure.DecodeError{x}
	case interface{ Unwrap() []error }:
		var out []*mapstructure.DecodeError
		for _, e := range x.Unwrap() {
			out = append(out, decodeLeaves(e)...)
		}
		return out
	case interface{ Unwrap() error }:
		return decodeLeaves(x.Unwrap())
	}
	return nil
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// moveDSNPasswords moves a password written into a DSN (possible from the
// environment; the file refuses it) into the observer's Password, so that a
// secret lives only in Secret fields and a DSN can be printed as it is.
func moveDSNPasswords(c *Config) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.Observers)) {
		o := c.Observers[name]
		errs = append(errs, moveDSNPassword("observers."+name+".sql", &o.SQL))
		c.Observers[name] = o
	}
	errs = append(errs, c.Queries.moveDSNPasswords()...)
	return errors.Join(errs...)
}

// moveDSNPassword moves the password in s.DSN, if any, to s.Password; key
// names s in the error.
func moveDSNPassword(key string, s *SQLObserver) error {
	stripped, pw, ok := splitDSNPassword(s.DSN)
	if !ok {
		return nil
	}
	if s.Password != "" || s.PasswordFile != "" {
		return fmt.Errorf("%s.dsn: holds a password, and %s.password or %s.password_file is set too; set one", key, key, key)
	}
	s.DSN, s.Password = stripped, pw
	return nil
}

// readSecretFiles fills each secret from its *_file key. The error names the
// key and the path, never the content.
func readSecretFiles(c *Config) error {
	var errs []error
	read := func(key string, s *Secret, path string) {
		if path == "" {
			return
		}
		if *s != "" {
			errs = append(errs, fmt.Errorf("%s: set both by %s and by %s_file; set one", key, EnvName(key), key))
			return
		}
		data, err := os.ReadFile(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is named below, once
			}
			errs = append(errs, fmt.Errorf("%s_file: cannot read %q: %w", key, path, err))
			return
		}
		v := strings.TrimRight(string(data), "\r\n")
		if v == "" {
			errs = append(errs, fmt.Errorf("%s_file: %q is empty", key, path))
			return
		}
		*s = Secret(v)
	}
	read("kafka.sasl.password", &c.Kafka.SASL.Password, c.Kafka.SASL.PasswordFile)
	for _, name := range slices.Sorted(maps.Keys(c.Observers)) {
		o := c.Observers[name]
		read("observers."+name+".sql.password", &o.SQL.Password, o.SQL.PasswordFile)
		c.Observers[name] = o
	}
	c.Queries.readSecretFiles(read)
	return errors.Join(errs...)
}

// ignoredEnv returns the SLO_CANARY_* variables of environ that set nothing,
// sorted: those that name no key (a typo, a key that does not exist) and
// those that are empty (viper ignores an empty variable; an empty Secret
// renders one). Left out: Kubernetes' service links (SLO_CANARY_SERVICE_HOST
// and the like, for a Service named slo-canary or slo-canary-*) and the test
// suite's SLO_CANARY_TEST_*.
func ignoredEnv(keys []string, environ []string) []ignoredVar {
	known := make(map[string]bool, len(keys))
	names := make([]string, 0, len(keys))
	for _, k := range keys {
		known[EnvName(k)] = true
		names = append(names, EnvName(k))
	}
	slices.Sort(names)
	var out []ignoredVar
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix+"_") || strings.HasPrefix(name, EnvPrefix+"_TEST_") {
			continue
		}
		switch {
		case value == "":
			out = append(out, ignoredVar{name: name, empty: true})
		case !known[name] && !serviceLink.MatchString(name):
			out = append(out, ignoredVar{name: name, meant: closestName(name, names)})
		}
	}
	slices.SortFunc(out, func(a, b ignoredVar) int { return strings.Compare(a.name, b.name) })
	return out
}

// closestName returns the name of names that name is likely a typo of, as
// unknownKeyError does for a key of the file, or "".
func closestName(name string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToUpper(name), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// ignoredVar is an environment variable that set nothing.
type ignoredVar struct {
	name  string
	empty bool   // set but empty; else it names no key
	meant string // the variable likely meant, if it names no key
}

func (v ignoredVar) String() string {
	switch {
	case v.empty:
		return v.name + ": set but empty, ignored (an empty Secret or ConfigMap value?)"
	case v.meant != "":
		return fmt.Sprintf("%s: sets no config key, ignored (did you mean %s?)", v.name, v.meant)
	}
	return v.name + ": sets no config key (see check-config for the keys), ignored"
}

// serviceLink matches the variables Kubernetes sets in every pod for each
// Service of the namespace (unless enableServiceLinks is false): for one
// named slo-canary-x, SLO_CANARY_X_SERVICE_HOST, SLO_CANARY_X_SERVICE_PORT,
// SLO_CANARY_X_SERVICE_PORT_<NAME>, SLO_CANARY_X_PORT and
// SLO_CANARY_X_PORT_<N>_<PROTO>[_ADDR|_PORT|_PROTO].
var serviceLink = regexp.MustCompile(`_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)?)$`)
