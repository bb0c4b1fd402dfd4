package testbed

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Faults is the fault profile the pipeline applies between consuming an event
// and making it visible in its sinks. It can be changed while the pipeline runs
// (SetFaults, Stall, Resume); a change applies to events consumed after it,
// except Stalled, which acts on everything still queued.
type Faults struct {
	// Delay is added between consuming an event and making it visible in both
	// sinks, plus a uniform jitter in [-Jitter, +Jitter]. A negative sum is
	// clamped to zero.
	Delay  time.Duration
	Jitter time.Duration
	// DropPct is the percentage (0-100) of events that are never written nor
	// forwarded.
	DropPct float64
	// DuplicatePct is the percentage (0-100) of events delivered twice to both
	// sinks. The database sink is idempotent (ON CONFLICT DO NOTHING on the
	// primary key, like SLO-Scout's), so a duplicate is visible on the capsule
	// topic only.
	DuplicatePct float64
	// Reorder holds each event for an extra uniform random time in
	// [0, ReorderWindow), so events consumed within that window overtake each
	// other in both sinks. Pick a window longer than the gap between the events
	// that should swap (at one marker a second per partition, several seconds).
	Reorder       bool
	ReorderWindow time.Duration // 0: DefaultReorderWindow
	// Stalled makes nothing visible until it is cleared. Consumption goes on
	// and queues (bounded by PipelineConfig.MaxQueued, then consumption
	// pauses) while offsets are not committed, so consumer-group lag grows as
	// it does behind a stuck stream job. On resume each queued event becomes
	// visible at resume time + its own delay.
	Stalled bool
	// Capacity is how many events per second the stream stage processes; 0
	// means no limit. Above it the stage consumes no faster, so the backlog
	// stays in Kafka and the consumer group falls behind, as behind a
	// saturated stream job. A change applies from the next event consumed.
	Capacity float64
}

// DefaultReorderWindow is the reorder window when Faults.ReorderWindow is zero.
const DefaultReorderWindow = time.Second

// Validate rejects profiles the pipeline cannot apply.
func (f Faults) Validate() error {
	switch {
	case f.Delay < 0:
		return fmt.Errorf("faults: delay %v is negative", f.Delay)
	case f.Jitter < 0:
		return fmt.Errorf("faults: jitter %v is negative", f.Jitter)
	case f.ReorderWindow < 0:
		return fmt.Errorf("faults: reorder_window %v is negative", f.ReorderWindow)
	case !(f.DropPct >= 0 && f.DropPct <= 100): // also rejects NaN
		return fmt.Errorf("faults: drop_pct %v is not within [0, 100]", f.DropPct)
	case !(f.DuplicatePct >= 0 && f.DuplicatePct <= 100):
		return fmt.Errorf("faults: duplicate_pct %v is not within [0, 100]", f.DuplicatePct)
	case !(f.Capacity >= 0) || math.IsInf(f.Capacity, 0):
		return fmt.Errorf("faults: capacity %v is not a finite number of events per second (0: no limit)", f.Capacity)
	}
	return nil
}

func (f Faults) reorderWindow() time.Duration {
	if f.ReorderWindow > 0 {
		return f.ReorderWindow
	}
	return DefaultReorderWindow
}

// faultsJSON is the wire form of Faults on the control API: durations as Go
// duration strings ("2s", "150ms"), so a human can write them with curl.
type faultsJSON struct {
	Delay         string  `json:"delay"`
	Jitter        string  `json:"jitter"`
	DropPct       float64 `json:"drop_pct"`
	DuplicatePct  float64 `json:"duplicate_pct"`
	Reorder       bool    `json:"reorder"`
	ReorderWindow string  `json:"reorder_window"`
	Stalled       bool    `json:"stalled"`
	// Capacity in events per second; 0: no limit.
	Capacity float64 `json:"capacity"`
}

// MarshalJSON writes durations as strings.
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		Delay:         f.Delay.String(),
		Jitter:        f.Jitter.String(),
		DropPct:       f.DropPct,
		DuplicatePct:  f.DuplicatePct,
		Reorder:       f.Reorder,
		ReorderWindow: f.ReorderWindow.String(),
		Stalled:       f.Stalled,
		Capacity:      f.Capacity,
	})
}

// UnmarshalJSON reads durations as strings ("2s"). Fields absent from the
// input keep the value f had, so a client may send only what it changes; an
// unknown field is an error.
func (f *Faults) UnmarshalJSON(b []byte) error {
	cur := faultsJSON{
		Delay:         f.Delay.String(),
		Jitter:        f.Jitter.String(),
		DropPct:       f.DropPct,
		DuplicatePct:  f.DuplicatePct,
		Reorder:       f.Reorder,
		ReorderWindow: f.ReorderWindow.String(),
		Stalled:       f.Stalled,
		Capacity:      f.Capacity,
	}
	if err := decodeStrict(b, &cur); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	out := Faults{DropPct: cur.DropPct, DuplicatePct: cur.DuplicatePct, Reorder: cur.Reorder, Stalled: cur.Stalled, Capacity: cur.Capacity}
	for _, d := range []struct {
		name string
		s    string
		dst  *time.Duration
	}{
		{"delay", cur.Delay, &out.Delay},
		{"jitter", cur.Jitter, &out.Jitter},
		{"reorder_window", cur.ReorderWindow, &out.ReorderWindow},
	} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("faults: %s: %w", d.name, err)
		}
		*d.dst = v
	}
	*f = out
	return nil
}
