package probes_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestSQLSecurity runs against a throwaway PostgreSQL that accepts TCP only
// over TLS, with a certificate from a throwaway CA naming localhost and
// 127.0.0.1. The canary's SQL observer connects with sslmode=verify-full as
// the least-privilege role the README prescribes (testbed.ReadOnlyRoleSQL,
// executed verbatim) and sees a marker; a wrong CA and sslmode=disable fail
// with a classified error; the role can read nothing but telemetry_events
// and write nothing at all.
func TestSQLSecurity(t *testing.T) {
	if !testbed.PostgresAvailable() {
		testenv.Missing(t, "initdb/pg_ctl (PostgreSQL server)")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pki := testenv.NewPKI(t, "slo-canary")
	pg, err := testbed.StartPostgresWith(ctx, testbed.PostgresOptions{
		TLSCertFile: pki.ServerCert, TLSKeyFile: pki.ServerKey, HostSSLOnly: true,
	})
	if err != nil {
		t.Fatalf("start postgres with TLS: %v", err)
	}
	t.Cleanup(func() { _ = pg.Close() })

	dsn := func(user, host, db, ssl string) string {
		return fmt.Sprintf("postgres://%s@%s:%d/%s?%s", user, host, pg.Port, db, ssl)
	}
	verifyFull := "sslmode=verify-full&sslrootcert=" + pki.CAFile
	exec := func(dsn string, sqls ...string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect %s: %v", dsn, err)
		}
		defer conn.Close(ctx)
		for _, q := range sqls {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	// The administrator sets up SLO-Scout's schema, one marker row, and the
	// canary's role, all over verify-full TLS (the only way in).
	exec(dsn(pg.User, "localhost", "postgres", verifyFull), "CREATE DATABASE "+testbed.ServeDatabase)
	admin := dsn(pg.User, "localhost", testbed.ServeDatabase, verifyFull)
	marker := uuid.New()
	exec(admin, testbed.Schema,
		`INSERT INTO services (name) VALUES ('slo-canary')`,
		fmt.Sprintf(`INSERT INTO telemetry_events (event_id, "timestamp", service_id, event_type) VALUES ('%s', now(), 1, 'log')`, marker),
		testbed.ReadOnlyRoleSQL)

	q := probes.Query{Pending: []uuid.UUID{marker}, Since: time.Now().Add(-time.Hour)}
	for _, host := range []string{"localhost", "127.0.0.1"} {
		t.Run("verify_full_"+host, func(t *testing.T) {
			s := newSQL(t, dsn(testbed.ServeReadRole, host, testbed.ServeDatabase, verifyFull), 10,
				func(c *config.SQLObserver) { c.Query = config.DefaultQuery })
			got, err := observe(t, s, q)
			if err != nil {
				t.Fatalf("observe over verify-full as %s: %v", testbed.ServeReadRole, err)
			}
			if len(got) != 1 || got[0].ID != marker {
				t.Fatalf("sightings %+v, want marker %s", got, marker)
			}
		})
	}

	t.Run("wrong_ca", func(t *testing.T) {
		other := testenv.NewPKI(t, "other")
		s := newSQL(t, dsn(testbed.ServeReadRole, "localhost", testbed.ServeDatabase, "sslmode=verify-full&sslrootcert="+other.CAFile), 10, nil)
		err := s.Ping(context.Background())
		wantReason(t, err, "connect")
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("error does not name the certificate problem: %v", err)
		}
	})
	t.Run("sslmode_disable_refused", func(t *testing.T) {
		s := newSQL(t, dsn(testbed.ServeReadRole, "localhost", testbed.ServeDatabase, "sslmode=disable"), 10, nil)
		err := s.Ping(context.Background())
		wantReason(t, err, "auth")
		if !strings.Contains(err.Error(), "no encryption") {
			t.Errorf("error does not say the server wants encryption: %v", err)
		}
	})

	t.Run("role_cannot_write", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, dsn(testbed.ServeReadRole, "localhost", testbed.ServeDatabase, verifyFull))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		// By default every transaction is read-only...
		wantSQLState(t, conn, `INSERT INTO telemetry_events (event_id, "timestamp", service_id, event_type) VALUES (gen_random_uuid(), now(), 1, 'log')`, "25006")
		// ...and turning that off does not help: the role has no privilege.
		if _, err := conn.Exec(ctx, "SET default_transaction_read_only = off"); err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{
			`INSERT INTO telemetry_events (event_id, "timestamp", service_id, event_type) VALUES (gen_random_uuid(), now(), 1, 'log')`,
			`DELETE FROM telemetry_events`,
			`UPDATE telemetry_events SET message = 'x'`,
			`TRUNCATE telemetry_events`,
			`CREATE TABLE canary_was_here (x int)`,
			`SELECT count(*) FROM services`, // nothing but telemetry_events is readable
		} {
			wantSQLState(t, conn, stmt, "42501") // insufficient_privilege
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM telemetry_events").Scan(&n); err != nil || n != 1 {
			t.Errorf("telemetry_events after the attempts: %d rows, err %v; want the 1 row untouched", n, err)
		}
	})
}

func wantSQLState(t *testing.T, conn *pgx.Conn, stmt, code string) {
	t.Helper()
	_, err := conn.Exec(context.Background(), stmt)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code {
		t.Errorf("%s: err %v, want SQLSTATE %s", stmt, err, code)
	}
}
