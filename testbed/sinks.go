package testbed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Schema is SLO-Scout's newer raw-event schema as the contract gives it, on
// plain PostgreSQL (no TimescaleDB: the hypertable only changes how rows are
// stored). Every statement is idempotent.
const Schema = `
CREATE TABLE IF NOT EXISTS services (
	id   serial PRIMARY KEY,
	name text UNIQUE NOT NULL
);
DO $$ BEGIN
	CREATE TYPE telemetry_event_type AS ENUM ('log', 'trace', 'metric');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
	CREATE TYPE telemetry_severity AS ENUM ('debug', 'info', 'warning', 'error', 'critical');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
CREATE TABLE IF NOT EXISTS telemetry_events (
	event_id        uuid                 NOT NULL,
	"timestamp"     timestamptz          NOT NULL,
	service_id      integer              NOT NULL REFERENCES services (id),
	event_type      telemetry_event_type NOT NULL,
	severity        telemetry_severity,
	message         text,
	trace_id        text,
	span_id         text,
	attributes      jsonb                NOT NULL DEFAULT '{}',
	raw_blob_s3_key text,
	PRIMARY KEY (event_id, "timestamp")
);
CREATE INDEX IF NOT EXISTS telemetry_events_timestamp_idx ON telemetry_events ("timestamp" DESC);
`

// CreateSchema creates Schema on db. An advisory lock serialises concurrent
// creators, which IF NOT EXISTS alone does not (CREATE TYPE races).
func CreateSchema(ctx context.Context, db *pgxpool.Pool) error {
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7355608)"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, Schema)
		return err
	})
	if err != nil {
		return fmt.Errorf("testbed: create SLO-Scout schema: %w", err)
	}
	return nil
}

const insertEvents = `
INSERT INTO telemetry_events
	(event_id, "timestamp", service_id, event_type, severity, message, trace_id, span_id, attributes, raw_blob_s3_key)
SELECT u.id, u.ts, u.svc, u.et::telemetry_event_type, u.sev::telemetry_severity, u.msg, u.tr, u.sp, u.attrs, u.raw
FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[])
	AS u(id, ts, svc, et, sev, msg, tr, sp, attrs, raw)
ON CONFLICT DO NOTHING
RETURNING event_id`

// writeDB is the database sink: it writes whatever has been released since its
// last write in one multi-row INSERT per transaction, so batches grow with the
// load. A failed write is retried until it succeeds (back-pressure, never loss).
func (p *Pipeline) writeDB(ctx context.Context, in <-chan []*item) error {
	services := make(map[string]int32)
	for {
		var batch []*item
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-in:
			batch = b
		}
	drain:
		for len(batch) < p.cfg.MaxBatchRows {
			select {
			case b := <-in:
				batch = append(batch, b...)
			default:
				break drain
			}
		}
		backoff := 100 * time.Millisecond
		for {
			err := p.insert(ctx, services, batch)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.stats.dbErrors.Add(1)
			p.log.Warn("database write failed, retrying", "rows", len(batch), "backoff", backoff, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second) // a local test database: retry soon
		}
	}
}

func (p *Pipeline) insert(ctx context.Context, services map[string]int32, batch []*item) error {
	if err := p.resolveServices(ctx, services, batch); err != nil {
		return err
	}
	n := len(batch)
	var (
		ids   = make([]uuid.UUID, n)
		ts    = make([]time.Time, n)
		svc   = make([]int32, n)
		et    = make([]string, n)
		sev   = make([]*string, n)
		msg   = make([]*string, n)
		tr    = make([]*string, n)
		sp    = make([]*string, n)
		attrs = make([]string, n)
		raw   = make([]*string, n)
	)
	for i, it := range batch {
		e := it.ev
		ids[i], ts[i], svc[i], et[i], sev[i] = e.id, e.ev.Timestamp, services[e.ev.ServiceName], e.eventType, e.severity
		msg[i], tr[i], sp[i], attrs[i], raw[i] = e.ev.Message, e.ev.TraceID, e.ev.SpanID, string(e.attrs), e.ev.RawBlobS3Key
	}
	inserted := make(map[uuid.UUID]int)
	err := pgx.BeginFunc(ctx, p.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, insertEvents, ids, ts, svc, et, sev, msg, tr, sp, attrs, raw)
		if err != nil {
			return err
		}
		var id uuid.UUID
		_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
			inserted[id]++
			return nil
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("insert %d rows into telemetry_events: %w", n, err)
	}
	// The COMMIT has returned: the rows are visible to every other session.
	now := time.Now().UnixNano()
	rowsIn := 0
	for id, c := range inserted {
		rowsIn += c
		p.truth.update(id, func(e *truthEntry) { e.dbCopies += uint16(c) })
	}
	for _, it := range batch {
		p.truth.update(it.ev.id, func(e *truthEntry) {
			if e.dbVisible == 0 {
				e.dbVisible = now
			}
		})
		it.ev.node.finish()
	}
	p.stats.dbRows.Add(int64(rowsIn))
	p.stats.dbConflicts.Add(int64(n - rowsIn))
	return nil
}

// resolveServices fills the name -> services.id cache for the batch's services.
func (p *Pipeline) resolveServices(ctx context.Context, cache map[string]int32, batch []*item) error {
	var names []string
	seen := make(map[string]bool)
	for _, it := range batch {
		name := it.ev.ev.ServiceName
		if _, ok := cache[name]; !ok && !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	// DO UPDATE, not DO NOTHING, so RETURNING yields ids of existing rows too.
	rows, err := p.db.Query(ctx, `INSERT INTO services (name) SELECT unnest($1::text[])
		ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id, name`, names)
	if err != nil {
		return fmt.Errorf("upsert services: %w", err)
	}
	var (
		id   int32
		name string
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &name}, func() error {
		cache[name] = id
		return nil
	}); err != nil {
		return fmt.Errorf("upsert services: %w", err)
	}
	return nil
}

// CapsuleEvent is what the pipeline forwards to the capsule topic, as JSON. It
// is a simplification of SLO-Scout's CapsuleEvent: one capsule per event
// (count 1, the event its only sample) with the raw message as template, where
// the real fingerprinting masks variable tokens and aggregates per template and
// hour. A canary marker has a template of its own, so for markers the two agree
// on everything the canary reads: the event id in sample_event_ids.
type CapsuleEvent struct {
	FingerprintHash string    `json:"fingerprint_hash"` // SHA-256 hex of Template
	Template        string    `json:"template"`
	ServiceName     string    `json:"service_name"`
	Severity        *string   `json:"severity"` // as the event had it (e.g. "INFO")
	Count           int       `json:"count"`
	SampleEventIDs  []string  `json:"sample_event_ids"`
	TimeBucket      time.Time `json:"time_bucket"` // event time truncated to the hour
	FirstSeenAt     time.Time `json:"first_seen_at"`
	LastSeenAt      time.Time `json:"last_seen_at"`
}

func capsuleOf(e *event) CapsuleEvent {
	var tmpl string
	if e.ev.Message != nil {
		tmpl = *e.ev.Message
	}
	sum := sha256.Sum256([]byte(tmpl))
	ts := e.ev.Timestamp.UTC()
	return CapsuleEvent{
		FingerprintHash: hex.EncodeToString(sum[:]),
		Template:        tmpl,
		ServiceName:     e.ev.ServiceName,
		Severity:        e.ev.Severity,
		Count:           1,
		SampleEventIDs:  []string{e.id.String()},
		TimeBucket:      ts.Truncate(time.Hour),
		FirstSeenAt:     ts,
		LastSeenAt:      ts,
	}
}

// forward is the Kafka sink: it produces a capsule per delivery
// asynchronously; the acknowledgement, not the send, is the visibility time.
func (p *Pipeline) forward(ctx context.Context, in <-chan []*item) error {
	for {
		var batch []*item
		select {
		case <-ctx.Done():
			return ctx.Err()
		case batch = <-in:
		}
		for _, it := range batch {
			e := it.ev
			c := capsuleOf(e)
			v, err := json.Marshal(c)
			if err != nil { // cannot happen for this struct; never lose the offset
				p.stats.forwardErrors.Add(1)
				e.node.finish()
				continue
			}
			r := &kgo.Record{Key: []byte(c.FingerprintHash), Value: v, Partition: e.partition % p.cfg.Partitions}
			p.producer.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					p.stats.forwardErrors.Add(1)
					if ctx.Err() == nil {
						p.log.Warn("forward failed", "event_id", e.id, "err", err)
					}
				} else {
					now := time.Now().UnixNano()
					p.stats.forwarded.Add(1)
					p.truth.update(e.id, func(te *truthEntry) {
						te.fwdCopies++
						if te.fwd == 0 {
							te.fwd = now
						}
					})
				}
				e.node.finish()
			})
		}
	}
}
