// Package testenv gives tests their real parts (PostgreSQL, kcat, promtool) and
// decides what happens when one is missing: a skip on a developer's machine, a
// failure when CI=true, because a skipped test proves nothing.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/slo-scout/slo-canary/testbed"
)

// PostgresDSNEnv names the variable that points tests at an existing server
// instead of a throwaway one. Its database must be writable; tests create
// their own databases on it.
const PostgresDSNEnv = "SLO_CANARY_TEST_POSTGRES_DSN"

// Missing skips the test, or fails it under CI.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true but is missing", what)
	}
	t.Skipf("%s not available", what)
}

// Binary returns the path of a program on PATH, or skips/fails.
func Binary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name)
	}
	return p
}

// Postgres returns a running throwaway server, stopped and removed at the end
// of the test. Tests that need to stop and start the server use it directly.
func Postgres(t testing.TB) *testbed.Postgres {
	t.Helper()
	if !testbed.PostgresAvailable() {
		Missing(t, "PostgreSQL (initdb, pg_ctl)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := testbed.StartPostgres(ctx)
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.Close(); err != nil {
			t.Logf("close postgres: %v", err)
		}
	})
	return pg
}

// PostgresDSN returns a DSN of a fresh database: on the server named by
// SLO_CANARY_TEST_POSTGRES_DSN if set, else on a throwaway server.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv(PostgresDSNEnv); dsn != "" {
		return createDB(t, dsn)
	}
	pg := Postgres(t)
	return createDB(t, pg.DSN("postgres"))
}

func createDB(t testing.TB, adminDSN string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		t.Fatalf("connect %s: %v", PostgresDSNEnv, err)
	}
	defer conn.Close(ctx)
	name := "canary_test_" + randSuffix()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if c, err := pgx.Connect(ctx, adminDSN); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	return withDatabase(adminDSN, name)
}

// withDatabase points a URL or keyword/value DSN at another database.
func withDatabase(dsn, db string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + db
		return u.String()
	}
	return dsn + " dbname=" + db
}

func randSuffix() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// Pipeline creates the reference pipeline and runs it until the test ends.
func Pipeline(t testing.TB, cfg testbed.PipelineConfig) *testbed.Pipeline {
	t.Helper()
	p, err := testbed.NewPipeline(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewPipeline: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pipeline Run: %v", err)
		}
		p.Close()
	})
	return p
}
