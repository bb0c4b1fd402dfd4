package probes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/slo-scout/slo-canary/config"
)

// sqlSecondParam finds $2 but not $20: a query may leave the time bound out
// (a table without a time column), and PostgreSQL refuses a surplus argument.
var sqlSecondParam = regexp.MustCompile(`\$2([^0-9]|$)`)

// defaultBatchSize applies when the configuration leaves it unset.
const defaultBatchSize = 500

// SQL finds markers by polling a database table with a configured query. It
// is safe for one Observe at a time plus concurrent Ping and Stats.
type SQL struct {
	name      string
	query     string
	withSince bool // the query takes $2
	batchSize int
	pool      *pgxpool.Pool
	logger    *slog.Logger

	errLog, badLog logLimiter

	// passedOnce is set after the first Observe whose every statement
	// succeeded; until then sightings are Backlog (see Observe).
	passedOnce bool

	queries, rows, badRows, errs atomic.Uint64
}

// NewSQL builds an observer of a PostgreSQL/TimescaleDB table. It does not
// connect, and its sessions are read-only and bounded: see readOnlyPool.
func NewSQL(ctx context.Context, name string, cfg config.SQLObserver, batchSize int, logger *slog.Logger) (*SQL, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pool, err := readOnlyPool(ctx, fmt.Sprintf("sql observer %q", name), cfg)
	if err != nil {
		return nil, err
	}
	query := cfg.Query
	if strings.TrimSpace(query) == "" {
		query = config.DefaultQuery
	}
	if batchSize <= 0 {
		batchSize = defaultBatchSize
	}
	return &SQL{
		name:      name,
		query:     query,
		withSince: sqlSecondParam.MatchString(query),
		batchSize: batchSize,
		pool:      pool,
		logger:    logger.With("observer", name, "type", "sql"),
		errLog:    logLimiter{every: time.Minute},
		badLog:    logLimiter{every: time.Minute},
	}, nil
}

// Stage names the stage this observer watches.
func (s *SQL) Stage() string { return s.name }

// Observe looks up q.Pending, at most batchSize ids per statement, with $1 the
// ids as uuid[] and $2 = q.Since (if the query uses $2). With nothing pending
// it only pings the database, so that an outage still shows.
//
// Sighting.At is taken after a connection is in hand and just before the
// statement is sent. PostgreSQL takes the statement's MVCC snapshot when the
// statement starts, so a row returned was committed before that snapshot,
// which is at most one network hop after At: At is later than the true
// arrival by at most the time since the previous poll (one poll interval plus
// the previous query's duration) and earlier by at most that one hop. Taking
// the time after the rows came back instead would add the whole query
// duration to every lag. Sighting.NotBefore is q.Checked: the row was not
// there when that earlier poll looked, so the arrival lies between the two.
//
// Rows the first complete poll finds are Backlog: they may have been there
// long before this observer started (markers sent before a restart), so their
// lag cannot be measured. A poll counts as complete once every statement of
// one Observe succeeded; sightings of earlier, partially failed polls are
// Backlog too.
//
// Rows that cannot be read (an id that is not a UUID, columns of the wrong
// types) are skipped, counted in Stats().BadRows and logged, and the rest are
// returned: one bad row must neither hide the good ones nor, by failing the
// whole poll, stop the runner from ever declaring a marker lost.
//
// When a statement fails after others succeeded, Observe returns their
// sightings together with the error; the caller must use both.
func (s *SQL) Observe(ctx context.Context, q Query) ([]Sighting, error) {
	if len(q.Pending) == 0 {
		// Nothing to look up, but the poll must still prove the database
		// answers: a stage is ready, and a poll successful, only then.
		if err := s.pool.Ping(ctx); err != nil {
			s.errs.Add(1)
			cerr := classifySQL(err)
			if ok, n := s.errLog.allow(time.Now()); ok {
				s.logger.Warn("sql observe failed", "reason", cerr.Reason, "err", cerr.Err, "suppressed", n)
			}
			return nil, fmt.Errorf("sql observer %q: %w", s.name, cerr)
		}
		return nil, nil
	}
	backlog := !s.passedOnce
	var out []Sighting
	for start := 0; start < len(q.Pending); start += s.batchSize {
		chunk := q.Pending[start:min(start+s.batchSize, len(q.Pending))]
		got, err := s.queryChunk(ctx, chunk, q.Since, q.Checked, backlog)
		out = append(out, got...)
		if err != nil {
			s.errs.Add(1)
			cerr := classifySQL(err)
			if ok, n := s.errLog.allow(time.Now()); ok {
				s.logger.Warn("sql observe failed", "reason", cerr.Reason, "err", cerr.Err, "suppressed", n)
			}
			return out, fmt.Errorf("sql observer %q: %w", s.name, cerr)
		}
	}
	s.passedOnce = true
	return out, nil
}

// queryChunk runs the query for one batch.
func (s *SQL) queryChunk(ctx context.Context, ids []uuid.UUID, since, checked time.Time, backlog bool) ([]Sighting, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	at := time.Now()
	s.queries.Add(1)
	args := []any{ids, since}
	if !s.withSince {
		args = args[:1]
	}
	rows, err := conn.Query(ctx, s.query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if n := len(rows.FieldDescriptions()); n != 2 {
		// pgx reports a failed statement through rows, not Query.
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, &Error{Reason: "query", Err: fmt.Errorf("query returns %d columns, want 2 (event_id, copies)", n)}
	}
	var out []Sighting
	for rows.Next() {
		s.rows.Add(1)
		vals, err := rows.Values()
		var id uuid.UUID
		var copies int64
		if err == nil {
			id, copies, err = sqlRow(vals)
		}
		if err != nil {
			s.badRows.Add(1)
			if ok, n := s.badLog.allow(time.Now()); ok {
				s.logger.Warn("sql row skipped", "err", err, "suppressed", n)
			}
			continue
		}
		if copies == 0 {
			// A query shaped as a left join reports absent ids with 0 copies.
			continue
		}
		out = append(out, Sighting{ID: id, At: at, Copies: int(copies), Backlog: backlog, NotBefore: checked})
	}
	return out, rows.Err()
}

// sqlRow reads (event_id, copies). The id may be text or uuid; the count any
// integer type, since a configured query may use count(*), sum() or a literal.
func sqlRow(vals []any) (uuid.UUID, int64, error) {
	var id uuid.UUID
	switch v := vals[0].(type) {
	case string:
		p, err := uuid.Parse(v)
		if err != nil {
			return id, 0, fmt.Errorf("event_id %q: %w", truncate(v, 64), err)
		}
		id = p
	case [16]byte:
		id = v
	case nil:
		return id, 0, errors.New("event_id is NULL")
	default:
		return id, 0, fmt.Errorf("event_id has type %T, want text or uuid", v)
	}
	var n int64
	switch v := vals[1].(type) {
	case int64:
		n = v
	case int32:
		n = int64(v)
	case int16:
		n = int64(v)
	case pgtype.Numeric:
		i, err := v.Int64Value()
		if err != nil || !i.Valid {
			return id, 0, fmt.Errorf("copies %v is not an integer", v)
		}
		n = i.Int64
	case nil:
		return id, 0, fmt.Errorf("copies of %s is NULL", id)
	default:
		return id, 0, fmt.Errorf("copies of %s has type %T, want an integer", id, v)
	}
	if n < 0 || n > 1<<31-1 {
		return id, 0, fmt.Errorf("copies of %s is %d", id, n)
	}
	return id, n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Ping checks that a connection can be made and used, for readiness.
func (s *SQL) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("sql observer %q: %w", s.name, classifySQL(err))
	}
	return nil
}

// Stats returns the observer's counters.
func (s *SQL) Stats() ObserverStats {
	return ObserverStats{
		Queries: s.queries.Load(),
		Rows:    s.rows.Load(),
		BadRows: s.badRows.Load(),
		Errors:  s.errs.Load(),
	}
}

// Close closes the pool. It waits for connections in use to be released.
func (s *SQL) Close() { s.pool.Close() }

// classifySQL wraps err in *Error with a reason from the bounded set. The
// server's SQLSTATE decides when there is one; otherwise the Go error.
func classifySQL(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	reason := "other"
	var pg *pgconn.PgError
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &pg):
		reason = sqlStateReason(pg.Code)
	case errors.As(err, &ce):
		// A dial that timed out is still a failure to connect: the stage is
		// unreachable, not slow.
		reason = "connect"
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		reason = "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne):
		reason = "connect"
	}
	return &Error{Reason: reason, Err: err}
}

// sqlStateReason maps a SQLSTATE (PostgreSQL appendix A) to an error reason.
func sqlStateReason(code string) string {
	switch {
	case code == "57014": // query_canceled: statement_timeout
		return "timeout"
	case code == "28P01", code == "28000": // invalid_password, invalid_authorization_specification
		return "auth"
	case code == "42501": // insufficient_privilege: the role may not read the table
		return "auth"
	case strings.HasPrefix(code, "08"), // connection_exception
		strings.HasPrefix(code, "53"),  // insufficient_resources: too many connections
		strings.HasPrefix(code, "57P"), // admin_shutdown, crash_shutdown, cannot_connect_now
		code == "3D000":                // invalid_catalog_name: the database does not exist
		return "connect"
	default:
		// Syntax errors and undefined objects (42), a write refused by the
		// read-only transaction (25006), data exceptions (22) and the rest:
		// the server ran the statement and rejected it.
		return "query"
	}
}
