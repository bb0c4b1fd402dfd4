package canary

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/slo-scout/slo-canary/internal/atomicfile"
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
	names := t.stageNames()
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

// stageNames returns the stages' names by index; t.mu must be held.
func (t *Tracker) stageNames() []string {
	names := make([]string, len(t.stages))
	for n, i := range t.names {
		names[i] = n
	}
	return names
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

// A state file is a gob stream: a checkpointHeader, then the markers in
// chunks of at most checkpointChunk, so that neither writing nor reading
// builds the whole file in memory at once.
type checkpointHeader struct {
	Version  int
	SavedAt  time.Time
	Instance string
	Stages   []string // the stage of bit i of Seen and Lost
	Count    int      // markers in the chunks that follow
	// Markers holds a version 1 file's markers (one gob value, stages by
	// name), read so that an upgrade keeps the checkpoint; never written.
	Markers []checkpointMarkerV1
}

type checkpointMarkerV1 struct {
	ID         [16]byte
	Run        string
	Partition  int32
	Seq        uint64
	SentAt     int64
	Seen, Lost []string
}

type checkpointMarker struct {
	ID         [16]byte
	Run        string
	Partition  int32
	Seq        uint64
	SentAt     int64
	Seen, Lost uint16 // stage bits, by Stages
}

const (
	checkpointVersion = 2
	checkpointChunk   = 4096
)

// Checkpoint is the tracker's markers of one instance as a state file holds
// them, in their compact form. WriteCheckpoint writes it; ReadCheckpoint reads
// the file back as MarkerStates.
type Checkpoint struct {
	SavedAt  time.Time
	Instance string
	Stages   []string // the stage of bit i of a marker's seen and lost bits
	markers  []checkpointMarker
}

// Checkpoint copies the markers of instance, oldest first, taken at now. The
// tracker is locked only while they are copied, in their compact form.
func (t *Tracker) Checkpoint(instance string, now time.Time) Checkpoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settle()
	c := Checkpoint{SavedAt: now, Instance: instance, Stages: t.stageNames(), markers: make([]checkpointMarker, 0, len(t.index))}
	for _, i := range t.ord {
		e := t.slot(i)
		if e.flags&flagAbandoned != 0 {
			continue
		}
		m := t.marker(e)
		if m.Instance != instance {
			continue
		}
		c.markers = append(c.markers, checkpointMarker{ID: m.ID, Run: m.Run, Partition: m.Partition, Seq: m.Seq,
			SentAt: m.SentAt.UnixNano(), Seen: e.seen, Lost: e.lost})
	}
	return c
}

// WriteCheckpoint writes c to path atomically (a temporary file renamed over
// it), so a crash mid-write leaves the previous checkpoint.
func WriteCheckpoint(path string, c Checkpoint) error {
	h := checkpointHeader{Version: checkpointVersion, SavedAt: c.SavedAt, Instance: c.Instance, Stages: c.Stages, Count: len(c.markers)}
	err := atomicfile.Write(path, func(w io.Writer) error {
		enc := gob.NewEncoder(w)
		err := enc.Encode(&h)
		for start := 0; err == nil && start < len(c.markers); start += checkpointChunk {
			err = enc.Encode(c.markers[start:min(start+checkpointChunk, len(c.markers))])
		}
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// ErrNoCheckpoint is returned by ReadCheckpoint when there is no state file.
var ErrNoCheckpoint = errors.New("no checkpoint")

// ReadCheckpoint reads a state file written by WriteCheckpoint for instance.
func ReadCheckpoint(path, instance string) ([]MarkerState, time.Time, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, ErrNoCheckpoint
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	defer f.Close()
	dec := gob.NewDecoder(bufio.NewReader(f))
	var h checkpointHeader
	if err := dec.Decode(&h); err != nil {
		return nil, time.Time{}, fmt.Errorf("checkpoint %s: damaged: %w", path, err)
	}
	if h.Version != 1 && h.Version != checkpointVersion {
		return nil, time.Time{}, fmt.Errorf("checkpoint %s: version %d, this canary reads 1 and %d", path, h.Version, checkpointVersion)
	}
	if h.Instance != instance {
		return nil, time.Time{}, fmt.Errorf("checkpoint %s: written by instance %q, this is %q", path, h.Instance, instance)
	}
	if h.Version == 1 {
		out := make([]MarkerState, 0, len(h.Markers))
		for _, m := range h.Markers {
			out = append(out, MarkerState{
				Marker: Marker{ID: uuid.UUID(m.ID), Instance: instance, Run: m.Run, Partition: m.Partition, Seq: m.Seq, SentAt: time.Unix(0, m.SentAt)},
				Seen:   m.Seen, Lost: m.Lost,
			})
		}
		return out, h.SavedAt, nil
	}
	if h.Count < 0 || len(h.Stages) > 16 {
		return nil, time.Time{}, fmt.Errorf("checkpoint %s: damaged: %d markers, %d stages", path, h.Count, len(h.Stages))
	}
	names := func(bits uint16) []string {
		var l []string
		for i, n := range h.Stages {
			if bits&(1<<i) != 0 {
				l = append(l, n)
			}
		}
		return l
	}
	// The count is outside input: grow with what is read, not by it.
	var out []MarkerState
	for len(out) < h.Count {
		// A fresh slice per chunk: gob leaves out zero fields, so decoding
		// into a reused one would keep the previous chunk's values.
		var chunk []checkpointMarker
		if err := dec.Decode(&chunk); err != nil {
			return nil, time.Time{}, fmt.Errorf("checkpoint %s: damaged after %d of %d markers: %w", path, len(out), h.Count, err)
		}
		if len(out)+len(chunk) > h.Count {
			return nil, time.Time{}, fmt.Errorf("checkpoint %s: damaged: more markers than the %d announced", path, h.Count)
		}
		for _, m := range chunk {
			out = append(out, MarkerState{
				Marker: Marker{ID: uuid.UUID(m.ID), Instance: instance, Run: m.Run, Partition: m.Partition, Seq: m.Seq, SentAt: time.Unix(0, m.SentAt)},
				Seen:   names(m.Seen), Lost: names(m.Lost),
			})
		}
	}
	return out, h.SavedAt, nil
}
