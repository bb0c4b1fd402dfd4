package probes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/slo-scout/slo-canary/config"
)

// Query outcomes: every timed query ends in exactly one of QueryOutcomes.
const (
	OutcomeSuccess = "success"
	OutcomeHTTP5xx = "http_5xx"
	OutcomeHTTP4xx = "http_4xx"
	OutcomeTimeout = "timeout"
	// OutcomeBadBody: an answer that is not the one expected: a body that is
	// not JSON, or lacks the expected field or has it empty; an unexpected
	// 1xx-3xx status; an SQL statement the server rejected.
	OutcomeBadBody = "bad_body"
	// OutcomeConnect: no complete answer: refused, reset, TLS, DNS, a body
	// cut short.
	OutcomeConnect = "connect_error"
	// OutcomeNoJourneys: nothing was sent, for want of a journey id: the
	// probe takes them from journey discovery, which has found none. Not a
	// measurement of SLO-Scout's latency, so not counted in the query SLI.
	OutcomeNoJourneys = "no_journeys"
	// OutcomeCanceled is not a result: the caller's context ended (the canary
	// is stopping). Runners drop such results rather than count them.
	OutcomeCanceled = "canceled"
)

// QueryOutcomes are the outcome label values, each initialised at zero.
var QueryOutcomes = []string{OutcomeSuccess, OutcomeHTTP5xx, OutcomeHTTP4xx, OutcomeTimeout, OutcomeBadBody, OutcomeConnect, OutcomeNoJourneys}

// QueryResult is one timed query. The runner, not the probe, decides what
// the latency is: from Sent for a service time, from the moment the request
// was due for an open-loop latency.
type QueryResult struct {
	Outcome string
	// Status is the HTTP status; 0 without an answer, and for SQL.
	Status int
	// RequestID is sent as X-Request-Id, so a slow request can be found in
	// the server's logs.
	RequestID string
	// TargetName and TargetValue are the first rotated placeholder and the
	// value it took ("journey_id", a UUID), for exemplars and logs.
	TargetName, TargetValue string
	// Sent is just before the request was handed to the connection pool.
	Sent time.Time
	// Done is when the whole answer was read, or when the query failed.
	Done time.Time
	// Err says why the outcome is not success; nil on success.
	Err error
}

// QueryProbe times one kind of query against SLO-Scout.
//
// Do sends one query and waits for the whole answer, bounded by the probe's
// own timeout and by ctx; seq selects the values of the rotation lists. Do is
// safe for concurrent use: a concurrency run calls it from every client at
// once. Close releases idle connections; no Do may be running.
type QueryProbe interface {
	Do(ctx context.Context, seq uint64) QueryResult
	Close()
}

// QueryOptions are what query probes need beyond their own configuration.
type QueryOptions struct {
	BaseURL string
	Auth    config.QueryAuth
	// Clients is how many queries may run at once: connection pools are
	// sized for it so that a concurrency run never waits on its own pool.
	Clients int
	Logger  *slog.Logger
	// Journeys, if set, gives the journey ids a probe rotates through when
	// it uses {journey_id} and its rotate.journey_ids is empty (see
	// JourneyDiscovery.IDs). Without it, or while it gives none, such a
	// probe sends nothing and reports OutcomeNoJourneys. Called once per
	// request, from every client at once.
	Journeys func() []string
}

// QueryConstructor builds a query probe of one type. ctx bounds construction
// only.
type QueryConstructor func(ctx context.Context, name string, cfg config.QueryProbe, opts QueryOptions) (QueryProbe, error)

// QueryConstructors is the registry of query probe types, by the name used
// in queries.probes.<name>.type.
var QueryConstructors = map[string]QueryConstructor{
	"http": func(_ context.Context, name string, cfg config.QueryProbe, opts QueryOptions) (QueryProbe, error) {
		return queryProbe(NewHTTPQuery(name, cfg, opts))
	},
	"sql": func(ctx context.Context, name string, cfg config.QueryProbe, opts QueryOptions) (QueryProbe, error) {
		return queryProbe(NewSQLQuery(ctx, name, cfg, opts))
	},
}

// queryProbe returns a nil interface, not a nil pointer in one, on error.
func queryProbe[T QueryProbe](p T, err error) (QueryProbe, error) {
	if err != nil {
		return nil, err
	}
	return p, nil
}

// NewQuery builds the query probe named name from its configuration.
func NewQuery(ctx context.Context, name string, cfg config.QueryProbe, opts QueryOptions) (QueryProbe, error) {
	c, ok := QueryConstructors[cfg.Type]
	if !ok {
		types := make([]string, 0, len(QueryConstructors))
		for t := range QueryConstructors {
			types = append(types, t)
		}
		sort.Strings(types)
		return nil, fmt.Errorf("query probe %q: unknown type %q (known: %s)", name, cfg.Type, strings.Join(types, ", "))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clients < 1 {
		opts.Clients = 1
	}
	return c(ctx, name, cfg, opts)
}

// rotation fills the placeholders for query seq: each list is walked in turn,
// independently, so that two lists of coprime lengths cover every pair.
type rotation struct {
	lists map[string][]string // placeholder -> values
	first string              // the first placeholder used, for TargetName
	// journeys gives the journey ids when {journey_id} is used and none are
	// listed (discovered); nil otherwise.
	journeys func() []string
}

func newRotation(r config.QueryRotate, used []string, journeys func() []string) rotation {
	rot := rotation{lists: map[string][]string{}}
	for _, name := range used {
		list := r.JourneyIDs
		if name == "service" {
			list = r.Services
		}
		if len(list) == 0 {
			if name != "journey_id" {
				continue // validation rejects this; fill with nothing rather than panic
			}
			// Discovered journeys; none at all if nothing discovers them.
			rot.journeys = func() []string { return nil }
			if journeys != nil {
				rot.journeys = journeys
			}
		}
		if rot.first == "" {
			rot.first = name
		}
		if len(list) > 0 {
			rot.lists[name] = list
		}
	}
	return rot
}

// values returns the placeholder values for query seq, or nil if none are
// used; ok is false when the journey ids are discovered and there are none.
func (r rotation) values(seq uint64) (vals map[string]string, ok bool) {
	if len(r.lists) == 0 && r.journeys == nil {
		return nil, true
	}
	vals = make(map[string]string, len(r.lists)+1)
	for name, list := range r.lists {
		vals[name] = list[seq%uint64(len(list))]
	}
	if r.journeys != nil {
		ids := r.journeys()
		if len(ids) == 0 {
			return nil, false
		}
		vals["journey_id"] = ids[seq%uint64(len(ids))]
	}
	return vals, true
}

// requestIDPrefix makes request ids unique across canary processes.
var requestIDPrefix = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux; zeros are still usable
	return hex.EncodeToString(b[:])
}()
