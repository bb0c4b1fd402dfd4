package canary

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
)

// MarkerState is one tracked marker as a checkpoint holds it: the marker and,
// by stage name, where it was already seen or declared lost.
type MarkerState struct {
	Marker     Marker
	Seen, Lost []string
}

// Export returns every marker held, oldest first, with its per-stage state.
func (t *Tracker) Export() []MarkerState {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settle()
	names := make([]string, len(t.stages))
	for n, i := range t.names {
		names[i] = n
	}
	out := make([]MarkerState, 0, len(t.index))
	for _, i := range t.ord {
		e := t.slot(i)
		if e.flags&flagAbandoned != 0 {
			continue
		}
		ms := MarkerState{Marker: t.marker(e)}
		for s := range t.stages {
			if e.seen&(1<<s) != 0 {
				ms.Seen = append(ms.Seen, names[s])
			}
			if e.lost&(1<<s) != 0 {
				ms.Lost = append(ms.Lost, names[s])
			}
		}
		out = append(out, ms)
	}
	return out
}

// Restore tracks a marker from a checkpoint as recovered, with the stages it
// was already resolved at. Stages the tracker does not have are ignored; a
// stage added since the checkpoint starts with the marker pending there. It
// returns false when the tracker is full.
func (t *Tracker) Restore(ms MarkerState) bool {
	if !t.Track(ms.Marker, true) {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.slot(t.index[ms.Marker.ID])
	mark := func(names []string, bits *uint16) {
		for _, n := range names {
			s, ok := t.names[n]
			if !ok || (e.seen|e.lost)&(1<<s) != 0 {
				continue
			}
			*bits |= 1 << s
			t.stages[s].pending--
		}
	}
	mark(ms.Seen, &e.seen)
	mark(ms.Lost, &e.lost)
	e.prior = e.seen
	return true
}

// checkpoint is the state file's content.
type checkpoint struct {
	Version  int
	SavedAt  time.Time
	Instance string
	Markers  []checkpointMarker
}

type checkpointMarker struct {
	ID         [16]byte
	Run        string
	Partition  int32
	Seq        uint64
	SentAt     int64
	Seen, Lost []string
}

const checkpointVersion = 1

// SaveCheckpoint writes the tracker's markers to path atomically (a temporary
// file renamed over it), so a crash mid-write leaves the previous checkpoint.
func SaveCheckpoint(path, instance string, now time.Time, states []MarkerState) error {
	cp := checkpoint{Version: checkpointVersion, SavedAt: now, Instance: instance, Markers: make([]checkpointMarker, 0, len(states))}
	for _, s := range states {
		if s.Marker.Instance != instance {
			continue
		}
		cp.Markers = append(cp.Markers, checkpointMarker{ID: s.Marker.ID, Run: s.Marker.Run, Partition: s.Marker.Partition,
			Seq: s.Marker.Seq, SentAt: s.Marker.SentAt.UnixNano(), Seen: s.Seen, Lost: s.Lost})
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	w := bufio.NewWriter(tmp)
	if err := gob.NewEncoder(w).Encode(&cp); err != nil {
		tmp.Close()
		return fmt.Errorf("checkpoint %s: encode: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return nil
}

// ErrNoCheckpoint is returned by LoadCheckpoint when there is no state file.
var ErrNoCheckpoint = errors.New("no checkpoint")

// LoadCheckpoint reads a state file written by SaveCheckpoint for instance.
func LoadCheckpoint(path, instance string) ([]MarkerState, time.Time, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, ErrNoCheckpoint
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	defer f.Close()
	var cp checkpoint
	if err := gob.NewDecoder(bufio.NewReader(f)).Decode(&cp); err != nil {
		return nil, time.Time{}, fmt.Errorf("checkpoint %s: damaged: %w", path, err)
	}
	if cp.Version != checkpointVersion {
		return nil, time.Time{}, fmt.Errorf("checkpoint %s: version %d, this canary reads %d", path, cp.Version, checkpointVersion)
	}
	if cp.Instance != instance {
		return nil, time.Time{}, fmt.Errorf("checkpoint %s: written by instance %q, this is %q", path, cp.Instance, instance)
	}
	out := make([]MarkerState, 0, len(cp.Markers))
	for _, m := range cp.Markers {
		out = append(out, MarkerState{
			Marker: Marker{ID: uuid.UUID(m.ID), Instance: instance, Run: m.Run, Partition: m.Partition, Seq: m.Seq, SentAt: time.Unix(0, m.SentAt)},
			Seen:   m.Seen, Lost: m.Lost,
		})
	}
	return out, cp.SavedAt, nil
}
