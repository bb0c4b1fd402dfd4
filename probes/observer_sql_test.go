package probes_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
)

// schema is the part of SLO-Scout's telemetry_events the default query reads.
const schema = `CREATE TABLE telemetry_events (
	event_id uuid NOT NULL,
	"timestamp" timestamptz NOT NULL,
	message text,
	PRIMARY KEY (event_id, "timestamp"))`

// pgExec runs statements as the superuser (the observer itself cannot write).
func pgExec(t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// insert adds one row per id with the given event time.
func insert(t *testing.T, dsn, table string, ts time.Time, ids ...uuid.UUID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, id := range ids {
		if _, err := conn.Exec(ctx, `INSERT INTO `+table+` (event_id, "timestamp") VALUES ($1, $2)`, id, ts); err != nil {
			t.Fatalf("insert %s: %v", id, err)
		}
	}
}

// withParam adds a run-time parameter to a URL or keyword/value DSN.
func withParam(dsn, k, v string) string {
	switch {
	case !strings.Contains(dsn, "://"):
		return dsn + " " + k + "=" + v
	case strings.Contains(dsn, "?"):
		return dsn + "&" + k + "=" + v
	default:
		return dsn + "?" + k + "=" + v
	}
}

func newIDs(n int) []uuid.UUID {
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.New()
	}
	return ids
}

func newSQL(t *testing.T, dsn string, batch int, mod func(*config.SQLObserver)) *probes.SQL {
	t.Helper()
	cfg := config.SQLObserver{DSN: dsn, StatementTimeout: 5 * time.Second, MaxConns: 2}
	if mod != nil {
		mod(&cfg)
	}
	s, err := probes.NewSQL(context.Background(), "db", cfg, batch, nil)
	if err != nil {
		t.Fatalf("NewSQL: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func observe(t *testing.T, o probes.Observer, q probes.Query) ([]probes.Sighting, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return o.Observe(ctx, q)
}

func sightingIDs(ss []probes.Sighting) []uuid.UUID {
	out := make([]uuid.UUID, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	slices.SortFunc(out, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	return out
}

func sortedIDs(ids []uuid.UUID) []uuid.UUID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	return out
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	var pe *probes.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not a *probes.Error", err)
	}
	if pe.Reason != reason {
		t.Fatalf("reason %q, want %q (err: %v)", pe.Reason, reason, err)
	}
}

// TestSQL runs against one real server; each subtest has its own tables.
func TestSQL(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDSN(t)
	pgExec(t, dsn, schema, `CREATE TABLE dup_events (event_id uuid NOT NULL, "timestamp" timestamptz NOT NULL)`)
	now := time.Now()
	since := now.Add(-time.Hour)

	t.Run("finds exactly the pending ids", func(t *testing.T) {
		present := newIDs(5)
		insert(t, dsn, "telemetry_events", now, present...)
		pending := append(slices.Clone(present[:3]), newIDs(2)...) // 2 not in the table
		o := newSQL(t, dsn, 100, nil)
		got, err := observe(t, o, probes.Query{Pending: pending, Since: since})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sightingIDs(got), sortedIDs(present[:3])) {
			t.Fatalf("sightings %v, want %v", sightingIDs(got), present[:3])
		}
		for _, s := range got {
			if s.Copies != 1 || s.At.IsZero() || !s.SourceTime.IsZero() {
				t.Errorf("sighting %+v: want Copies 1, At set, no SourceTime", s)
			}
		}
		if st := o.Stats(); st.Queries != 1 || st.Rows != 3 || st.BadRows != 0 || st.Errors != 0 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("At is taken before the statement runs", func(t *testing.T) {
		id := newIDs(1)
		insert(t, dsn, "telemetry_events", now, id...)
		// A slow statement: At must be before it started, not after it ended.
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.Query = `SELECT event_id::text, count(*) FROM telemetry_events, pg_sleep(0.3) WHERE event_id = ANY($1::uuid[]) AND "timestamp" >= $2 GROUP BY event_id`
		})
		before := time.Now()
		got, err := observe(t, o, probes.Query{Pending: id, Since: since})
		after := time.Now()
		if err != nil || len(got) != 1 {
			t.Fatalf("got %v, %v", got, err)
		}
		if got[0].At.Before(before) || after.Sub(got[0].At) < 300*time.Millisecond {
			t.Fatalf("At %v not within [%v, end-300ms=%v]", got[0].At, before, after.Add(-300*time.Millisecond))
		}
	})

	t.Run("NotBefore is the poll that last looked", func(t *testing.T) {
		id := newIDs(1)
		insert(t, dsn, "telemetry_events", now, id...)
		o := newSQL(t, dsn, 100, nil)
		checked := time.Now().Add(-time.Second)
		got, err := observe(t, o, probes.Query{Pending: id, Since: since, Checked: checked})
		if err != nil || len(got) != 1 {
			t.Fatalf("got %v, %v", got, err)
		}
		if !got[0].NotBefore.Equal(checked) {
			t.Errorf("NotBefore %v, want Query.Checked %v", got[0].NotBefore, checked)
		}
	})

	t.Run("respects Since", func(t *testing.T) {
		old, recent := uuid.New(), uuid.New()
		insert(t, dsn, "telemetry_events", now.Add(-2*time.Hour), old)
		insert(t, dsn, "telemetry_events", now, recent)
		o := newSQL(t, dsn, 100, nil)
		got, err := observe(t, o, probes.Query{Pending: []uuid.UUID{old, recent}, Since: since})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ID != recent {
			t.Fatalf("got %v, want only %s", sightingIDs(got), recent)
		}
	})

	t.Run("nothing pending sends nothing", func(t *testing.T) {
		o := newSQL(t, dsn, 100, nil)
		got, err := observe(t, o, probes.Query{Since: since})
		if got != nil || err != nil || o.Stats().Queries != 0 {
			t.Fatalf("got %v, %v, stats %+v", got, err, o.Stats())
		}
	})

	t.Run("batches", func(t *testing.T) {
		ids := newIDs(10)
		insert(t, dsn, "telemetry_events", now, ids...)
		o := newSQL(t, dsn, 3, nil)
		got, err := observe(t, o, probes.Query{Pending: ids, Since: since})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sightingIDs(got), sortedIDs(ids)) {
			t.Fatalf("got %d sightings, want all 10", len(got))
		}
		if q := o.Stats().Queries; q != 4 {
			t.Fatalf("%d queries, want 4 (3+3+3+1)", q)
		}
	})

	t.Run("duplicates become copies", func(t *testing.T) {
		dup, single := uuid.New(), uuid.New()
		insert(t, dsn, "dup_events", now, dup, dup, dup, single)
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.Query = strings.ReplaceAll(config.DefaultQuery, "telemetry_events", "dup_events")
		})
		got, err := observe(t, o, probes.Query{Pending: []uuid.UUID{dup, single}, Since: since})
		if err != nil {
			t.Fatal(err)
		}
		copies := map[uuid.UUID]int{}
		for _, s := range got {
			copies[s.ID] += s.Copies
		}
		if len(got) != 2 || copies[dup] != 3 || copies[single] != 1 {
			t.Fatalf("copies %v, want %s:3 %s:1", copies, dup, single)
		}
	})

	t.Run("uuid column and int column", func(t *testing.T) {
		id := uuid.New()
		insert(t, dsn, "telemetry_events", now, id)
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.Query = `SELECT event_id, count(*)::int FROM telemetry_events WHERE event_id = ANY($1::uuid[]) AND "timestamp" >= $2 GROUP BY event_id`
		})
		got, err := observe(t, o, probes.Query{Pending: []uuid.UUID{id}, Since: since})
		if err != nil || len(got) != 1 || got[0].ID != id || got[0].Copies != 1 {
			t.Fatalf("got %v, %v", got, err)
		}
	})

	t.Run("text array parameter", func(t *testing.T) {
		// A query over a text[] column (capsules.sample_events) casts $1 so.
		id := uuid.New()
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.Query = `SELECT id, 1::bigint FROM unnest($1::text[]) AS id WHERE $2::timestamptz IS NOT NULL`
		})
		got, err := observe(t, o, probes.Query{Pending: []uuid.UUID{id}, Since: since})
		if err != nil || len(got) != 1 || got[0].ID != id {
			t.Fatalf("got %v, %v", got, err)
		}
	})

	t.Run("query without a time bound", func(t *testing.T) {
		id := uuid.New()
		insert(t, dsn, "telemetry_events", now.Add(-48*time.Hour), id)
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.Query = `SELECT event_id::text, count(*) FROM telemetry_events WHERE event_id = ANY($1::uuid[]) GROUP BY event_id`
		})
		got, err := observe(t, o, probes.Query{Pending: []uuid.UUID{id}, Since: since})
		if err != nil || len(got) != 1 || got[0].ID != id {
			t.Fatalf("got %v, %v", got, err)
		}
	})

	t.Run("zero copies means absent", func(t *testing.T) {
		ids := newIDs(2)
		insert(t, dsn, "telemetry_events", now, ids[0])
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.Query = `SELECT p.id::text, count(e.event_id) FROM unnest($1::uuid[]) AS p(id)
				LEFT JOIN telemetry_events e ON e.event_id = p.id AND e."timestamp" >= $2 GROUP BY p.id`
		})
		got, err := observe(t, o, probes.Query{Pending: ids, Since: since})
		if err != nil || len(got) != 1 || got[0].ID != ids[0] {
			t.Fatalf("got %v, %v", got, err)
		}
	})

	t.Run("connections are read-only and bounded", func(t *testing.T) {
		id := uuid.New()
		// Rows come back only if every setting is in force on the connection.
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.StatementTimeout = 1500 * time.Millisecond
			c.Query = `SELECT id::text, 1::bigint FROM unnest($1::uuid[]) AS id WHERE $2::timestamptz IS NOT NULL
				AND current_setting('default_transaction_read_only') = 'on'
				AND current_setting('transaction_read_only') = 'on'
				AND current_setting('statement_timeout') = '1500ms'
				AND current_setting('idle_in_transaction_session_timeout') = '1500ms'
				AND current_setting('application_name') = 'slo-canary'`
		})
		got, err := observe(t, o, probes.Query{Pending: []uuid.UUID{id}, Since: since})
		if err != nil || len(got) != 1 {
			t.Fatalf("settings not in force: got %v, %v", got, err)
		}
	})

	t.Run("a DSN cannot turn read-only off", func(t *testing.T) {
		id := uuid.New()
		o := newSQL(t, withParam(dsn, "default_transaction_read_only", "off"), 100, func(c *config.SQLObserver) {
			c.Query = `WITH ins AS (INSERT INTO telemetry_events (event_id, "timestamp") SELECT unnest($1::uuid[]), $2 RETURNING event_id)
				SELECT event_id::text, count(*) FROM ins GROUP BY event_id`
		})
		_, err := observe(t, o, probes.Query{Pending: []uuid.UUID{id}, Since: now})
		wantReason(t, err, "query")
		if !strings.Contains(err.Error(), "25006") {
			t.Errorf("error %v, want SQLSTATE 25006 (read_only_sql_transaction)", err)
		}
		if o.Stats().Errors != 1 {
			t.Errorf("stats %+v, want 1 error", o.Stats())
		}
		// Nothing was written: a fresh observer with the default query finds nothing.
		got, err := observe(t, newSQL(t, dsn, 100, nil), probes.Query{Pending: []uuid.UUID{id}, Since: since})
		if err != nil || len(got) != 0 {
			t.Fatalf("the insert went through: %v, %v", got, err)
		}
	})

	t.Run("statement timeout", func(t *testing.T) {
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.StatementTimeout = 200 * time.Millisecond
			c.Query = `SELECT event_id::text, count(*) FROM telemetry_events, pg_sleep(5) WHERE event_id = ANY($1::uuid[]) AND "timestamp" >= $2 GROUP BY event_id`
		})
		start := time.Now()
		_, err := observe(t, o, probes.Query{Pending: newIDs(1), Since: since})
		wantReason(t, err, "timeout")
		if !strings.Contains(err.Error(), "57014") {
			t.Errorf("error %v, want SQLSTATE 57014", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v; the statement timeout did not stop it", d)
		}
	})

	t.Run("context deadline", func(t *testing.T) {
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.Query = `SELECT event_id::text, count(*) FROM telemetry_events, pg_sleep(5) WHERE event_id = ANY($1::uuid[]) AND "timestamp" >= $2 GROUP BY event_id`
		})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := o.Observe(ctx, probes.Query{Pending: newIDs(1), Since: since})
		wantReason(t, err, "timeout")
	})

	t.Run("query errors", func(t *testing.T) {
		for name, q := range map[string]string{
			"syntax":          `SELEC event_id::text, count(*) FROM telemetry_events WHERE event_id = ANY($1::uuid[]) AND "timestamp" >= $2`,
			"undefined table": `SELECT event_id::text, count(*) FROM no_such_table WHERE event_id = ANY($1::uuid[]) AND "timestamp" >= $2 GROUP BY 1`,
			"three columns":   `SELECT event_id::text, count(*), 1 FROM telemetry_events WHERE event_id = ANY($1::uuid[]) AND "timestamp" >= $2 GROUP BY 1`,
		} {
			t.Run(name, func(t *testing.T) {
				o := newSQL(t, dsn, 100, func(c *config.SQLObserver) { c.Query = q })
				_, err := observe(t, o, probes.Query{Pending: newIDs(1), Since: since})
				wantReason(t, err, "query")
			})
		}
	})

	t.Run("bad rows are counted, the rest returned", func(t *testing.T) {
		ids := newIDs(3)
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.Query = `SELECT id::text, 1::bigint FROM unnest($1::uuid[]) AS id WHERE $2::timestamptz IS NOT NULL
				UNION ALL SELECT 'not-a-uuid', 1
				UNION ALL SELECT NULL, 1
				UNION ALL SELECT gen_random_uuid()::text, -4`
		})
		got, err := observe(t, o, probes.Query{Pending: ids, Since: since})
		if err != nil {
			t.Fatalf("bad rows must not fail the poll: %v", err)
		}
		if !slices.Equal(sightingIDs(got), sortedIDs(ids)) {
			t.Fatalf("got %v, want %v", sightingIDs(got), ids)
		}
		if st := o.Stats(); st.BadRows != 3 || st.Rows != 6 || st.Errors != 0 {
			t.Fatalf("stats %+v, want 3 bad of 6 rows", st)
		}
	})

	t.Run("wrong column types are bad rows", func(t *testing.T) {
		o := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.Query = `SELECT id::text, 'many' FROM unnest($1::uuid[]) AS id WHERE $2::timestamptz IS NOT NULL`
		})
		got, err := observe(t, o, probes.Query{Pending: newIDs(2), Since: since})
		if err != nil || len(got) != 0 || o.Stats().BadRows != 2 {
			t.Fatalf("got %v, %v, stats %+v", got, err, o.Stats())
		}
	})

	t.Run("backlog on the first complete poll only", func(t *testing.T) {
		ids := newIDs(2)
		insert(t, dsn, "telemetry_events", now, ids[0])
		o := newSQL(t, dsn, 100, nil)
		got, err := observe(t, o, probes.Query{Pending: ids, Since: since})
		if err != nil || len(got) != 1 || !got[0].Backlog {
			t.Fatalf("first poll: %+v, %v; want one Backlog sighting", got, err)
		}
		insert(t, dsn, "telemetry_events", now, ids[1])
		got, err = observe(t, o, probes.Query{Pending: ids, Since: since})
		if err != nil || len(got) != 2 {
			t.Fatalf("second poll: %+v, %v", got, err)
		}
		for _, s := range got {
			if s.Backlog {
				t.Errorf("second poll: %s is Backlog", s.ID)
			}
		}
	})

	t.Run("a failed first poll does not end the backlog", func(t *testing.T) {
		id := uuid.New()
		insert(t, dsn, "telemetry_events", now, id)
		o := newSQL(t, dsn, 100, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := o.Observe(ctx, probes.Query{Pending: []uuid.UUID{id}, Since: since}); err == nil {
			t.Fatal("Observe with a cancelled context succeeded")
		}
		got, err := observe(t, o, probes.Query{Pending: []uuid.UUID{id}, Since: since})
		if err != nil || len(got) != 1 || !got[0].Backlog {
			t.Fatalf("got %+v, %v; want Backlog", got, err)
		}
	})

	t.Run("unknown role is auth", func(t *testing.T) {
		bad := strings.Replace(dsn, "://canary@", "://nosuchrole@", 1)
		if bad == dsn {
			t.Skip("DSN has no canary user to replace")
		}
		o := newSQL(t, bad, 100, nil)
		wantReason(t, o.Ping(context.Background()), "auth")
		_, err := observe(t, o, probes.Query{Pending: newIDs(1), Since: since})
		wantReason(t, err, "auth")
	})

	t.Run("password file", func(t *testing.T) {
		missing := newSQL(t, dsn, 100, func(c *config.SQLObserver) {
			c.PasswordFile = filepath.Join(t.TempDir(), "absent")
		})
		wantReason(t, missing.Ping(context.Background()), "auth")

		f := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(f, []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The test server trusts loopback, so this shows the file is read,
		// not that the password is checked.
		ok := newSQL(t, dsn, 100, func(c *config.SQLObserver) { c.PasswordFile = f })
		if err := ok.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ping", func(t *testing.T) {
		if err := newSQL(t, dsn, 100, nil).Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSQLDatabaseDown needs a server of its own to stop and start.
func TestSQLDatabaseDown(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t)
	dsn := pg.DSN("postgres")
	pgExec(t, dsn, schema)
	id := uuid.New()
	insert(t, dsn, "telemetry_events", time.Now(), id)
	q := probes.Query{Pending: []uuid.UUID{id}, Since: time.Now().Add(-time.Hour)}

	o := newSQL(t, dsn, 100, nil)
	if got, err := observe(t, o, q); err != nil || len(got) != 1 {
		t.Fatalf("before stop: %v, %v", got, err)
	}

	ctx := context.Background()
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Built while the database is down: construction must not fail.
	cold := newSQL(t, dsn, 100, nil)
	for name, obs := range map[string]*probes.SQL{"pooled": o, "cold": cold} {
		_, err := observe(t, obs, q)
		wantReason(t, err, "connect")
		wantReason(t, obs.Ping(ctx), "connect")
		// Nothing pending: the poll still reaches the database, and fails,
		// so the stage does not read as ready while it is down.
		_, err = observe(t, obs, probes.Query{Since: q.Since})
		wantReason(t, err, "connect")
		t.Logf("%s: %v", name, err)
	}

	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for name, obs := range map[string]*probes.SQL{"pooled": o, "cold": cold} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := observe(t, obs, q)
			if err == nil && len(got) == 1 && got[0].ID == id {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not recovered after restart: %v, %v", name, got, err)
			}
			time.Sleep(50 * time.Millisecond) // poll interval, not synchronisation
		}
	}
}
