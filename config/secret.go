package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
)

// redacted replaces a secret wherever the configuration is shown.
const redacted = "<redacted>"

// dsnRedacted replaces a password inside a DSN. It is what net/url's Redacted
// and pgx write, and it keeps a URL DSN a valid URL.
const dsnRedacted = "xxxxx"

// String is "<redacted>", or "" for an empty secret so that a missing secret
// still shows as missing.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// Format redacts under every verb. Without it, a verb a string does not
// support (%d) makes fmt print the underlying string in its error text.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// LogValue redacts the secret in log/slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText redacts the secret in encoding/json and other text encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML redacts the secret in YAML.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// Reveal returns the secret itself, for the one place that needs it (a client
// connecting).
func (s Secret) Reveal() string { return string(s) }

// RedactDSN returns dsn with any password it contains replaced by "xxxxx", for
// both URL (postgres://user:pw@host/db) and keyword/value (password=pw) forms.
// A DSN too malformed to tell where a password would be is replaced whole.
func RedactDSN(dsn string) string {
	if isURLDSN(dsn) {
		u, err := url.Parse(dsn)
		if err == nil {
			_, inUser := u.User.Password()
			q := u.Query()
			if !inUser && !q.Has("password") {
				return dsn
			}
			if inUser {
				u.User = url.UserPassword(u.User.Username(), dsnRedacted)
			}
			if q.Has("password") {
				q.Set("password", dsnRedacted)
				u.RawQuery = q.Encode()
			}
			return u.String()
		}
		if strings.Contains(strings.ToLower(dsn), "password=") {
			return redacted
		}
		// Unparseable: userinfo ends at the last '@', and its password
		// follows its first ':' (as pgx's own redaction reads it).
		scheme := strings.Index(dsn, "://") + 3
		at := strings.LastIndex(dsn, "@")
		if at < scheme {
			return dsn // no userinfo, so no password
		}
		user, _, found := strings.Cut(dsn[scheme:at], ":")
		if !found {
			return dsn
		}
		return dsn[:scheme] + user + ":" + dsnRedacted + dsn[at:]
	}
	kvs, ok := parseKeywordValue(dsn)
	if !ok {
		if strings.Contains(strings.ToLower(dsn), "password") {
			return redacted
		}
		return dsn
	}
	var b strings.Builder
	last := 0
	for _, kv := range kvs {
		if kv.key != "password" {
			continue
		}
		b.WriteString(dsn[last:kv.start])
		b.WriteString(dsnRedacted)
		last = kv.end
	}
	b.WriteString(dsn[last:])
	return b.String()
}

// dsnPassword returns the password written into dsn. found reports whether
// there is one; certain is false when dsn is too malformed to be sure, in which
// case found errs on the side of yes.
func dsnPassword(dsn string) (pw string, found, certain bool) {
	if isURLDSN(dsn) {
		u, err := url.Parse(dsn)
		if err == nil {
			pw, found = urlPassword(u)
			return pw, found, true
		}
		if strings.Contains(strings.ToLower(dsn), "password=") {
			return "", true, false
		}
		// Userinfo ends at the last '@'; its password follows its first ':'
		// (as pgx's own redaction reads it).
		rest := dsn[strings.Index(dsn, "://")+3:]
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			return "", false, false
		}
		_, pw, found = strings.Cut(rest[:at], ":")
		return pw, found, false
	}
	kvs, ok := parseKeywordValue(dsn)
	for _, kv := range kvs {
		if kv.key == "password" {
			pw, found = kv.value, true
		}
	}
	if !ok && !found && strings.Contains(strings.ToLower(dsn), "password") {
		found = true
	}
	return pw, found, ok
}

// urlPassword finds the password of a URL DSN: in its userinfo, or in a
// password query parameter, which pgx accepts too and which wins.
func urlPassword(u *url.URL) (string, bool) {
	if q := u.Query(); q.Has("password") {
		return q.Get("password"), true
	}
	return u.User.Password()
}

func isURLDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// keywordValue is one key=value pair of a libpq keyword/value DSN; start and
// end delimit the value as written (quotes included).
type keywordValue struct {
	key, value string
	keyStart   int
	start, end int
}

// parseKeywordValue splits a libpq keyword/value connection string: values are
// bare words or single-quoted, and a backslash escapes the next character in
// both. ok is false if the string is malformed; the pairs read so far are
// returned anyway.
func parseKeywordValue(s string) (kvs []keywordValue, ok bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return kvs, true
		}
		k := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[k:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) || s[i] != '=' || key == "" {
			return kvs, false
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		start := i
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				i++
				if c == '\'' {
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return append(kvs, keywordValue{key: key, value: val.String(), keyStart: k, start: start, end: i}), false
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		kvs = append(kvs, keywordValue{key: key, value: val.String(), keyStart: k, start: start, end: i})
	}
}

// splitDSNPassword removes the password from a well-formed dsn and returns it.
// ok is false if dsn holds no password or is too malformed to edit safely.
func splitDSNPassword(dsn string) (stripped string, pw Secret, ok bool) {
	if isURLDSN(dsn) {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn, "", false
		}
		p, found := urlPassword(u)
		if !found {
			return dsn, "", false
		}
		if u.User != nil {
			u.User = url.User(u.User.Username())
		}
		if q := u.Query(); q.Has("password") {
			q.Del("password")
			u.RawQuery = q.Encode()
		}
		return u.String(), Secret(p), true
	}
	kvs, wellFormed := parseKeywordValue(dsn)
	if !wellFormed {
		return dsn, "", false
	}
	var b strings.Builder
	last := 0
	for _, kv := range kvs {
		if kv.key != "password" {
			continue
		}
		b.WriteString(dsn[last:kv.keyStart])
		last = kv.end
		for last < len(dsn) && strings.ContainsRune(" \t\n\r\f\v", rune(dsn[last])) {
			last++
		}
		pw = Secret(kv.value)
		ok = true
	}
	b.WriteString(dsn[last:])
	return strings.TrimSpace(b.String()), pw, ok
}
