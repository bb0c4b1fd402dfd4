package probes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/slo-scout/slo-canary/config"
)

// readOnlyPool builds the connection pool of an SQL observer or query probe;
// what names it in errors ("sql observer \"database\""). It does not connect:
// connections are opened on first use, so the canary starts (and reports the
// stage or probe unhealthy) while the database is down.
//
// Every connection is read-only and bounded whatever the DSN says:
// default_transaction_read_only=on (a mistaken or hostile query cannot write;
// the canary should still use a read-only role), statement_timeout, and
// idle_in_transaction_session_timeout, so a stuck canary cannot hold locks or
// snapshots that delay TimescaleDB's retention and compression jobs.
func readOnlyPool(ctx context.Context, what string, cfg config.SQLObserver) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx quotes the DSN in its message and redacts passwords only on a
		// best effort basis: quote the redacted DSN instead.
		var pce *pgconn.ParseConfigError
		if errors.As(err, &pce) {
			cp := *pce
			cp.ConnString = ""
			err = &cp
		}
		return nil, fmt.Errorf("%s: dsn %s: %w", what, config.RedactDSN(cfg.DSN), err)
	}
	if pw := cfg.Password.Reveal(); pw != "" {
		pc.ConnConfig.Password = pw
	} else if cfg.PasswordFile != "" {
		// Read on every new connection, so a rotated Kubernetes secret is
		// picked up without a restart.
		file := cfg.PasswordFile
		pc.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
			b, err := os.ReadFile(file)
			if err != nil {
				return &Error{Reason: "auth", Err: fmt.Errorf("sql password file: %w", err)}
			}
			cc.Password = strings.TrimRight(string(b), "\r\n")
			return nil
		}
	}
	st := cfg.StatementTimeout
	if st <= 0 {
		st = defaultStatementTimeout
	}
	ms := strconv.FormatInt(max(st.Milliseconds(), 1), 10)
	rp := pc.ConnConfig.RuntimeParams
	rp["default_transaction_read_only"] = "on"
	rp["statement_timeout"] = ms
	rp["idle_in_transaction_session_timeout"] = ms
	if rp["application_name"] == "" {
		rp["application_name"] = "slo-canary"
	}
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns <= 0 {
		pc.MaxConns = defaultMaxConns
	}
	// Lazy: never dial in the background before the first use.
	pc.MinConns, pc.MinIdleConns = 0, 0
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("%s: pool: %w", what, err)
	}
	return pool, nil
}

// Bounds applied when the configuration leaves them unset: an observer or a
// probe never runs unbounded statements or an unbounded pool.
const (
	defaultStatementTimeout = 10 * time.Second
	defaultMaxConns         = 2
)
