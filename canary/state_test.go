package canary

import (
	"encoding/gob"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slo-scout/slo-canary/probes"
)

func twoStageTracker(t *testing.T) *Tracker {
	t.Helper()
	tr, err := NewTracker(TrackerConfig{
		Stages:     []StageConfig{{Name: "database", Deadline: 10 * time.Second}, {Name: "capsules", Deadline: 10 * time.Second}},
		Budget:     5 * time.Second,
		LateWindow: time.Minute,
		MaxTracked: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestCheckpointResumesExactly: a tracker saved and restored into a new one
// carries on where the first stopped: what was seen stays seen (a re-read of
// the backlog is a replay, not a duplicate), what was lost stays lost (a
// later sighting is late), and what was pending is still pending.
func TestCheckpointResumesExactly(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	a := twoStageTracker(t)
	mk := func(seq uint64) Marker {
		return Marker{ID: uuid.New(), Instance: "c1", Run: "r1", Partition: 1, Seq: seq, SentAt: t0.Add(time.Duration(seq) * time.Second)}
	}
	seen, lost, pending := mk(1), mk(2), mk(12)
	for _, m := range []Marker{seen, lost, pending} {
		a.Track(m, false)
	}
	a.Seen(0, probes.Sighting{ID: seen.ID, At: t0.Add(2 * time.Second)})
	a.Seen(1, probes.Sighting{ID: seen.ID, At: t0.Add(2 * time.Second)})
	if n := a.Expire(0, t0.Add(13*time.Second), nil); n != 1 {
		t.Fatalf("expired %d at database, want 1 (lost)", n)
	}

	path := filepath.Join(t.TempDir(), "state")
	if err := WriteCheckpoint(path, a.Checkpoint("c1", t0.Add(14*time.Second))); err != nil {
		t.Fatal(err)
	}
	states, savedAt, err := ReadCheckpoint(path, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !savedAt.Equal(t0.Add(14*time.Second)) || len(states) != 3 {
		t.Fatalf("loaded %d markers saved at %v", len(states), savedAt)
	}
	b := twoStageTracker(t)
	for _, s := range states {
		if !b.Restore(s) {
			t.Fatal("restore refused")
		}
	}
	if got := b.PendingCount(0); got != 1 {
		t.Errorf("database pending %d after restore, want 1 (only the newest)", got)
	}
	if got := b.PendingCount(1); got != 2 {
		t.Errorf("capsules pending %d after restore, want 2", got)
	}
	at := t0.Add(16 * time.Second)
	if r := b.Seen(1, probes.Sighting{ID: seen.ID, At: at, Backlog: true}); r.Outcome != OutcomeReplayed {
		t.Errorf("re-read of a marker seen before the restart: %v, want replayed", r.Outcome)
	}
	if r := b.Seen(1, probes.Sighting{ID: seen.ID, At: at}); r.Outcome != OutcomeDuplicate {
		t.Errorf("a fresh copy after the restart: %v, want duplicate", r.Outcome)
	}
	if r := b.Seen(0, probes.Sighting{ID: lost.ID, At: at}); r.Outcome != OutcomeLate {
		t.Errorf("lost before the restart, seen after: %v, want late", r.Outcome)
	}
	if r := b.Seen(0, probes.Sighting{ID: pending.ID, At: at, Backlog: true}); r.Outcome != OutcomeUnmeasured {
		t.Errorf("pending at the restart, found in the backlog: %v, want unmeasured", r.Outcome)
	}
	if r := b.Seen(1, probes.Sighting{ID: pending.ID, At: at.Add(time.Second)}); r.Outcome != OutcomeObserved || r.Lag != 5*time.Second {
		t.Errorf("pending at the restart, arriving after it: %v lag %v, want observed with lag 5s", r.Outcome, r.Lag)
	}
}

func TestReadCheckpointErrors(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := ReadCheckpoint(filepath.Join(dir, "absent"), "c1"); err != ErrNoCheckpoint {
		t.Errorf("missing file: %v, want ErrNoCheckpoint", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not a checkpoint"), 0o600)
	if _, _, err := ReadCheckpoint(bad, "c1"); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("garbage: %v, want a 'damaged' error", err)
	}
	other := filepath.Join(dir, "other")
	if err := WriteCheckpoint(other, twoStageTracker(t).Checkpoint("c2", time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadCheckpoint(other, "c1"); err == nil || !strings.Contains(err.Error(), `instance "c2"`) {
		t.Errorf("another instance's file: %v", err)
	}
	if err := WriteCheckpoint(filepath.Join(dir, "no", "such", "dir"), twoStageTracker(t).Checkpoint("c1", time.Now())); err == nil {
		t.Error("saving into a missing directory succeeded")
	}
}

// TestCheckpointChunks: a checkpoint larger than one chunk round-trips
// marker for marker, with each marker's stages; cut short, it is reported
// damaged, never read as a smaller set.
func TestCheckpointChunks(t *testing.T) {
	a, err := NewTracker(TrackerConfig{
		Stages: []StageConfig{{Name: "database", Deadline: 10 * time.Second}, {Name: "capsules", Deadline: 10 * time.Second}},
		Budget: 5 * time.Second, LateWindow: time.Minute, MaxTracked: 20000,
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3*checkpointChunk + 17
	want := map[uuid.UUID][2]bool{}
	for i := range n {
		m := Marker{ID: uuid.New(), Instance: "c1", Run: "r1", Partition: int32(i % 7), Seq: uint64(i), SentAt: t0.Add(time.Duration(i) * time.Millisecond)}
		if !a.Track(m, false) {
			t.Fatal("Track refused")
		}
		seen := i%3 == 0
		if seen {
			a.Seen(1, probes.Sighting{ID: m.ID, At: m.SentAt.Add(time.Second)})
		}
		want[m.ID] = [2]bool{false, seen}
	}
	path := filepath.Join(t.TempDir(), "state")
	if err := WriteCheckpoint(path, a.Checkpoint("c1", t0)); err != nil {
		t.Fatal(err)
	}
	states, _, err := ReadCheckpoint(path, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != n {
		t.Fatalf("loaded %d markers, want %d", len(states), n)
	}
	for i, s := range states {
		w, ok := want[s.Marker.ID]
		if !ok || s.Marker.Seq != uint64(i) || s.Marker.Run != "r1" || !s.Marker.SentAt.Equal(t0.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("marker %d: %+v, not what was saved (or out of order)", i, s.Marker)
		}
		if got := slices.Contains(s.Seen, "capsules"); got != w[1] || slices.Contains(s.Seen, "database") || len(s.Lost) != 0 {
			t.Fatalf("marker %d: seen %v lost %v, want capsules seen %t", i, s.Seen, s.Lost, w[1])
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, data[:len(data)*2/3], 0o600)
	if _, _, err := ReadCheckpoint(path, "c1"); err == nil || !strings.Contains(err.Error(), "damaged after") {
		t.Errorf("truncated checkpoint: %v, want a 'damaged after' error", err)
	}
}

// TestCheckpointVersion1: a state file written before checkpoints were
// chunked (one gob value, stages by name) is still read, so an upgrade keeps
// the markers in flight; a file with more markers than it announces is
// damaged.
func TestCheckpointVersion1(t *testing.T) {
	type v1 struct {
		Version  int
		SavedAt  time.Time
		Instance string
		Markers  []checkpointMarkerV1
	}
	id := uuid.New()
	path := filepath.Join(t.TempDir(), "state")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	err = gob.NewEncoder(f).Encode(v1{Version: 1, SavedAt: t0, Instance: "c1", Markers: []checkpointMarkerV1{
		{ID: id, Run: "r0", Partition: 3, Seq: 9, SentAt: t0.UnixNano(), Seen: []string{"capsules"}, Lost: []string{"database"}},
	}})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	states, savedAt, err := ReadCheckpoint(path, "c1")
	if err != nil {
		t.Fatal(err)
	}
	want := MarkerState{Marker: Marker{ID: id, Instance: "c1", Run: "r0", Partition: 3, Seq: 9, SentAt: time.Unix(0, t0.UnixNano())},
		Seen: []string{"capsules"}, Lost: []string{"database"}}
	if len(states) != 1 || !savedAt.Equal(t0) || states[0].Marker != want.Marker ||
		!slices.Equal(states[0].Seen, want.Seen) || !slices.Equal(states[0].Lost, want.Lost) {
		t.Fatalf("version 1 file read as %+v saved at %v, want %+v", states, savedAt, want)
	}

	f, _ = os.Create(path)
	enc := gob.NewEncoder(f)
	enc.Encode(checkpointHeader{Version: checkpointVersion, SavedAt: t0, Instance: "c1", Count: 1})
	enc.Encode([]checkpointMarker{{ID: id}, {ID: uuid.New()}})
	f.Close()
	if _, _, err := ReadCheckpoint(path, "c1"); err == nil || !strings.Contains(err.Error(), "more markers than") {
		t.Errorf("a chunk past the announced count: %v, want a 'more markers than' error", err)
	}
}
