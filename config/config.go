// Package config is slo-canary's one typed configuration tree: defaults, loading
// from a YAML file, SLO_CANARY_* environment variables and flags (viper),
// validation that names the offending key, and redaction of secrets.
package config

import (
	"time"
)

// Config is the whole configuration. Every key has a default (see Defaults), so
// every key can be overridden from the environment: canary.rate is
// SLO_CANARY_CANARY_RATE.
type Config struct {
	Log       Log                 `mapstructure:"log"`
	HTTP      HTTP                `mapstructure:"http"`
	Kafka     Kafka               `mapstructure:"kafka"`
	Canary    Canary              `mapstructure:"canary"`
	Observers map[string]Observer `mapstructure:"observers"`

	// Scheduled bursts and consumer-group lag: see bursts.go.
	Bursts      Bursts      `mapstructure:"bursts"`
	ConsumerLag ConsumerLag `mapstructure:"consumer_lag"`
	Queries     Queries     `mapstructure:"queries"` // query probes: see queries.go

	// Replicas coordinated through a Kafka consumer group: see coordination.go.
	Coordination Coordination `mapstructure:"coordination"`

	// ignoredEnv are SLO_CANARY_* variables of the environment that set no
	// key (a typo, a key that does not exist): warned about, never silent.
	ignoredEnv []ignoredVar
}

// Log configures log/slog.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // json, text, or auto (text on a terminal)
}

// HTTP configures the canary's own endpoint: /metrics, /healthz, /readyz.
type HTTP struct {
	Listen        string `mapstructure:"listen"`
	WebConfigFile string `mapstructure:"web_config_file"` // TLS and basic auth: see webconfig.go
	// PProf serves /debug/pprof/ too. Off by default: whoever reaches the
	// port could start CPU profiles and traces of the canary.
	PProf bool `mapstructure:"pprof"`
}

// Kafka is the connection to the pipeline's Kafka cluster.
type Kafka struct {
	Brokers        []string      `mapstructure:"brokers"`
	ClientID       string        `mapstructure:"client_id"`
	DialTimeout    time.Duration `mapstructure:"dial_timeout"`
	RequestTimeout time.Duration `mapstructure:"request_timeout"`
	// SASL: mechanism "" (off), PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. Password
	// only from the environment or PasswordFile.
	SASL SASL `mapstructure:"sasl"`
	TLS  TLS  `mapstructure:"tls"`
}

// SASL credentials. Password is a secret.
type SASL struct {
	Mechanism    string `mapstructure:"mechanism"`
	Username     string `mapstructure:"username"`
	Password     Secret `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
}

// TLS for a client connection.
type TLS struct {
	Enabled            bool   `mapstructure:"enabled"`
	CAFile             string `mapstructure:"ca_file"`
	CertFile           string `mapstructure:"cert_file"`
	KeyFile            string `mapstructure:"key_file"`
	ServerName         string `mapstructure:"server_name"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
}

// Canary configures the marker injector and the tracker.
type Canary struct {
	// Instance names this canary. It must be stable across restarts (not a pod
	// name) and distinct per replica: a restarted canary finds its own
	// in-flight markers in the ingest topic by it.
	Instance string `mapstructure:"instance"`
	Topic    string `mapstructure:"topic"`
	// Encoding of marker events: avro (SLO-Scout's canonical) or json.
	Encoding string `mapstructure:"encoding"`
	// Rate is markers per second per partition; 0 disables injection.
	Rate float64 `mapstructure:"rate"`
	// MaxRate caps markers per second over all partitions, whatever the topic's size.
	MaxRate float64 `mapstructure:"max_rate"`

	ServiceName string `mapstructure:"service_name"`
	Environment string `mapstructure:"environment"`
	EventType   string `mapstructure:"event_type"`
	Severity    string `mapstructure:"severity"`

	Compression     string        `mapstructure:"compression"` // none, gzip, snappy, lz4, zstd
	ProduceTimeout  time.Duration `mapstructure:"produce_timeout"`
	MetadataRefresh time.Duration `mapstructure:"metadata_refresh"`

	// Deadline after which a marker not seen at a stage is lost.
	Deadline time.Duration `mapstructure:"deadline"`
	// FreshnessBudget is the SLO threshold: a marker seen within it is good.
	FreshnessBudget time.Duration `mapstructure:"freshness_budget"`
	// LateWindow is how long after its deadline a lost marker is remembered, so
	// a late arrival or a duplicate is recognised as such.
	LateWindow time.Duration `mapstructure:"late_window"`
	// MaxTracked caps markers held in memory; markers beyond it are not sent and
	// are counted.
	MaxTracked int `mapstructure:"max_tracked"`

	Recovery Recovery `mapstructure:"recovery"`

	// StateFile, if set, is where the tracker is checkpointed (every
	// CheckpointInterval and at exit), so a restarted canary resumes exactly
	// where it stopped: nothing counted twice, nothing forgotten. Keep it on a
	// volume that survives container restarts (an emptyDir does).
	StateFile          string        `mapstructure:"state_file"`
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval"`

	// ShutdownTimeout bounds the wait for in-flight produces on exit.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
}

// Recovery reads the canary's own recent markers back from the ingest topic at
// start, so markers sent before a restart are still resolved.
type Recovery struct {
	Enabled    bool          `mapstructure:"enabled"`
	MaxRecords int           `mapstructure:"max_records"`
	Timeout    time.Duration `mapstructure:"timeout"`
}

// Observer is one named stage where markers are looked for.
type Observer struct {
	Enabled      bool          `mapstructure:"enabled"`
	Type         string        `mapstructure:"type"` // sql or kafka
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// PollTimeout bounds one Observe call.
	PollTimeout time.Duration `mapstructure:"poll_timeout"`
	BatchSize   int           `mapstructure:"batch_size"`
	// Deadline overrides canary.deadline for this stage (0: use it). A stage
	// behind an hour-long aggregation window needs a longer one.
	Deadline time.Duration `mapstructure:"deadline"`
	SQL      SQLObserver   `mapstructure:"sql"`
	Kafka    KafkaObserver `mapstructure:"kafka"`
}

// SQLObserver polls a table for pending marker ids.
type SQLObserver struct {
	// DSN without a password (postgres://user@host:5432/db?sslmode=...).
	DSN          string `mapstructure:"dsn"`
	Password     Secret `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
	// Query takes $1 = uuid[] of pending ids and $2 = timestamptz lower bound,
	// and returns (event_id text, copies bigint) rows.
	Query            string        `mapstructure:"query"`
	StatementTimeout time.Duration `mapstructure:"statement_timeout"`
	// MaxConns bounds the pool.
	MaxConns int32 `mapstructure:"max_conns"`
}

// KafkaObserver consumes a topic (downstream, or the ingest topic itself for a
// pure Kafka round trip) and extracts marker ids from its records. It uses the
// kafka section's connection and no consumer group: it observes, it does not own.
type KafkaObserver struct {
	Topic string `mapstructure:"topic"`
	// Extract: "avro" (TelemetryEvent event_id), "json" (the field named by
	// Field: a string or an array of strings, e.g. sample_event_ids), or
	// "header" (the header named by Field).
	Extract string `mapstructure:"extract"`
	Field   string `mapstructure:"field"`
	// MaxRecordBytes: larger records are skipped and counted.
	MaxRecordBytes int `mapstructure:"max_record_bytes"`
	// BufferSize caps sightings held between polls; overflow is counted.
	BufferSize int `mapstructure:"buffer_size"`
}

// Secret is a string that never prints. Its String, GoString and LogValue are
// redacted; use Reveal to read it.
type Secret string
