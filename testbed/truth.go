package testbed

import (
	"sync"
	"time"

	"github.com/google/uuid"
)

// Truth is what the pipeline knows happened to one event: the ground truth a
// test compares the canary's measurements with.
type Truth struct {
	// Consumed is when the pipeline's consumer received the event (first time,
	// if it was consumed more than once).
	Consumed time.Time
	// DBVisible is when the COMMIT that made its row visible returned; zero if
	// it never was (dropped, no database, still queued). A duplicate that hit
	// the primary key leaves it at its first commit.
	DBVisible time.Time
	// Forwarded is when the first forward to the capsule topic was acknowledged.
	Forwarded time.Time
	// ForwardCopies counts acknowledged forwards: 2 for a duplicated event.
	ForwardCopies int
	// DBCopies counts rows the event actually inserted: at most 1, since the
	// database sink is idempotent; 0 if the row already existed.
	DBCopies int
	// Dropped and Duplicated record the fault decisions taken for the event.
	Dropped    bool
	Duplicated bool
	// Partition and Offset locate the event in the ingest topic.
	Partition int32
	Offset    int64
}

// Stats are pipeline counters since NewPipeline. They are exact, unlike the
// per-event truth, which keeps only the newest PipelineConfig.TruthCap events.
type Stats struct {
	Consumed      int64 `json:"consumed"`       // records received from the ingest topic
	DecodeErrors  int64 `json:"decode_errors"`  // records that were not a valid TelemetryEvent
	Dropped       int64 `json:"dropped"`        // events dropped by the fault profile
	Duplicated    int64 `json:"duplicated"`     // events duplicated by the fault profile
	Queued        int64 `json:"queued"`         // events waiting for their visibility time
	DBRows        int64 `json:"db_rows"`        // rows inserted into telemetry_events
	DBConflicts   int64 `json:"db_conflicts"`   // inserts that were no-ops on the primary key
	DBErrors      int64 `json:"db_errors"`      // failed batch writes (each retried until it succeeds)
	Forwarded     int64 `json:"forwarded"`      // acknowledged forwards to the capsule topic
	ForwardErrors int64 `json:"forward_errors"` // forwards that failed for good
	Commits       int64 `json:"commits"`        // successful offset commits
	TruthEvicted  int64 `json:"truth_evicted"`  // ground-truth entries evicted by the cap
	Stalled       bool  `json:"stalled"`
}

// truthEntry is Truth in compact form: the store holds up to a million of them.
type truthEntry struct {
	id                       uuid.UUID
	consumed, dbVisible, fwd int64 // unix nanoseconds, 0 = never
	offset                   int64
	partition                int32
	fwdCopies, dbCopies      uint16
	dropped, duplicated      bool
}

func (e *truthEntry) truth() Truth {
	t := Truth{
		ForwardCopies: int(e.fwdCopies),
		DBCopies:      int(e.dbCopies),
		Dropped:       e.dropped,
		Duplicated:    e.duplicated,
		Partition:     e.partition,
		Offset:        e.offset,
	}
	t.Consumed = fromNanos(e.consumed)
	t.DBVisible = fromNanos(e.dbVisible)
	t.Forwarded = fromNanos(e.fwd)
	return t
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// truthStore keeps the newest cap entries in a ring, in consumption order, so
// memory stays bounded however long the standalone testbed runs.
type truthStore struct {
	mu      sync.Mutex
	cap     int
	ring    []truthEntry
	head    int // oldest entry once the ring is full
	index   map[uuid.UUID]int
	evicted int64
}

func newTruthStore(limit int) *truthStore {
	return &truthStore{cap: limit, index: make(map[uuid.UUID]int)}
}

// consumed records a consumption and the fault decisions taken for it. A
// second consumption of the same id keeps the first entry and ORs the
// decisions into it.
func (s *truthStore) consumed(id uuid.UUID, at time.Time, partition int32, offset int64, dropped, duplicated bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[id]; ok {
		e := &s.ring[i]
		e.dropped = e.dropped || dropped
		e.duplicated = e.duplicated || duplicated
		return
	}
	e := truthEntry{id: id, consumed: at.UnixNano(), partition: partition, offset: offset, dropped: dropped, duplicated: duplicated}
	if len(s.ring) < s.cap {
		s.ring = append(s.ring, e)
		s.index[id] = len(s.ring) - 1
		return
	}
	old := &s.ring[s.head]
	delete(s.index, old.id)
	s.evicted++
	*old = e
	s.index[id] = s.head
	s.head = (s.head + 1) % s.cap
}

// update applies fn to the entry of id, if it is still held.
func (s *truthStore) update(id uuid.UUID, fn func(*truthEntry)) {
	s.mu.Lock()
	if i, ok := s.index[id]; ok {
		fn(&s.ring[i])
	}
	s.mu.Unlock()
}

func (s *truthStore) get(id uuid.UUID) (Truth, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[id]
	if !ok {
		return Truth{}, false
	}
	return s.ring[i].truth(), true
}

// ids lists, oldest first, the held ids for which keep returns true.
func (s *truthStore) ids(keep func(*truthEntry) bool) []uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uuid.UUID
	n := len(s.ring)
	for k := 0; k < n; k++ {
		e := &s.ring[(s.head+k)%n]
		if keep(e) {
			out = append(out, e.id)
		}
	}
	return out
}

func (s *truthStore) evictedCount() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evicted
}
