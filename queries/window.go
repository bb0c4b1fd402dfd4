package queries

import (
	"sync"
	"time"
)

// window keeps a probe's recent latencies, for the evidence overhead (matched
// percentiles of two probes over the same span) and the demo's summary. It
// holds at most cap samples; older ones are overwritten.
type window struct {
	mu   sync.Mutex
	buf  []sample
	next int
}

type sample struct {
	at      int64 // unix nanoseconds of completion
	latency float64
	ok      bool
}

func newWindow(capacity int) *window { return &window{buf: make([]sample, 0, capacity)} }

func (w *window) add(at time.Time, latency time.Duration, ok bool) {
	s := sample{at: at.UnixNano(), latency: latency.Seconds(), ok: ok}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) < cap(w.buf) {
		w.buf = append(w.buf, s)
		return
	}
	w.buf[w.next] = s
	w.next = (w.next + 1) % len(w.buf)
}

// since returns the latencies of the successful samples completed at or after
// t, and how many samples, successful or not, there were.
func (w *window) since(t time.Time) (ok []float64, total int) {
	from := t.UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.buf {
		if s.at < from {
			continue
		}
		total++
		if s.ok {
			ok = append(ok, s.latency)
		}
	}
	return ok, total
}
