package config

import (
	"slices"
	"time"
)

// DefaultQuery looks pending markers up in SLO-Scout's telemetry_events. The
// lower bound on "timestamp" (event time, the hypertable's time column) lets
// TimescaleDB exclude old chunks; without it every lookup scans them all.
const DefaultQuery = `SELECT event_id::text, count(*) FROM telemetry_events WHERE event_id = ANY($1::uuid[]) AND "timestamp" >= $2 GROUP BY event_id`

// Defaults is the configuration with nothing set: it targets an SLO-Scout
// installation as its Helm chart names things, in namespace slo-scout.
func Defaults() Config {
	database := ObserverDefaults()
	database.Type = "sql"
	database.SQL.DSN = "postgres://slo_canary@slo-scout-timescaledb:5432/slo_scout?sslmode=prefer"
	database.SQL.Query = DefaultQuery

	capsules := ObserverDefaults()
	capsules.Enabled = false
	capsules.Type = "kafka"
	// Capsules close with their 1-hour event-time window plus 10 minutes of
	// allowed lateness, so a marker cannot appear there before ~70 minutes.
	capsules.Deadline = 75 * time.Minute
	capsules.Kafka.Topic = "capsule-events"
	capsules.Kafka.Extract = "json"
	capsules.Kafka.Field = "sample_event_ids"

	return Config{
		Log:  Log{Level: "info", Format: "auto"},
		HTTP: HTTP{Listen: ":9464"},
		Kafka: Kafka{
			Brokers:        []string{"slo-scout-kafka:9092"},
			ClientID:       "slo-canary",
			DialTimeout:    10 * time.Second,
			RequestTimeout: 30 * time.Second,
		},
		Canary: Canary{
			Instance:        "slo-canary",
			Topic:           "raw-telemetry",
			Encoding:        "avro",
			Rate:            1,
			MaxRate:         100,
			ServiceName:     "slo-canary",
			Environment:     "prod",
			EventType:       "log",
			Severity:        "INFO",
			Compression:     "snappy",
			ProduceTimeout:  10 * time.Second,
			MetadataRefresh: 30 * time.Second,
			Deadline:        5 * time.Minute,
			FreshnessBudget: 60 * time.Second,
			LateWindow:      15 * time.Minute,
			MaxTracked:      200000,
			Recovery: Recovery{
				Enabled:    true,
				MaxRecords: 2000000,
				Timeout:    60 * time.Second,
			},
			CheckpointInterval: 5 * time.Second,
			ShutdownTimeout:    10 * time.Second,
		},
		Observers: map[string]Observer{
			"database": database,
			"capsules": capsules,
		},
		Bursts:      BurstsDefaults(),
		ConsumerLag: ConsumerLagDefaults(),
		Queries:     QueriesDefaults(),

		Coordination: CoordinationDefaults(),
	}
}

// ObserverDefaults are the values an observer added in the file or the
// environment starts from. Type, DSN, query, topic and extraction have no
// sensible default and must be set.
func ObserverDefaults() Observer {
	return Observer{
		Enabled:      true,
		PollInterval: time.Second,
		PollTimeout:  10 * time.Second,
		BatchSize:    500,
		SQL: SQLObserver{
			StatementTimeout: 5 * time.Second,
			MaxConns:         2,
		},
		Kafka: KafkaObserver{
			MaxRecordBytes: 1 << 20,
			BufferSize:     100000,
		},
	}
}

// EffectiveDeadline is the deadline that applies at this stage: its own, or
// global (canary.deadline) when it has none.
func (o Observer) EffectiveDeadline(global time.Duration) time.Duration {
	if o.Deadline > 0 {
		return o.Deadline
	}
	return global
}

// EnabledObservers returns the names of the enabled observers, sorted.
func (c *Config) EnabledObservers() []string {
	var names []string
	for name, o := range c.Observers {
		if o.Enabled {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
