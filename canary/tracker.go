package canary

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/slo-scout/slo-canary/probes"
)

// MaxStages bounds TrackerConfig.Stages: a marker keeps one bit per stage.
const MaxStages = 16

// StageConfig is one stage the tracker accounts for.
type StageConfig struct {
	Name     string
	Deadline time.Duration // not seen by SentAt+Deadline: lost
}

// TrackerConfig configures a Tracker.
type TrackerConfig struct {
	Stages []StageConfig // fixed at construction, at most MaxStages
	// Budget is the freshness threshold: an observed marker with lag <= Budget
	// is a good event of the freshness SLI.
	Budget time.Duration
	// LateWindow is how long after a stage's deadline a marker stays known
	// there, so a late arrival or a duplicate is recognised as such.
	LateWindow time.Duration
	// MaxTracked caps the markers held, pending or retained; Track refuses
	// beyond it. It bounds memory at about 100 bytes a marker.
	MaxTracked int
}

// Outcome is what one sighting meant.
type Outcome uint8

const (
	// OutcomeObserved is a first sighting before the marker was declared lost
	// at the stage: its lag is measured.
	OutcomeObserved Outcome = iota
	// OutcomeUnmeasured is a first sighting of a marker recovered after a
	// restart, found in the stage's backlog: it arrived while the canary was
	// down, so it is not lost but its lag is unknown. It is left out of the
	// lag histogram and of the freshness SLI.
	OutcomeUnmeasured
	// OutcomeLate is a first sighting after the marker was declared lost.
	OutcomeLate
	// OutcomeDuplicate is a second or further sighting at the stage.
	OutcomeDuplicate
	// OutcomeUnknown is a sighting of an id the tracker does not know (a
	// foreign event, an evicted or abandoned marker, or one sent before this
	// process knew it) or of a marker past its stage's Deadline+LateWindow.
	OutcomeUnknown
	// OutcomeReplayed is a backlog sighting of a marker restored from a
	// checkpoint that says it was already seen at the stage before the
	// restart: an observer re-reading its lookback finds it again. It is not a
	// duplicate in the pipeline, and counts as nothing. (A real duplicate of
	// such a marker made while the canary was down is not told apart.)
	OutcomeReplayed
)

var outcomeNames = [...]string{"observed", "unmeasured", "late", "duplicate", "unknown", "replayed"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Result is what Seen made of a sighting.
type Result struct {
	Outcome Outcome
	Marker  Marker // valid unless Unknown; SentAt has no monotonic reading
	// Lag is the best estimate of the marker's time to the stage, for
	// Observed and Late (never negative): s.At - Marker.SentAt, or, when the
	// sighting brackets the arrival (s.NotBefore), the middle of the bracket.
	Lag time.Duration
	// LagMax is s.At - Marker.SentAt, an upper bound of the lag: the
	// marker was at the stage by then.
	LagMax time.Duration
	// Good is Observed and LagMax <= Budget: a good freshness event. The
	// upper bound decides, so a marker is never counted fresh unless it is
	// known to have been.
	Good bool
	// Duplicates counts extra copies: Copies-1 on a first sighting, Copies
	// (at least 1) on a Duplicate.
	Duplicates int
	// OutOfOrder is set on a first sighting (Observed, Unmeasured or Late)
	// whose Seq is lower than a Seq of the same run and partition that was
	// first seen at this stage at an earlier instant. Sightings with the same
	// At came from one poll and have no order among them; a gap alone is not
	// an inversion (the missing markers end up lost or late).
	OutOfOrder bool
}

// Tracker accounts for every marker at every stage. It does no I/O and reads
// no clock: every method that needs the time takes it, so tests drive it. It
// is safe for concurrent use.
//
// Each marker resolves exactly once per stage, to observed (lag measured, good
// or not), unmeasured, or lost (by Expire). The counting rules follow:
//   - freshness total = observed + lost; good = observed with lag <= Budget;
//     unmeasured markers are in neither.
//   - a late arrival changes neither good nor total already counted: the marker
//     was lost when it counted.
//   - net loss = lost_total - late_total: a late marker was lost and found.
//   - duplicates are the sum of Result.Duplicates.
//
// Expire alone decides loss. The runner reports a poll's sightings first and
// then calls Expire with the poll's start time: a marker first visible at the
// poll that crossed its deadline gets the benefit of the doubt (Observed, its
// lag above Deadline), and after a restart the first poll finds recovered
// markers in the backlog (Unmeasured) before Expire can declare them lost for
// deadlines that passed while the canary was down.
//
// A marker stays known at a stage until SentAt+Deadline+LateWindow: a sighting
// with a later At is Unknown whether or not Expire has evicted the marker yet,
// so outcomes do not depend on when Expire runs. Recovery should therefore
// only track markers sent within max(Deadline)+LateWindow.
type Tracker struct {
	mu         sync.Mutex
	budget     time.Duration
	retain     int64 // ns after SentAt when a marker resolved everywhere may go
	maxTracked int
	all        uint16 // one bit per stage
	stages     []stageState
	names      map[string]int

	// Markers live in slots (stable, reused through free) found by id through
	// index. Slots come in fixed pages, so growing never copies them. ord
	// lists the slots by SentAt, oldest first; markers tracked well out of
	// order (recovery) wait in unsorted until the next ordered operation
	// merges them in one pass. Abandoned markers stay in ord as tombstones
	// until eviction or compaction removes them.
	index     map[uuid.UUID]uint32
	pages     [][]entry
	nslots    uint32 // slots ever handed out: pages hold them all
	free      []uint32
	ord       []uint32
	unsorted  []uint32
	abandoned int

	// Instance and run strings are interned: a marker holds no pointer, so the
	// garbage collector need not scan a million of them.
	runs     []runInfo
	runIndex map[runKey]uint32
	freeRuns []uint32
	lastRun  uint32
	lastKey  runKey
	haveLast bool
}

type entry struct {
	id        uuid.UUID
	sentAt    int64 // unix ns
	seq       uint64
	partition int32
	run       uint32 // into Tracker.runs
	seen      uint16 // stage bits: sighted at least once
	lost      uint16 // stage bits: declared lost by Expire
	prior     uint16 // stage bits: seen before a restart (restored from a checkpoint)
	flags     uint8
}

const (
	flagRecovered uint8 = 1 << iota
	flagAbandoned
)

type stageState struct {
	deadline int64 // ns
	horizon  int64 // ns after SentAt when the marker is forgotten here
	cursor   int   // into ord: every entry before it is resolved at this stage
	pending  int
	seqs     map[seqKey]*seqState
}

type runKey struct{ instance, run string }

type runInfo struct {
	key  runKey
	refs int
}

type seqKey struct {
	run       uint32
	partition int32
}

// seqState finds inversions without being fooled by a poll's batch: prevMax is
// the highest Seq first seen before curAt, curMax the highest seen at curAt.
type seqState struct {
	prevMax, curMax uint64
	curAt           int64
}

// pageShift sizes the pages of slots: 4096 markers, 192 KiB.
const pageShift = 12

func (t *Tracker) slot(i uint32) *entry { return &t.pages[i>>pageShift][i&(1<<pageShift-1)] }

// bubbleLimit is how far back Track moves a marker sent before the newest one
// (concurrent senders race a little). Further back, sorting a batch is cheaper.
const bubbleLimit = 64

// NewTracker validates cfg and returns an empty tracker.
func NewTracker(cfg TrackerConfig) (*Tracker, error) {
	if len(cfg.Stages) == 0 || len(cfg.Stages) > MaxStages {
		return nil, fmt.Errorf("tracker: %d stages, want 1 to %d", len(cfg.Stages), MaxStages)
	}
	if cfg.Budget <= 0 {
		return nil, fmt.Errorf("tracker: freshness budget %v must be positive", cfg.Budget)
	}
	if cfg.LateWindow < 0 {
		return nil, fmt.Errorf("tracker: late window %v must not be negative", cfg.LateWindow)
	}
	if cfg.MaxTracked <= 0 {
		return nil, fmt.Errorf("tracker: max tracked %d must be positive", cfg.MaxTracked)
	}
	t := &Tracker{
		budget:     cfg.Budget,
		maxTracked: cfg.MaxTracked,
		names:      make(map[string]int, len(cfg.Stages)),
		index:      make(map[uuid.UUID]uint32),
		runIndex:   make(map[runKey]uint32),
	}
	for i, s := range cfg.Stages {
		if s.Name == "" {
			return nil, fmt.Errorf("tracker: stage %d has no name", i)
		}
		if _, dup := t.names[s.Name]; dup {
			return nil, fmt.Errorf("tracker: stage %q configured twice", s.Name)
		}
		if s.Deadline <= 0 {
			return nil, fmt.Errorf("tracker: stage %q: deadline %v must be positive", s.Name, s.Deadline)
		}
		t.names[s.Name] = i
		h := int64(s.Deadline + cfg.LateWindow)
		t.stages = append(t.stages, stageState{deadline: int64(s.Deadline), horizon: h, seqs: map[seqKey]*seqState{}})
		t.retain = max(t.retain, h)
		t.all |= 1 << i
	}
	return t, nil
}

// StageIndex returns the index of the stage called name.
func (t *Tracker) StageIndex(name string) (int, bool) {
	i, ok := t.names[name]
	return i, ok
}

// Track registers a marker just before it is produced; recovered marks one
// found in the ingest topic after a restart. It returns false, tracking
// nothing, when MaxTracked markers are held: the caller must not send the
// marker. Tracking an id already tracked changes nothing and returns true.
func (t *Tracker) Track(m Marker, recovered bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.index[m.ID]; ok {
		return true
	}
	if held := int(t.nslots) - len(t.free); held >= t.maxTracked {
		// Tombstones of abandoned markers occupy slots until eviction reaches
		// them. Compacting costs a pass over ord, so only when it frees a
		// useful share of the slots.
		if t.abandoned == 0 || t.abandoned < held/16 {
			return false
		}
		t.compact()
	}
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		if t.nslots == uint32(len(t.pages))<<pageShift {
			t.pages = append(t.pages, make([]entry, 1<<pageShift))
		}
		i = t.nslots
		t.nslots++
	}
	e := entry{id: m.ID, sentAt: m.SentAt.UnixNano(), seq: m.Seq, partition: m.Partition, run: t.intern(m.Instance, m.Run)}
	if recovered {
		e.flags = flagRecovered
	}
	*t.slot(i) = e
	t.index[m.ID] = i
	for s := range t.stages {
		t.stages[s].pending++
	}
	t.insert(i)
	return true
}

// insert places slot i in ord by SentAt, or defers it to the next merge.
func (t *Tracker) insert(i uint32) {
	at := t.slot(i).sentAt
	n := len(t.ord)
	if n == 0 || t.slot(t.ord[n-1]).sentAt <= at {
		t.ord = append(t.ord, i)
		return
	}
	p := n - 1
	for p > 0 && t.slot(t.ord[p-1]).sentAt > at {
		if n-p >= bubbleLimit {
			t.unsorted = append(t.unsorted, i)
			return
		}
		p--
	}
	t.ord = slices.Insert(t.ord, p, i)
	t.rewind(p)
}

// rewind moves every stage cursor back to p, where an unresolved marker now is.
func (t *Tracker) rewind(p int) {
	for s := range t.stages {
		t.stages[s].cursor = min(t.stages[s].cursor, p)
	}
}

// settle merges the markers tracked out of order into ord.
func (t *Tracker) settle() {
	u := t.unsorted
	if len(u) == 0 {
		return
	}
	slices.SortStableFunc(u, func(a, b uint32) int { return cmp.Compare(t.slot(a).sentAt, t.slot(b).sentAt) })
	n := len(t.ord)
	t.ord = slices.Grow(t.ord, len(u))[:n+len(u)]
	i, j := n-1, len(u)-1
	for w := n + len(u) - 1; j >= 0; w-- {
		if i >= 0 && t.slot(t.ord[i]).sentAt > t.slot(u[j]).sentAt {
			t.ord[w] = t.ord[i]
			i--
		} else {
			t.ord[w] = u[j]
			j--
		}
	}
	t.rewind(i + 1) // ord[:i+1] did not move
	t.unsorted = u[:0]
}

// Abandon forgets a marker whose produce failed: it is neither lost nor
// observed from now on. It reports whether id was tracked. A marker Expire
// already declared lost somewhere stays counted as lost there.
func (t *Tracker) Abandon(id uuid.UUID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.index[id]
	if !ok {
		return false
	}
	delete(t.index, id)
	t.unpend(t.slot(i))
	if n := len(t.ord); n > 0 && t.ord[n-1] == i {
		t.ord = t.ord[:n-1]
		t.release(i)
		for s := range t.stages {
			t.stages[s].cursor = min(t.stages[s].cursor, n-1)
		}
		return true
	}
	if n := len(t.unsorted); n > 0 && t.unsorted[n-1] == i {
		t.unsorted = t.unsorted[:n-1]
		t.release(i)
		return true
	}
	t.slot(i).flags |= flagAbandoned
	t.abandoned++
	return true
}

// unpend takes e out of the pending count of every stage it is unresolved at.
func (t *Tracker) unpend(e *entry) {
	for s := range t.stages {
		if (e.seen|e.lost)&(1<<s) == 0 {
			t.stages[s].pending--
		}
	}
}

// Pending appends to dst up to limit ids neither seen nor declared lost at
// stage, oldest first, and returns the earliest SentAt among them (zero if
// none). Its cost is the markers it returns plus those already seen that lie
// between them: resolved markers before the oldest pending one are skipped
// once, not on every call.
func (t *Tracker) Pending(stage int, dst []uuid.UUID, limit int) ([]uuid.UUID, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if stage < 0 || stage >= len(t.stages) || limit <= 0 {
		return dst, time.Time{}
	}
	t.settle()
	st := &t.stages[stage]
	bit := uint16(1) << stage
	c := st.cursor
	for c < len(t.ord) && t.resolved(t.ord[c], bit) {
		c++
	}
	st.cursor = c
	var first time.Time
	for n := 0; c < len(t.ord) && n < limit; c++ {
		if t.resolved(t.ord[c], bit) {
			continue
		}
		e := t.slot(t.ord[c])
		if n == 0 {
			first = time.Unix(0, e.sentAt)
		}
		dst = append(dst, e.id)
		n++
	}
	return dst, first
}

func (t *Tracker) resolved(i uint32, bit uint16) bool {
	e := t.slot(i)
	return e.flags&flagAbandoned != 0 || (e.seen|e.lost)&bit != 0
}

// Tracks reports whether id is a marker the tracker holds: a sighting of
// any other id can only be OutcomeUnknown.
func (t *Tracker) Tracks(id uuid.UUID) bool {
	t.mu.Lock()
	_, ok := t.index[id]
	t.mu.Unlock()
	return ok
}

// Seen reports one sighting at stage and returns what it meant.
func (t *Tracker) Seen(stage int, s probes.Sighting) Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	if stage < 0 || stage >= len(t.stages) {
		return Result{Outcome: OutcomeUnknown}
	}
	i, ok := t.index[s.ID]
	if !ok {
		return Result{Outcome: OutcomeUnknown}
	}
	st := &t.stages[stage]
	e := t.slot(i)
	at := s.At.UnixNano()
	if at > e.sentAt+st.horizon {
		return Result{Outcome: OutcomeUnknown}
	}
	copies := max(s.Copies, 1)
	r := Result{Marker: t.marker(e)}
	bit := uint16(1) << stage
	if e.seen&bit != 0 {
		if e.prior&bit != 0 && s.Backlog {
			r.Outcome = OutcomeReplayed
			return r
		}
		r.Outcome, r.Duplicates = OutcomeDuplicate, copies
		return r
	}
	e.seen |= bit
	r.Duplicates = copies - 1
	r.OutOfOrder = t.inversion(st, e, at)
	upper := max(at-e.sentAt, 0)
	lag := upper
	if !s.NotBefore.IsZero() {
		// Arrived after NotBefore (and after it was sent), by At: the
		// middle of the bracket is off by at most half its width either way.
		if lower := max(s.NotBefore.UnixNano()-e.sentAt, 0); lower < upper {
			lag = lower + (upper-lower)/2
		}
	}
	switch {
	case e.lost&bit != 0:
		r.Outcome, r.Lag, r.LagMax = OutcomeLate, time.Duration(lag), time.Duration(upper)
		return r
	case e.flags&flagRecovered != 0 && s.Backlog:
		r.Outcome = OutcomeUnmeasured
	default:
		r.Outcome, r.Lag, r.LagMax = OutcomeObserved, time.Duration(lag), time.Duration(upper)
		r.Good = r.LagMax <= t.budget
	}
	st.pending--
	return r
}

// inversion records the first sighting of e at time at and reports whether a
// higher Seq of its run and partition was first seen at an earlier instant.
func (t *Tracker) inversion(st *stageState, e *entry, at int64) bool {
	k := seqKey{run: e.run, partition: e.partition}
	q := st.seqs[k]
	if q == nil {
		st.seqs[k] = &seqState{curMax: e.seq, curAt: at}
		return false
	}
	if at > q.curAt {
		q.prevMax, q.curMax, q.curAt = max(q.prevMax, q.curMax), e.seq, at
	} else {
		// Same instant, or an observer's clock readings raced: no order known.
		q.curMax = max(q.curMax, e.seq)
	}
	return e.seq < q.prevMax
}

// Expire declares lost at stage every marker not seen there whose
// SentAt+Deadline <= now, calling lost for each under the tracker's lock (so
// lost must only record, and must not call the tracker). It then forgets the
// markers resolved at every stage whose SentAt+max(Deadline)+LateWindow < now.
// It returns how many markers it declared lost.
func (t *Tracker) Expire(stage int, now time.Time, lost func(Marker)) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if stage < 0 || stage >= len(t.stages) {
		return 0
	}
	t.settle()
	st := &t.stages[stage]
	bit := uint16(1) << stage
	due := now.UnixNano() - st.deadline
	n := 0
	c := st.cursor
	// ord is sorted by SentAt, so the first unresolved marker not yet due ends
	// the walk; everything before it is then resolved.
	for ; c < len(t.ord); c++ {
		i := t.ord[c]
		if t.resolved(i, bit) {
			continue
		}
		e := t.slot(i)
		if e.sentAt > due {
			break
		}
		e.lost |= bit
		st.pending--
		n++
		if lost != nil {
			lost(t.marker(e))
		}
	}
	st.cursor = c
	t.evict(now.UnixNano())
	return n
}

// evict forgets, from the oldest, markers resolved everywhere and past
// retention, and tombstones. It stops at the first marker that must stay:
// those behind it are younger, or resolve no later than it does.
func (t *Tracker) evict(now int64) {
	n := 0
	for ; n < len(t.ord); n++ {
		i := t.ord[n]
		e := t.slot(i)
		if e.flags&flagAbandoned != 0 {
			t.abandoned--
		} else {
			if (e.seen|e.lost) != t.all || now <= e.sentAt+t.retain {
				break
			}
			delete(t.index, e.id)
		}
		t.release(i)
	}
	if n == 0 {
		return
	}
	t.ord = t.ord[n:]
	for s := range t.stages {
		t.stages[s].cursor = max(t.stages[s].cursor-n, 0)
	}
	t.shrink()
}

// compact drops tombstones from ord. Cursors restart from the oldest marker;
// the next Pending or Expire skips the resolved ones again, once.
func (t *Tracker) compact() {
	t.settle()
	w := 0
	for _, i := range t.ord {
		if t.slot(i).flags&flagAbandoned != 0 {
			t.release(i)
			continue
		}
		t.ord[w] = i
		w++
	}
	t.ord = t.ord[:w]
	t.abandoned = 0
	for s := range t.stages {
		t.stages[s].cursor = 0
	}
	t.shrink()
}

// shrink returns the storage of a large tracker that has emptied: Go maps and
// slices never give memory back on their own.
func (t *Tracker) shrink() {
	if len(t.index) > 0 || len(t.ord) > 0 || len(t.unsorted) > 0 || len(t.pages) < 2 {
		return
	}
	t.index = make(map[uuid.UUID]uint32)
	t.pages, t.nslots, t.free, t.ord, t.unsorted = nil, 0, nil, nil, nil
}

// Len returns how many markers are held, pending or retained.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.index)
}

// PendingCount returns how many markers are neither seen nor lost at stage.
func (t *Tracker) PendingCount(stage int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if stage < 0 || stage >= len(t.stages) {
		return 0
	}
	return t.stages[stage].pending
}

// Drain is for shutdown: it returns, oldest first, and forgets the markers
// still unresolved at any stage, so the caller can count them as untracked
// rather than lost. PendingCount, read before, gives the count per stage.
func (t *Tracker) Drain() []Marker {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settle()
	var out []Marker
	for _, i := range t.ord {
		e := t.slot(i)
		if e.flags&flagAbandoned != 0 || (e.seen|e.lost) == t.all {
			continue
		}
		out = append(out, t.marker(e))
		delete(t.index, e.id)
		t.unpend(e)
		e.flags |= flagAbandoned
		t.abandoned++
	}
	if len(out) > 0 {
		t.compact()
	}
	return out
}

func (t *Tracker) marker(e *entry) Marker {
	k := t.runs[e.run].key
	return Marker{ID: e.id, Instance: k.instance, Run: k.run, Partition: e.partition, Seq: e.seq, SentAt: time.Unix(0, e.sentAt)}
}

// intern returns the index of (instance, run) in runs, taking a reference.
// Nearly every marker has the current run, so the last one is cached.
func (t *Tracker) intern(instance, run string) uint32 {
	k := runKey{instance, run}
	if t.haveLast && t.lastKey == k {
		t.runs[t.lastRun].refs++
		return t.lastRun
	}
	i, ok := t.runIndex[k]
	if !ok {
		if n := len(t.freeRuns); n > 0 {
			i = t.freeRuns[n-1]
			t.freeRuns = t.freeRuns[:n-1]
		} else {
			i = uint32(len(t.runs))
			t.runs = append(t.runs, runInfo{})
		}
		t.runs[i] = runInfo{key: k}
		t.runIndex[k] = i
	}
	t.runs[i].refs++
	t.lastKey, t.lastRun, t.haveLast = k, i, true
	return i
}

// release frees slot i, and its run once no marker refers to it (with the
// run's sequence state: a run that is gone sends nothing more).
func (t *Tracker) release(i uint32) {
	e := t.slot(i)
	r := e.run
	*e = entry{}
	t.free = append(t.free, i)
	if t.runs[r].refs--; t.runs[r].refs > 0 {
		return
	}
	delete(t.runIndex, t.runs[r].key)
	for s := range t.stages {
		for k := range t.stages[s].seqs {
			if k.run == r {
				delete(t.stages[s].seqs, k)
			}
		}
	}
	t.runs[r] = runInfo{}
	t.freeRuns = append(t.freeRuns, r)
	if t.lastRun == r {
		t.haveLast = false
	}
}
