package canary

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slo-scout/slo-canary/probes"
)

// t0 is the tests' epoch: every time is an offset from it.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// testTrackerConfig: stage 0 "db" (10s), stage 1 "topic" (30s); markers are
// retained until SentAt+50s.
func testTrackerConfig() TrackerConfig {
	return TrackerConfig{
		Stages:     []StageConfig{{Name: "db", Deadline: 10 * time.Second}, {Name: "topic", Deadline: 30 * time.Second}},
		Budget:     5 * time.Second,
		LateWindow: 20 * time.Second,
		MaxTracked: 100,
	}
}

func newTestTracker(t testing.TB, cfg TrackerConfig) *Tracker {
	t.Helper()
	tr, err := NewTracker(cfg)
	if err != nil {
		t.Fatalf("NewTracker: %v", err)
	}
	return tr
}

// mspec describes test marker i: its id is derived from i, so failures name it.
type mspec struct {
	run  string // "" means "r1"
	part int32
	seq  uint64
	sent time.Duration
}

func (s mspec) marker(i int) Marker {
	run := s.run
	if run == "" {
		run = "r1"
	}
	return Marker{
		ID:       uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "marker-%d", i)),
		Instance: "canary-test", Run: run, Partition: s.part, Seq: s.seq, SentAt: at(s.sent),
	}
}

// The ops of a scripted scenario. Marker references are indexes into the
// case's markers; -1 is an id the tracker never saw.
type (
	opTrack struct {
		m         int
		recovered bool
		want      bool
	}
	opSeen struct {
		stage, m int
		at       time.Duration
		copies   int
		backlog  bool
		// notBefore, when not zero, is the sighting's NotBefore.
		notBefore time.Duration
		want      wantResult
	}
	opExpire struct {
		stage int
		at    time.Duration
		lost  []int
	}
	opAbandon struct {
		m    int
		want bool
	}
	opPending struct {
		stage, limit int
		want         []int
		since        time.Duration // ignored when want is empty
	}
	opCounts struct {
		held    int
		pending []int
	}
	opDrain struct{ want []int }
)

type wantResult struct {
	outcome Outcome
	lag     time.Duration
	lagMax  time.Duration // lag when zero
	good    bool
	dups    int
	ooo     bool
}

func TestTrackerScenarios(t *testing.T) {
	one := []mspec{{seq: 1}}
	seq3 := []mspec{{seq: 1}, {seq: 2, sent: time.Second}, {seq: 3, sent: 2 * time.Second}}
	cases := []struct {
		name    string
		cfg     func(*TrackerConfig)
		markers []mspec
		ops     []any
	}{
		{"observed within budget is good", nil, one, []any{
			opTrack{m: 0, want: true},
			opCounts{held: 1, pending: []int{1, 1}},
			opSeen{stage: 0, m: 0, at: 2 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true}},
			opCounts{held: 1, pending: []int{0, 1}},
			opExpire{stage: 0, at: time.Hour},
		}},
		{"lag equal to budget is good", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: 5 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 5 * time.Second, good: true}},
		}},
		{"observed over budget is not good", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: 5*time.Second + 1, want: wantResult{outcome: OutcomeObserved, lag: 5*time.Second + 1}},
		}},
		// A poll that missed the marker at notBefore and one that found it
		// at at bracket its arrival: the lag is the middle, and the SLI
		// counts it fresh only if the upper bound is within the budget.
		{"a bracketed sighting's lag is the middle of the bracket", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: 3 * time.Second, notBefore: 2 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2500 * time.Millisecond, lagMax: 3 * time.Second, good: true}},
		}},
		{"a bracketed lag within the budget whose upper bound is not is not good", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: 6 * time.Second, notBefore: 4 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 5 * time.Second, lagMax: 6 * time.Second}},
		}},
		{"a bracket opening before the send opens at the send", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: 200 * time.Millisecond, notBefore: -time.Second, want: wantResult{outcome: OutcomeObserved, lag: 100 * time.Millisecond, lagMax: 200 * time.Millisecond, good: true}},
		}},
		{"a bracket closing before it opens is ignored", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: 2 * time.Second, notBefore: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true}},
		}},
		{"a late bracketed sighting's lag is the middle too", nil, one, []any{
			opTrack{m: 0, want: true},
			opExpire{stage: 0, at: 10 * time.Second, lost: []int{0}},
			opSeen{stage: 0, m: 0, at: 15 * time.Second, notBefore: 13 * time.Second, want: wantResult{outcome: OutcomeLate, lag: 14 * time.Second, lagMax: 15 * time.Second}},
		}},
		{"seen after the deadline but before Expire is observed", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: 12 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 12 * time.Second}},
			opExpire{stage: 0, at: 12 * time.Second},
		}},
		{"lost at the deadline exactly once per stage", nil, one, []any{
			opTrack{m: 0, want: true},
			opExpire{stage: 0, at: 10*time.Second - 1},
			opExpire{stage: 0, at: 10 * time.Second, lost: []int{0}},
			opExpire{stage: 0, at: 11 * time.Second},
			opExpire{stage: 1, at: 11 * time.Second},
			opCounts{held: 1, pending: []int{0, 1}},
			opExpire{stage: 1, at: 30 * time.Second, lost: []int{0}},
			opExpire{stage: 1, at: 31 * time.Second},
			opCounts{held: 1, pending: []int{0, 0}},
		}},
		{"late within the window, then duplicate", nil, one, []any{
			opTrack{m: 0, want: true},
			opExpire{stage: 0, at: 10 * time.Second, lost: []int{0}},
			opSeen{stage: 0, m: 0, at: 15 * time.Second, want: wantResult{outcome: OutcomeLate, lag: 15 * time.Second}},
			opSeen{stage: 0, m: 0, at: 16 * time.Second, want: wantResult{outcome: OutcomeDuplicate, dups: 1}},
			opCounts{held: 1, pending: []int{0, 1}},
		}},
		{"late with copies counts the extra copies", nil, one, []any{
			opTrack{m: 0, want: true},
			opExpire{stage: 0, at: 10 * time.Second, lost: []int{0}},
			opSeen{stage: 0, m: 0, at: 30 * time.Second, copies: 2, want: wantResult{outcome: OutcomeLate, lag: 30 * time.Second, dups: 1}},
		}},
		{"past deadline plus late window is unknown, even before eviction", nil, one, []any{
			opTrack{m: 0, want: true},
			opExpire{stage: 0, at: 10 * time.Second, lost: []int{0}},
			opSeen{stage: 0, m: 0, at: 30*time.Second + 1, want: wantResult{outcome: OutcomeUnknown}},
			opCounts{held: 1, pending: []int{0, 1}},
			// Stage 1 has a longer deadline, so its window is still open.
			opSeen{stage: 1, m: 0, at: 45 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 45 * time.Second}},
		}},
		{"duplicates", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: time.Second, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true}},
			opSeen{stage: 0, m: 0, at: 2 * time.Second, want: wantResult{outcome: OutcomeDuplicate, dups: 1}},
			opSeen{stage: 0, m: 0, at: 3 * time.Second, copies: 3, want: wantResult{outcome: OutcomeDuplicate, dups: 3}},
			opSeen{stage: 1, m: 0, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 3 * time.Second, good: true}},
		}},
		{"copies on the first sighting", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: time.Second, copies: 3, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true, dups: 2}},
		}},
		{"unknown id and unknown stage", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: -1, at: time.Second, want: wantResult{outcome: OutcomeUnknown}},
			opSeen{stage: 2, m: 0, at: time.Second, want: wantResult{outcome: OutcomeUnknown}},
			opSeen{stage: -1, m: 0, at: time.Second, want: wantResult{outcome: OutcomeUnknown}},
			opCounts{held: 1, pending: []int{1, 1}},
		}},
		{"evicted after the longest deadline plus late window", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: time.Second, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true}},
			opSeen{stage: 1, m: 0, at: time.Second, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true}},
			opExpire{stage: 0, at: 50 * time.Second},
			opCounts{held: 1, pending: []int{0, 0}},
			opExpire{stage: 0, at: 50*time.Second + 1},
			opCounts{held: 0, pending: []int{0, 0}},
			opSeen{stage: 0, m: 0, at: 50*time.Second + 1, want: wantResult{outcome: OutcomeUnknown}},
		}},
		{"not evicted while a stage is unresolved", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 1, m: 0, at: time.Second, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true}},
			opExpire{stage: 1, at: time.Hour},
			opCounts{held: 1, pending: []int{1, 0}},
			opExpire{stage: 0, at: time.Hour, lost: []int{0}},
			opCounts{held: 0, pending: []int{0, 0}},
		}},
		{"out of order across polls", nil, seq3, []any{
			opTrack{m: 0, want: true}, opTrack{m: 1, want: true}, opTrack{m: 2, want: true},
			opSeen{stage: 0, m: 2, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true}},
			opSeen{stage: 0, m: 0, at: 4 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 4 * time.Second, good: true, ooo: true}},
			opSeen{stage: 0, m: 1, at: 4 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 3 * time.Second, good: true, ooo: true}},
			// Another stage keeps its own order.
			opSeen{stage: 1, m: 0, at: 4 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 4 * time.Second, good: true}},
		}},
		{"no order within one poll", nil, seq3, []any{
			opTrack{m: 0, want: true}, opTrack{m: 1, want: true}, opTrack{m: 2, want: true},
			opSeen{stage: 0, m: 2, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true}},
			opSeen{stage: 0, m: 0, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 3 * time.Second, good: true}},
			opSeen{stage: 0, m: 1, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true}},
		}},
		{"a gap is not out of order; the late one is", nil, seq3, []any{
			opTrack{m: 0, want: true}, opTrack{m: 1, want: true}, opTrack{m: 2, want: true},
			opSeen{stage: 0, m: 0, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 3 * time.Second, good: true}},
			opSeen{stage: 0, m: 2, at: 4 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true}},
			opExpire{stage: 0, at: 11 * time.Second, lost: []int{1}},
			opSeen{stage: 0, m: 1, at: 12 * time.Second, want: wantResult{outcome: OutcomeLate, lag: 11 * time.Second, ooo: true}},
		}},
		{"order is per run and partition", nil, []mspec{{seq: 5}, {seq: 1, part: 1}, {seq: 1, run: "r2"}}, []any{
			opTrack{m: 0, want: true}, opTrack{m: 1, want: true}, opTrack{m: 2, want: true},
			opSeen{stage: 0, m: 0, at: time.Second, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true}},
			opSeen{stage: 0, m: 1, at: 2 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true}},
			opSeen{stage: 0, m: 2, at: 2 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true}},
		}},
		{"recovered marker in the backlog is unmeasured", nil, one, []any{
			opTrack{m: 0, recovered: true, want: true},
			opSeen{stage: 0, m: 0, at: 2 * time.Second, backlog: true, want: wantResult{outcome: OutcomeUnmeasured}},
			opCounts{held: 1, pending: []int{0, 1}},
			opExpire{stage: 0, at: time.Minute},
			opSeen{stage: 0, m: 0, at: 3 * time.Second, backlog: true, want: wantResult{outcome: OutcomeDuplicate, dups: 1}},
		}},
		{"recovered marker seen live is observed", nil, one, []any{
			opTrack{m: 0, recovered: true, want: true},
			opSeen{stage: 0, m: 0, at: 2 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true}},
		}},
		{"backlog of a marker of this run is observed", nil, one, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: 2 * time.Second, backlog: true, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true}},
		}},
		{"recovered past its deadline is lost by the next Expire", nil, []mspec{{seq: 1, sent: time.Minute}, {seq: 7, sent: 0}}, []any{
			opTrack{m: 0, want: true},
			opTrack{m: 1, recovered: true, want: true},
			opExpire{stage: 0, at: 20 * time.Second, lost: []int{1}},
			opCounts{held: 2, pending: []int{1, 2}},
		}},
		{"recovered in the backlog after it was lost is late", nil, one, []any{
			opTrack{m: 0, recovered: true, want: true},
			opExpire{stage: 0, at: 20 * time.Second, lost: []int{0}},
			opSeen{stage: 0, m: 0, at: 21 * time.Second, backlog: true, want: wantResult{outcome: OutcomeLate, lag: 21 * time.Second}},
		}},
		{"tracking an id twice is idempotent", nil, one, []any{
			opTrack{m: 0, want: true},
			opTrack{m: 0, want: true},
			opTrack{m: 0, recovered: true, want: true},
			opCounts{held: 1, pending: []int{1, 1}},
			opExpire{stage: 0, at: 10 * time.Second, lost: []int{0}},
		}},
		{"max tracked refuses, eviction makes room", func(c *TrackerConfig) { c.MaxTracked = 2 }, seq3, []any{
			opTrack{m: 0, want: true}, opTrack{m: 1, want: true},
			opTrack{m: 2, want: false},
			opCounts{held: 2, pending: []int{2, 2}},
			opSeen{stage: 0, m: 2, at: 3 * time.Second, want: wantResult{outcome: OutcomeUnknown}},
			opExpire{stage: 0, at: time.Hour, lost: []int{0, 1}},
			opExpire{stage: 1, at: time.Hour, lost: []int{0, 1}},
			opTrack{m: 2, want: true},
			opCounts{held: 1, pending: []int{1, 1}},
			// The run was forgotten with its last marker, and is learnt again.
			opSeen{stage: 0, m: 2, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true}},
		}},
		{"abandoned markers are forgotten", nil, seq3, []any{
			opTrack{m: 0, want: true}, opTrack{m: 1, want: true}, opTrack{m: 2, want: true},
			opAbandon{m: 1, want: true}, // in the middle: a tombstone
			opAbandon{m: 2, want: true}, // the newest: removed at once
			opAbandon{m: 2, want: false},
			opAbandon{m: -1, want: false},
			opCounts{held: 1, pending: []int{1, 1}},
			opPending{stage: 0, limit: 10, want: []int{0}},
			opSeen{stage: 0, m: 1, at: 3 * time.Second, want: wantResult{outcome: OutcomeUnknown}},
			opExpire{stage: 0, at: time.Hour, lost: []int{0}},
			opExpire{stage: 1, at: time.Hour, lost: []int{0}},
			opCounts{held: 0, pending: []int{0, 0}},
		}},
		{"abandoning the newest marker after a sighting", nil, seq3, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: time.Second, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true}},
			opPending{stage: 0, limit: 10},
			opAbandon{m: 0, want: true},
			opTrack{m: 1, want: true},
			opPending{stage: 0, limit: 10, want: []int{1}, since: time.Second},
		}},
		{"compaction keeps the pending behind the cursor", func(c *TrackerConfig) { c.MaxTracked = 4 },
			[]mspec{{seq: 1}, {seq: 2, sent: time.Second}, {seq: 3, sent: 2 * time.Second}, {seq: 4, sent: 3 * time.Second}, {seq: 5, sent: 4 * time.Second}},
			[]any{
				opTrack{m: 0, want: true}, opTrack{m: 1, want: true}, opTrack{m: 2, want: true}, opTrack{m: 3, want: true},
				opAbandon{m: 0, want: true},
				opSeen{stage: 0, m: 1, at: 5 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 4 * time.Second, good: true}},
				opPending{stage: 0, limit: 10, want: []int{2, 3}, since: 2 * time.Second},
				opTrack{m: 4, want: true},
				opPending{stage: 0, limit: 10, want: []int{2, 3, 4}, since: 2 * time.Second},
				opExpire{stage: 0, at: 12 * time.Second, lost: []int{2}},
			}},
		{"tombstones are compacted when the tracker is full", func(c *TrackerConfig) { c.MaxTracked = 3 }, []mspec{{seq: 1}, {seq: 2, sent: 1}, {seq: 3, sent: 2}, {seq: 4, sent: 3}}, []any{
			opTrack{m: 0, want: true}, opTrack{m: 1, want: true}, opTrack{m: 2, want: true},
			opAbandon{m: 0, want: true},
			opTrack{m: 3, want: true},
			opCounts{held: 3, pending: []int{3, 3}},
			opPending{stage: 1, limit: 10, want: []int{1, 2, 3}, since: 1},
		}},
		{"pending is oldest first, bounded, skips resolved", nil, []mspec{{seq: 1}, {seq: 2, sent: time.Second}, {seq: 3, sent: 2 * time.Second}, {seq: 4, sent: 3 * time.Second}}, []any{
			opTrack{m: 0, want: true}, opTrack{m: 1, want: true}, opTrack{m: 2, want: true}, opTrack{m: 3, want: true},
			opPending{stage: 0, limit: 2, want: []int{0, 1}, since: 0},
			opPending{stage: 0, limit: 0},
			opSeen{stage: 0, m: 0, at: 4 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 4 * time.Second, good: true}},
			opSeen{stage: 0, m: 2, at: 4 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true, ooo: false}},
			opPending{stage: 0, limit: 10, want: []int{1, 3}, since: time.Second},
			opPending{stage: 1, limit: 10, want: []int{0, 1, 2, 3}, since: 0},
			opExpire{stage: 0, at: 11 * time.Second, lost: []int{1}},
			opPending{stage: 0, limit: 10, want: []int{3}, since: 3 * time.Second},
			opSeen{stage: 0, m: 3, at: 5 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true}},
			opPending{stage: 0, limit: 10},
		}},
		{"markers tracked out of order are pending and expire in SentAt order", nil,
			[]mspec{{seq: 10, sent: 100 * time.Second}, {seq: 11, sent: 101 * time.Second}, {seq: 3, sent: 95 * time.Second}, {seq: 1, sent: 80 * time.Second}},
			[]any{
				opTrack{m: 0, want: true}, opTrack{m: 1, want: true},
				opTrack{m: 2, recovered: true, want: true}, opTrack{m: 3, recovered: true, want: true},
				opPending{stage: 0, limit: 10, want: []int{3, 2, 0, 1}, since: 80 * time.Second},
				opExpire{stage: 0, at: 105 * time.Second, lost: []int{3, 2}},
				opPending{stage: 0, limit: 10, want: []int{0, 1}, since: 100 * time.Second},
			}},
		{"a racing sender's marker lands behind resolved ones and is still pending", nil,
			[]mspec{{seq: 1}, {seq: 2, sent: 2 * time.Second}, {seq: 3, sent: time.Second}},
			[]any{
				opTrack{m: 0, want: true}, opTrack{m: 1, want: true},
				opSeen{stage: 0, m: 0, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 3 * time.Second, good: true}},
				opSeen{stage: 0, m: 1, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: time.Second, good: true}},
				opPending{stage: 0, limit: 10},
				opTrack{m: 2, want: true},
				opPending{stage: 0, limit: 10, want: []int{2}, since: time.Second},
				opExpire{stage: 0, at: 11 * time.Second, lost: []int{2}},
			}},
		{"negative lag is clamped", nil, []mspec{{seq: 1, sent: 10 * time.Second}}, []any{
			opTrack{m: 0, want: true},
			opSeen{stage: 0, m: 0, at: 9 * time.Second, want: wantResult{outcome: OutcomeObserved, good: true}},
		}},
		{"drain returns and forgets the unresolved", nil, seq3, []any{
			opTrack{m: 0, want: true}, opTrack{m: 1, want: true}, opTrack{m: 2, want: true},
			opSeen{stage: 0, m: 0, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 3 * time.Second, good: true}},
			opSeen{stage: 1, m: 0, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 3 * time.Second, good: true}},
			opSeen{stage: 0, m: 1, at: 3 * time.Second, want: wantResult{outcome: OutcomeObserved, lag: 2 * time.Second, good: true}},
			opDrain{want: []int{1, 2}},
			opCounts{held: 1, pending: []int{0, 0}},
			opDrain{},
			opSeen{stage: 1, m: 1, at: 4 * time.Second, want: wantResult{outcome: OutcomeUnknown}},
			opSeen{stage: 0, m: 0, at: 4 * time.Second, want: wantResult{outcome: OutcomeDuplicate, dups: 1}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testTrackerConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			tr := newTestTracker(t, cfg)
			ms := make([]Marker, len(tc.markers))
			for i, s := range tc.markers {
				ms[i] = s.marker(i)
			}
			id := func(i int) uuid.UUID {
				if i < 0 {
					return uuid.NewSHA1(uuid.NameSpaceOID, []byte("foreign"))
				}
				return ms[i].ID
			}
			ids := func(is []int) []uuid.UUID {
				out := []uuid.UUID{}
				for _, i := range is {
					out = append(out, id(i))
				}
				return out
			}
			for n, op := range tc.ops {
				switch op := op.(type) {
				case opTrack:
					if got := tr.Track(ms[op.m], op.recovered); got != op.want {
						t.Fatalf("op %d: Track(m%d) = %v, want %v", n, op.m, got, op.want)
					}
				case opSeen:
					sg := probes.Sighting{ID: id(op.m), At: at(op.at), Copies: op.copies, Backlog: op.backlog}
					if op.notBefore != 0 {
						sg.NotBefore = at(op.notBefore)
					}
					got := tr.Seen(op.stage, sg)
					lagMax := op.want.lagMax
					if lagMax == 0 {
						lagMax = op.want.lag
					}
					want := Result{Outcome: op.want.outcome, Lag: op.want.lag, LagMax: lagMax, Good: op.want.good, Duplicates: op.want.dups, OutOfOrder: op.want.ooo}
					if op.want.outcome != OutcomeUnknown {
						want.Marker = ms[op.m]
					}
					if !sameResult(got, want) {
						t.Fatalf("op %d: Seen(stage %d, m%d at %v) =\n  %+v\nwant\n  %+v", n, op.stage, op.m, op.at, got, want)
					}
				case opExpire:
					var lost []uuid.UUID
					got := tr.Expire(op.stage, at(op.at), func(m Marker) { lost = append(lost, m.ID) })
					if want := ids(op.lost); got != len(want) || !slices.Equal(lost, want) {
						t.Fatalf("op %d: Expire(stage %d, %v) = %d, lost %v; want %v", n, op.stage, op.at, got, lost, want)
					}
				case opAbandon:
					if got := tr.Abandon(id(op.m)); got != op.want {
						t.Fatalf("op %d: Abandon(m%d) = %v, want %v", n, op.m, got, op.want)
					}
				case opPending:
					got, since := tr.Pending(op.stage, nil, op.limit)
					want := ids(op.want)
					var wantSince time.Time
					if len(want) > 0 {
						wantSince = at(op.since)
					}
					if !slices.Equal(got, want) || !since.Equal(wantSince) {
						t.Fatalf("op %d: Pending(stage %d, %d) = %v, %v; want %v, %v", n, op.stage, op.limit, got, since, want, wantSince)
					}
				case opCounts:
					if got := tr.Len(); got != op.held {
						t.Fatalf("op %d: Len() = %d, want %d", n, got, op.held)
					}
					for s, want := range op.pending {
						if got := tr.PendingCount(s); got != want {
							t.Fatalf("op %d: PendingCount(%d) = %d, want %d", n, s, got, want)
						}
					}
				case opDrain:
					var got []uuid.UUID
					for _, m := range tr.Drain() {
						got = append(got, m.ID)
					}
					if want := ids(op.want); !slices.Equal(got, want) {
						t.Fatalf("op %d: Drain() = %v, want %v", n, got, want)
					}
				default:
					t.Fatalf("op %d: unknown op %T", n, op)
				}
			}
		})
	}
}

// sameResult compares results; SentAt compares as an instant, since the
// tracker keeps wall-clock nanoseconds only.
func sameResult(a, b Result) bool {
	am, bm := a.Marker, b.Marker
	if !am.SentAt.Equal(bm.SentAt) {
		return false
	}
	am.SentAt, bm.SentAt = time.Time{}, time.Time{}
	a.Marker, b.Marker = am, bm
	return a == b
}

func TestNewTrackerRejects(t *testing.T) {
	cases := []struct {
		name string
		edit func(*TrackerConfig)
		want string
	}{
		{"no stages", func(c *TrackerConfig) { c.Stages = nil }, "tracker: 0 stages, want 1 to 16"},
		{"too many stages", func(c *TrackerConfig) {
			c.Stages = nil
			for i := range 17 {
				c.Stages = append(c.Stages, StageConfig{Name: fmt.Sprint("s", i), Deadline: time.Second})
			}
		}, "tracker: 17 stages, want 1 to 16"},
		{"unnamed stage", func(c *TrackerConfig) { c.Stages[1].Name = "" }, "tracker: stage 1 has no name"},
		{"stage twice", func(c *TrackerConfig) { c.Stages[1].Name = "db" }, `tracker: stage "db" configured twice`},
		{"zero deadline", func(c *TrackerConfig) { c.Stages[1].Deadline = 0 }, `tracker: stage "topic": deadline 0s must be positive`},
		{"zero budget", func(c *TrackerConfig) { c.Budget = 0 }, "tracker: freshness budget 0s must be positive"},
		{"negative late window", func(c *TrackerConfig) { c.LateWindow = -time.Second }, "tracker: late window -1s must not be negative"},
		{"zero max tracked", func(c *TrackerConfig) { c.MaxTracked = 0 }, "tracker: max tracked 0 must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testTrackerConfig()
			tc.edit(&cfg)
			_, err := NewTracker(cfg)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("NewTracker() error = %v, want %q", err, tc.want)
			}
		})
	}
	tr := newTestTracker(t, testTrackerConfig())
	if i, ok := tr.StageIndex("topic"); !ok || i != 1 {
		t.Fatalf(`StageIndex("topic") = %d, %v; want 1, true`, i, ok)
	}
	if _, ok := tr.StageIndex("api"); ok {
		t.Fatal(`StageIndex("api") found a stage that is not configured`)
	}
}

func TestOutcomeString(t *testing.T) {
	var got []string
	for o := OutcomeObserved; o <= OutcomeReplayed+1; o++ {
		got = append(got, o.String())
	}
	if want := "observed unmeasured late duplicate unknown replayed outcome(6)"; strings.Join(got, " ") != want {
		t.Fatalf("Outcome names = %q, want %q", strings.Join(got, " "), want)
	}
}

// TestTrackerProperties drives the tracker with thousands of markers and a
// random pipeline (drops, delays past deadline and past the late window,
// copies, a restart's backlog, abandoned produces, senders racing) and checks
// every outcome against an independent model of the rules.
func TestTrackerProperties(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { checkTrackerProperties(t, seed) })
	}
}

func checkTrackerProperties(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	const (
		tick       = time.Second
		lateWindow = 15 * time.Second
		parts      = 4
		nOld, nNew = 600, 2400
	)
	deadlines := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second}
	cfg := TrackerConfig{Budget: 4 * time.Second, LateWindow: lateWindow, MaxTracked: nOld + nNew}
	for i, d := range deadlines {
		cfg.Stages = append(cfg.Stages, StageConfig{Name: fmt.Sprint("stage", i), Deadline: d})
	}
	tr := newTestTracker(t, cfg)
	start := t0.Add(time.Minute) // the restart: old markers were sent before it

	type mk struct {
		Marker
		recovered, abandoned bool
		trackAt              time.Time
	}
	var ms []mk
	seqs := map[string]uint64{}
	addMarker := func(run string, sent time.Time) {
		p := int32(rng.IntN(parts))
		k := fmt.Sprint(run, p)
		seqs[k]++
		ms = append(ms, mk{Marker: Marker{
			ID: uuid.New(), Instance: "prop", Run: run, Partition: p, Seq: seqs[k], SentAt: sent,
		}})
	}
	// Old markers, sent in the minute before the restart, are recovered in a
	// shuffled order; new ones are sent over 5 minutes by racing senders.
	for i := range nOld {
		addMarker("old", t0.Add(time.Duration(i)*time.Minute/nOld))
	}
	for i := range nNew {
		addMarker("new", start.Add(time.Duration(i)*5*time.Minute/nNew))
	}
	for i := range ms {
		m := &ms[i]
		m.recovered = m.Run == "old"
		m.trackAt = start
		if !m.recovered {
			m.trackAt = m.SentAt
			if rng.IntN(10) == 0 { // a concurrent sender stamped it earlier
				m.SentAt = m.SentAt.Add(-time.Duration(rng.IntN(3000)) * time.Millisecond)
			}
			m.abandoned = rng.IntN(50) == 0
		}
	}
	rng.Shuffle(nOld, func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })

	// The pipeline: per marker and stage, dropped or delivered after a delay
	// (mostly in time, some late, some past the late window), sometimes
	// with copies in the first sighting or extra sightings after it.
	type sighting struct {
		m, stage int
		at       time.Time
		copies   int
		backlog  bool
		first    bool
	}
	var sightings []sighting
	for i := range ms {
		m := &ms[i]
		for s, d := range deadlines {
			var delay time.Duration
			switch r := rng.IntN(100); {
			case r < 8:
				continue
			case r < 75:
				delay = time.Duration(rng.Int64N(int64(d)))
			case r < 90:
				delay = d + time.Duration(rng.Int64N(int64(lateWindow)))
			default:
				delay = d + lateWindow + time.Duration(rng.Int64N(int64(time.Minute)))
			}
			// Nothing is delivered before it is produced, after Track.
			first := sighting{m: i, stage: s, at: m.SentAt.Add(delay), copies: 1, first: true}
			if first.at.Before(m.trackAt) && !m.recovered {
				first.at = m.trackAt
			}
			if rng.IntN(10) == 0 {
				first.copies = 2 + rng.IntN(2)
			}
			sightings = append(sightings, first)
			for range rng.IntN(3) * rng.IntN(2) {
				sightings = append(sightings, sighting{m: i, stage: s, at: first.at.Add(time.Duration(rng.Int64N(int64(20 * time.Second)))), copies: 1})
			}
		}
	}
	// Stage 0 is polled: a sighting is stamped with the poll that found it,
	// and what was delivered while the canary was down shows up in the first
	// poll as backlog. Stages 1 and 2 stream: each copy at its own time.
	for k := range sightings {
		sg := &sightings[k]
		if sg.at.Before(start) {
			sg.at, sg.backlog = start, true
		}
		if sg.stage == 0 {
			sg.at = start.Add(ceilDur(sg.at.Sub(start), tick))
		}
	}
	slices.SortStableFunc(sightings, func(a, b sighting) int { return a.at.Compare(b.at) })

	type tally struct{ observed, unmeasured, lost, late, dups int }
	got := make([]tally, len(deadlines))
	resolved := make([][]string, len(ms))
	for i := range resolved {
		resolved[i] = make([]string, len(deadlines))
	}
	byID := map[uuid.UUID]int{}
	for i := range ms {
		byID[ms[i].ID] = i
	}
	type firstSeen struct {
		stage, m int
		at       time.Time
		ooo      bool
	}
	var firsts []firstSeen
	resolve := func(i, s int, what string) {
		if resolved[i][s] != "" {
			t.Fatalf("marker %d stage %d resolved twice: %s then %s", i, s, resolved[i][s], what)
		}
		resolved[i][s] = what
	}

	// The clock: at each tick, track what was sent by then (abandoning a
	// few), report every stage's sightings, then expire every stage.
	next, sg := 0, 0
	end := start.Add(5*time.Minute + deadlines[2] + lateWindow + 2*time.Minute)
	for now := start; !now.After(end); now = now.Add(tick) {
		for ; next < len(ms) && !ms[next].trackAt.After(now); next++ {
			if !tr.Track(ms[next].Marker, ms[next].recovered) {
				t.Fatalf("Track(marker %d) refused", next)
			}
			if ms[next].abandoned && !tr.Abandon(ms[next].ID) {
				t.Fatalf("Abandon(marker %d) did not find it", next)
			}
		}
		for ; sg < len(sightings) && !sightings[sg].at.After(now); sg++ {
			x := sightings[sg]
			r := tr.Seen(x.stage, probes.Sighting{ID: ms[x.m].ID, At: x.at, Copies: x.copies, Backlog: x.backlog})
			g := &got[x.stage]
			g.dups += r.Duplicates
			switch r.Outcome {
			case OutcomeObserved:
				g.observed++
				resolve(x.m, x.stage, "observed")
				if want := max(x.at.Sub(ms[x.m].SentAt), 0); r.Lag != want || r.Good != (want <= cfg.Budget) {
					t.Fatalf("marker %d stage %d: lag %v good %v, want lag %v", x.m, x.stage, r.Lag, r.Good, want)
				}
			case OutcomeUnmeasured:
				g.unmeasured++
				resolve(x.m, x.stage, "unmeasured")
			case OutcomeLate:
				g.late++
				if resolved[x.m][x.stage] != "lost" {
					t.Fatalf("marker %d stage %d: late but %q", x.m, x.stage, resolved[x.m][x.stage])
				}
				resolved[x.m][x.stage] = "late"
			}
			if r.Outcome <= OutcomeLate {
				firsts = append(firsts, firstSeen{stage: x.stage, m: x.m, at: x.at, ooo: r.OutOfOrder})
			}
		}
		for s := range deadlines {
			tr.Expire(s, now, func(m Marker) {
				got[s].lost++
				resolve(byID[m.ID], s, "lost")
			})
		}
	}

	// The model, from the sightings alone. Expire at tick T declares lost
	// what no sighting stamped <= T found; a sighting past SentAt+Deadline+
	// LateWindow finds nothing; abandoned markers count nowhere.
	want := make([]tally, len(deadlines))
	found := map[[2]int]bool{}
	for _, x := range sightings {
		m := ms[x.m]
		if m.abandoned {
			continue
		}
		d := deadlines[x.stage]
		if x.at.After(m.SentAt.Add(d + lateWindow)) {
			continue
		}
		w := &want[x.stage]
		if !x.first {
			w.dups += x.copies
			continue
		}
		found[[2]int{x.m, x.stage}] = true
		w.dups += x.copies - 1
		due := start.Add(ceilDur(max(m.SentAt.Add(d).Sub(start), 0), tick))
		switch {
		case x.at.After(due):
			w.late++
		case m.recovered && x.backlog:
			w.unmeasured++
		default:
			w.observed++
		}
	}
	live := 0
	for i, m := range ms {
		if m.abandoned {
			continue
		}
		live++
		for s := range deadlines {
			if resolved[i][s] == "" {
				t.Fatalf("marker %d stage %d never resolved", i, s)
			}
		}
	}
	for s := range deadlines {
		w := &want[s]
		w.lost = live - w.observed - w.unmeasured
		g := got[s]
		if g != *w {
			t.Errorf("stage %d: got %+v, want %+v", s, g, *w)
		}
		if n := tr.PendingCount(s); n != 0 {
			t.Errorf("stage %d: %d still pending", s, n)
		}
		if g.late == 0 || g.lost == g.late || g.dups == 0 || (s == 0 && g.unmeasured == 0) {
			t.Errorf("stage %d: the random pipeline missed a case: %+v", s, g)
		}
	}
	if n := tr.Len(); n != 0 {
		t.Errorf("%d markers still held after everything expired", n)
	}

	// Out of order, by brute force: a first sighting is an inversion when a
	// higher Seq of the same run and partition was first seen at an earlier
	// instant at the same stage.
	inversions := 0
	type orderKey struct {
		stage int
		run   string
		part  int32
	}
	earlier := map[orderKey][]firstSeen{}
	for _, f := range firsts {
		m := ms[f.m]
		k := orderKey{f.stage, m.Run, m.Partition}
		wantOOO := false
		for _, g := range earlier[k] {
			if ms[g.m].Seq > m.Seq && g.at.Before(f.at) {
				wantOOO = true
				break
			}
		}
		earlier[k] = append(earlier[k], f)
		if f.ooo != wantOOO {
			t.Fatalf("marker %d (run %s partition %d seq %d) stage %d at %v: out of order %v, want %v",
				f.m, m.Run, m.Partition, m.Seq, f.stage, f.at.Sub(start), f.ooo, wantOOO)
		}
		if wantOOO {
			inversions++
		}
	}
	if inversions == 0 {
		t.Error("the random pipeline produced no inversion")
	}
}

func ceilDur(d, unit time.Duration) time.Duration {
	if r := d % unit; r != 0 {
		d += unit - r
	}
	return d
}

// TestTrackerConcurrent runs senders, observers and expiry at once (for -race)
// and checks that no marker resolves twice at a stage and none goes missing.
func TestTrackerConcurrent(t *testing.T) {
	cfg := testTrackerConfig()
	cfg.MaxTracked = 100000
	tr := newTestTracker(t, cfg)
	const senders, perSender = 4, 2000
	var mu sync.Mutex
	resolved := map[[2]uint64]int{} // (marker index, stage) -> resolutions
	note := func(m Marker, stage int) {
		mu.Lock()
		resolved[[2]uint64{m.Seq, uint64(stage)}]++
		mu.Unlock()
	}
	ids := make(chan Marker, 1024)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				n := uint64(s*perSender + i)
				m := Marker{ID: uuid.New(), Instance: "c", Run: "r", Partition: int32(s), Seq: n, SentAt: at(time.Duration(i) * 10 * time.Millisecond)}
				if !tr.Track(m, false) {
					t.Errorf("Track refused marker %d", n)
					return
				}
				ids <- m
			}
		})
	}
	var obs sync.WaitGroup
	for stage := range 2 {
		obs.Go(func() {
			// Sighting half the markers; expiry races with the sightings.
			var buf []uuid.UUID
			for i := 0; ; i++ {
				buf, _ = tr.Pending(stage, buf[:0], 64)
				m, ok := <-ids
				if !ok {
					return
				}
				if i%2 == 0 {
					if r := tr.Seen(stage, probes.Sighting{ID: m.ID, At: at(time.Duration(i) * 10 * time.Millisecond), Copies: 1}); r.Outcome <= OutcomeUnmeasured {
						note(m, stage)
					}
				}
				if i%100 == 0 {
					tr.Expire(stage, at(time.Duration(i)*10*time.Millisecond), func(m Marker) { note(m, stage) })
				}
			}
		})
	}
	wg.Wait()
	close(ids)
	obs.Wait()
	for stage := range 2 {
		tr.Expire(stage, at(time.Hour), func(m Marker) { note(m, stage) })
	}
	if n := tr.Len(); n != 0 {
		t.Fatalf("%d markers held after expiry", n)
	}
	for stage := range 2 {
		n := 0
		for k, c := range resolved {
			if k[1] == uint64(stage) {
				n++
				if c != 1 {
					t.Fatalf("marker %d stage %d resolved %d times", k[0], stage, c)
				}
			}
		}
		// Each marker went to one observer only; at the other stage it is lost.
		if n != senders*perSender {
			t.Fatalf("stage %d: %d markers resolved, want %d", stage, n, senders*perSender)
		}
	}
}

// TestTracker1MPendingMemory holds the tracker to its memory budget: a million
// markers pending at two stages in under 200 MB of heap.
func TestTracker1MPendingMemory(t *testing.T) {
	if testing.Short() || raceEnabled() {
		t.Skip("tracks a million markers: too slow for -short or -race, and not about concurrency")
	}
	const n, budgetMB = 1_000_000, 200
	cfg := testTrackerConfig()
	cfg.MaxTracked = n
	before := heapInUse()
	tr := newTestTracker(t, cfg)
	for i := range uint64(n) {
		if !tr.Track(benchMarker(i), false) {
			t.Fatalf("Track refused marker %d", i)
		}
	}
	mb := float64(heapInUse()-before) / 1e6
	runtime.KeepAlive(tr)
	t.Logf("%d pending markers hold %.1f MB (%.0f B/marker)", n, mb, mb*1e6/n)
	if mb >= budgetMB {
		t.Fatalf("%d pending markers hold %.1f MB, budget %d MB", n, mb, budgetMB)
	}
	if got := tr.PendingCount(1); got != n {
		t.Fatalf("PendingCount(1) = %d, want %d", got, n)
	}
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
