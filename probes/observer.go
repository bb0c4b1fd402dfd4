// Package probes holds the observers that look for the canary's markers at each
// stage of the pipeline (a database table, a downstream topic, the API), and the
// registry that builds them from configuration.
//
// An observer answers one question: which of these pending markers are now
// visible at my stage? The runner in package canary owns the polling loop: it
// asks the tracker for pending markers, calls Observe, times it, counts its
// errors and hands the sightings back to the tracker.
//
// It also holds the query probes (query.go): one timed request to
// SLO-Scout's HTTP API or one read-only query to its database, with its
// outcome classified. Package queries decides when they run.
package probes

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Query is what the runner asks an observer on each poll.
type Query struct {
	// Pending are markers not yet seen at this stage, oldest first, at most the
	// observer's batch size. It may be empty: streaming observers still report
	// what they consumed (duplicates and late arrivals).
	Pending []uuid.UUID
	// Since is a lower bound on the send time of every pending marker, minus a
	// margin for clock skew. SQL observers bound their time column with it so a
	// hypertable query touches only recent chunks.
	Since time.Time
	// Checked is when the latest poll that looked up every marker then
	// pending began, if it succeeded; zero before there was one. A marker
	// pending now and sent before Checked was not visible at the stage then.
	// Observers that find markers only when asked pass it on as
	// Sighting.NotBefore.
	Checked time.Time
}

// Sighting reports one appearance of a marker at a stage.
type Sighting struct {
	ID uuid.UUID
	// At is when the canary saw the marker, on the canary's clock: the moment
	// the query was sent (rows visible then were visible at least that early),
	// or the moment a record was consumed.
	At time.Time
	// Copies is how many copies the stage holds (rows with the same id); 1
	// normally. Streaming observers report each copy as its own sighting.
	Copies int
	// Backlog marks a sighting of something the stage held before this observer
	// could have seen it: a record whose timestamp predates the observer's start,
	// or a row found by the first successful poll. For markers sent before a
	// restart its lag cannot be measured and is counted as such, not guessed.
	Backlog bool
	// SourceTime is the stage's own timestamp of the marker when it has one (a
	// Kafka record timestamp); zero otherwise. Used to measure clock skew.
	SourceTime time.Time
	// NotBefore, when not zero, is a time the marker was not yet visible at
	// the stage (an earlier poll looked for it and missed it): it arrived
	// between NotBefore, or its send time if later, and At. A polling
	// observer sets it from Query.Checked; a streaming observer leaves it
	// zero, its At being the arrival itself.
	NotBefore time.Time
}

// Observer finds markers at one stage.
//
// Observe must honour ctx (the runner sets a per-poll timeout) and must not
// block beyond it. It may return sightings of ids that are not in q.Pending.
// Observe is called from one goroutine at a time.
type Observer interface {
	Stage() string
	Observe(ctx context.Context, q Query) ([]Sighting, error)
	Close()
}

// Runner is implemented by observers with background work, such as a Kafka
// consumer. The service runs Run in its group before polling starts; Run
// returns when ctx is cancelled.
type Runner interface {
	Run(ctx context.Context) error
}

// ErrorReason classifies an observer error for the errors counter. Observers
// wrap their errors in *Error to give a reason; anything else counts as "other".
type Error struct {
	Reason string // bounded set: timeout, connect, query, decode, auth, other
	Err    error
}

func (e *Error) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// CatchUpper is implemented by observers that start by reading a backlog (a
// Kafka observer re-reading its lookback after a restart). While CatchingUp
// reports true, the runner declares no marker lost at the stage: what the
// observer has not read yet, it has not observed to be missing.
type CatchUpper interface {
	CatchingUp() bool
}
