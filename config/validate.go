package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// problems collects validation errors, one per key and problem, so the user
// fixes them all in one round.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

func (p *problems) positive(key string, d time.Duration) {
	if d <= 0 {
		p.add(key, "must be positive, got %s", d)
	}
}

func (p *problems) oneOf(key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		p.add(key, "unknown value %q (one of: %s)", v, strings.Join(allowed, ", "))
	}
}

// Validate checks the whole configuration. The error joins one error per
// problem (errors.Join), each naming its key, so a CLI prints one per line.
func (c *Config) Validate() error {
	var p problems
	c.Log.validate(&p)
	c.HTTP.validate(&p)
	c.Kafka.validate(&p)
	c.Canary.validate(&p)
	c.validateObservers(&p)
	c.Bursts.validate(&p, c)
	c.ConsumerLag.validate(&p)
	c.Queries.validate(&p)
	c.Coordination.validate(&p)
	return errors.Join(p...)
}

func (l Log) validate(p *problems) {
	p.oneOf("log.level", l.Level, "debug", "info", "warn", "error")
	p.oneOf("log.format", l.Format, "json", "text", "auto")
}

func (h HTTP) validate(p *problems) {
	if _, port, err := net.SplitHostPort(h.Listen); err != nil {
		p.add("http.listen", "%q is not [host]:port", h.Listen)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p.add("http.listen", "invalid port %q", port)
	}
	h.validateWebConfig(p) // webconfig.go
}

func (k Kafka) validate(p *problems) {
	if len(k.Brokers) == 0 {
		p.add("kafka.brokers", "empty: at least one host:port is required")
	}
	for i, b := range k.Brokers {
		host, port, err := net.SplitHostPort(b)
		n, perr := strconv.ParseUint(port, 10, 16)
		if err != nil || host == "" || perr != nil || n == 0 {
			p.add(fmt.Sprintf("kafka.brokers[%d]", i), "%q is not host:port", b)
		}
	}
	if k.ClientID == "" {
		p.add("kafka.client_id", "must not be empty")
	}
	p.positive("kafka.dial_timeout", k.DialTimeout)
	p.positive("kafka.request_timeout", k.RequestTimeout)

	s := k.SASL
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.Password != "" {
			p.add("kafka.sasl.mechanism", "empty, but a username or password is set: set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if s.Username == "" {
			p.add("kafka.sasl.username", "required by mechanism %s", s.Mechanism)
		}
		if s.Password == "" {
			p.add("kafka.sasl.password", "required by mechanism %s: set %s or kafka.sasl.password_file",
				s.Mechanism, EnvName("kafka.sasl.password"))
		}
	default:
		p.add("kafka.sasl.mechanism", "unknown mechanism %q (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, or empty for none)", s.Mechanism)
	}

	t := k.TLS
	if t.CertFile != "" && t.KeyFile == "" {
		p.add("kafka.tls.key_file", "required with kafka.tls.cert_file")
	}
	if t.KeyFile != "" && t.CertFile == "" {
		p.add("kafka.tls.cert_file", "required with kafka.tls.key_file")
	}
	if !t.Enabled {
		// A CA or certificate given with TLS off would quietly connect in
		// plain text.
		for _, f := range []struct {
			key string
			set bool
		}{
			{"ca_file", t.CAFile != ""}, {"cert_file", t.CertFile != ""}, {"key_file", t.KeyFile != ""},
			{"server_name", t.ServerName != ""}, {"insecure_skip_verify", t.InsecureSkipVerify},
		} {
			if f.set {
				p.add("kafka.tls.enabled", "false, but kafka.tls.%s is set: enable TLS or unset it", f.key)
			}
		}
	}
}

var (
	// Instance names go into record headers, event attributes and metric
	// labels: keep them plain.
	instanceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	topicRE    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)
)

func validTopic(t string) bool { return topicRE.MatchString(t) && t != "." && t != ".." }

func (c Canary) validate(p *problems) {
	if !instanceRE.MatchString(c.Instance) {
		p.add("canary.instance", "%q must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", c.Instance)
	}
	if !validTopic(c.Topic) {
		p.add("canary.topic", "%q is not a valid Kafka topic name", c.Topic)
	}
	p.oneOf("canary.encoding", c.Encoding, "avro", "json")
	switch {
	case math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Rate < 0:
		p.add("canary.rate", "must be 0 (no injection) or more, got %v", c.Rate)
	case c.Rate > 0 && (c.MaxRate <= 0 || math.IsNaN(c.MaxRate) || math.IsInf(c.MaxRate, 0)):
		p.add("canary.max_rate", "must be positive when canary.rate is, got %v", c.MaxRate)
	}
	if c.ServiceName == "" {
		p.add("canary.service_name", "must not be empty")
	}
	if c.Encoding == "avro" {
		// The Avro schema declares these as enums; any other value cannot be
		// encoded at all.
		p.oneOf("canary.environment", c.Environment, "prod", "staging", "dev")
		p.oneOf("canary.event_type", c.EventType, "log", "trace", "metric")
	} else {
		if c.Environment == "" {
			p.add("canary.environment", "must not be empty")
		}
		if c.EventType == "" {
			p.add("canary.event_type", "must not be empty")
		}
	}
	if c.Severity != "" {
		p.oneOf("canary.severity", c.Severity, "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
	}
	p.oneOf("canary.compression", c.Compression, "none", "gzip", "snappy", "lz4", "zstd")
	p.positive("canary.produce_timeout", c.ProduceTimeout)
	p.positive("canary.metadata_refresh", c.MetadataRefresh)
	p.positive("canary.deadline", c.Deadline)
	p.positive("canary.freshness_budget", c.FreshnessBudget)
	if c.FreshnessBudget > c.Deadline && c.Deadline > 0 {
		p.add("canary.freshness_budget", "%s is longer than canary.deadline %s: markers would be declared lost before they could miss the budget", c.FreshnessBudget, c.Deadline)
	}
	if c.LateWindow < 0 {
		p.add("canary.late_window", "must not be negative, got %s", c.LateWindow)
	}
	if c.MaxTracked < 1 {
		p.add("canary.max_tracked", "must be at least 1, got %d", c.MaxTracked)
	}
	if c.StateFile != "" {
		p.positive("canary.checkpoint_interval", c.CheckpointInterval)
	}
	if c.Recovery.Enabled {
		if c.Recovery.MaxRecords < 1 {
			p.add("canary.recovery.max_records", "must be at least 1 when recovery is enabled, got %d", c.Recovery.MaxRecords)
		}
		p.positive("canary.recovery.timeout", c.Recovery.Timeout)
	}
	p.positive("canary.shutdown_timeout", c.ShutdownTimeout)
}

// sqlFirstParam finds $1 but not $10.
var sqlFirstParam = regexp.MustCompile(`\$1([^0-9]|$)`)

func (c *Config) validateObservers(p *problems) {
	if len(c.EnabledObservers()) == 0 {
		p.add("observers", "no observer is enabled, so nothing would be measured: enable at least one")
	}
	names := make([]string, 0, len(c.Observers))
	for name := range c.Observers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		o := c.Observers[name]
		key := "observers." + name
		if !observerNameRE.MatchString(name) {
			p.add("observers", "invalid name %q: it must match %s (it becomes a metric label value)", name, observerNameRE)
			continue
		}
		p.positive(key+".poll_interval", o.PollInterval)
		p.positive(key+".poll_timeout", o.PollTimeout)
		if o.BatchSize < 1 {
			p.add(key+".batch_size", "must be at least 1, got %d", o.BatchSize)
		}
		if o.Deadline < 0 {
			p.add(key+".deadline", "must not be negative (0 uses canary.deadline), got %s", o.Deadline)
		} else if o.Deadline > 0 && o.Deadline < c.Canary.FreshnessBudget {
			p.add(key+".deadline", "%s is shorter than canary.freshness_budget %s", o.Deadline, c.Canary.FreshnessBudget)
		}
		switch o.Type {
		case "sql":
			o.SQL.validate(p, key+".sql")
		case "kafka":
			o.Kafka.validate(p, key+".kafka")
		case "":
			p.add(key+".type", "required: sql or kafka")
		default:
			p.add(key+".type", "unknown type %q (sql or kafka)", o.Type)
		}
	}
}

func (s SQLObserver) validate(p *problems, key string) {
	if s.DSN == "" {
		p.add(key+".dsn", "required")
	} else if _, err := pgx.ParseConfig(s.DSN); err != nil {
		p.add(key+".dsn", "invalid DSN %s: %s", RedactDSN(s.DSN), dsnErrorText(s.DSN, err))
	}
	switch {
	case strings.TrimSpace(s.Query) == "":
		p.add(key+".query", "required")
	case !sqlFirstParam.MatchString(s.Query):
		p.add(key+".query", "must use $1 (the uuid[] of pending marker ids)")
	}
	p.positive(key+".statement_timeout", s.StatementTimeout)
	if s.MaxConns < 1 {
		p.add(key+".max_conns", "must be at least 1, got %d", s.MaxConns)
	}
}

// dsnErrorText explains why pgx cannot parse dsn without repeating a password
// that dsn may hold: pgx's own message quotes the DSN, redacted only on a best
// effort basis, and net/url quotes it whole.
func dsnErrorText(dsn string, err error) string {
	const generic = "cannot be parsed"
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		return generic
	}
	cp := *pce
	cp.ConnString = ""
	msg := strings.TrimPrefix(cp.Error(), "cannot parse ``: ")
	quoted := strconv.Quote(dsn)
	msg = strings.ReplaceAll(msg, quoted[1:len(quoted)-1], "<dsn>")
	msg = strings.ReplaceAll(msg, dsn, "<dsn>")
	pw, found, _ := dsnPassword(dsn)
	if found && pw != "" && strings.Contains(msg, pw) {
		return generic
	}
	if !found && strings.Contains(msg, "@") {
		// A password we failed to spot could still be in there.
		return generic
	}
	return msg
}

func (k KafkaObserver) validate(p *problems, key string) {
	if k.Topic == "" {
		p.add(key+".topic", "required")
	} else if !validTopic(k.Topic) {
		p.add(key+".topic", "%q is not a valid Kafka topic name", k.Topic)
	}
	switch k.Extract {
	case "avro":
	case "json", "header":
		if k.Field == "" {
			p.add(key+".field", "required with extract %q: the %s holding the marker id(s)", k.Extract,
				map[string]string{"json": "JSON field", "header": "record header"}[k.Extract])
		}
	case "":
		p.add(key+".extract", "required: avro, json or header")
	default:
		p.add(key+".extract", "unknown value %q (one of: avro, json, header)", k.Extract)
	}
	if k.MaxRecordBytes < 1 {
		p.add(key+".max_record_bytes", "must be at least 1, got %d", k.MaxRecordBytes)
	}
	if k.BufferSize < 1 {
		p.add(key+".buffer_size", "must be at least 1, got %d", k.BufferSize)
	}
}
