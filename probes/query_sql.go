package probes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/slo-scout/slo-canary/config"
)

// SQLQuery times a read-only query against TimescaleDB, reading every row.
type SQLQuery struct {
	name    string
	query   string
	timeout time.Duration
	pool    *pgxpool.Pool
}

// NewSQLQuery builds an SQL query probe. Its sessions are read-only and
// bounded like an SQL observer's (see readOnlyPool); its pool holds at least
// one connection per client, so a concurrency run times the database, not a
// wait for the canary's own pool.
func NewSQLQuery(ctx context.Context, name string, cfg config.QueryProbe, opts QueryOptions) (*SQLQuery, error) {
	if strings.TrimSpace(cfg.SQL.Query) == "" {
		return nil, fmt.Errorf("query probe %q: sql.query: required", name)
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("query probe %q: timeout: must be positive, got %s", name, cfg.Timeout)
	}
	sc := cfg.SQL
	sc.MaxConns = max(sc.MaxConns, int32(min(opts.Clients, 1<<20)))
	pool, err := readOnlyPool(ctx, fmt.Sprintf("query probe %q", name), sc)
	if err != nil {
		return nil, err
	}
	return &SQLQuery{name: name, query: cfg.SQL.Query, timeout: cfg.Timeout, pool: pool}, nil
}

// Do runs the query once. Connecting, when the pool has no idle connection,
// is part of the time, as a dial is for HTTP.
func (s *SQLQuery) Do(ctx context.Context, _ uint64) QueryResult {
	var res QueryResult
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res.Sent = time.Now()
	rows, err := s.run(qctx)
	res.Done = time.Now()
	if err == nil {
		res.Outcome = OutcomeSuccess
		return res
	}
	res.Err = fmt.Errorf("%d rows read: %w", rows, err)
	switch {
	case ctx.Err() != nil:
		res.Outcome = OutcomeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		res.Outcome = OutcomeTimeout
	default:
		switch classifySQL(err).Reason {
		case "timeout":
			res.Outcome = OutcomeTimeout
		case "connect", "auth":
			res.Outcome = OutcomeConnect
		default:
			// The server ran the statement and rejected it, or returned what
			// cannot be read: an answer, but not the one expected.
			res.Outcome = OutcomeBadBody
		}
	}
	return res
}

func (s *SQLQuery) run(ctx context.Context) (int, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	rows, err := conn.Query(ctx, s.query)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// Close closes the pool.
func (s *SQLQuery) Close() { s.pool.Close() }
