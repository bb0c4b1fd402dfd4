package canary

import (
	"sync"

	"github.com/slo-scout/slo-canary/probes"
)

// watchers are outcome hooks added while the service runs (a burst watches
// its own markers), beside the fixed Options.Hooks.
type watchers struct {
	mu   sync.RWMutex
	next int
	set  map[int]Hooks
}

// Watch has h see every outcome from now on, until the returned stop is
// called. Its functions are called synchronously, Lost under the tracker's
// lock: they must be quick and must not call the tracker.
func (s *Service) Watch(h Hooks) (stop func()) {
	w := &s.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.set == nil {
		w.set = map[int]Hooks{}
	}
	id := w.next
	w.next++
	w.set[id] = h
	return func() {
		w.mu.Lock()
		delete(w.set, id)
		w.mu.Unlock()
	}
}

func (w *watchers) result(stage string, sg probes.Sighting, r Result) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, h := range w.set {
		if h.Result != nil {
			h.Result(stage, sg, r)
		}
	}
}

func (w *watchers) lost(stage string, m Marker) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, h := range w.set {
		if h.Lost != nil {
			h.Lost(stage, m)
		}
	}
}
