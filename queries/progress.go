package queries

import (
	"slices"
	"sync"
	"time"

	"github.com/slo-scout/slo-canary/probes"
)

// RunProgress is a running concurrency run's state, for a terminal or a log
// line: what `queries --once` and the gate show while a run runs.
type RunProgress struct {
	Run, Probe  string
	Index, Runs int // this run is the Index-th (1-based) of Runs
	Requests    int // scheduled
	Done        int // ended, whatever their outcome
	Failed      int // ended with an outcome other than success
	// P95 is the open-loop latency over the requests ended so far.
	P95 time.Duration
	// Left is how long until the last request is due; 0 once it is.
	Left time.Duration
}

// report calls progress (if not nil) about once a second with the run's
// state from base on, until the returned stop is called; stop returns once no
// call is under way.
func (c *collector) report(progress func(RunProgress), base RunProgress, started time.Time, length time.Duration) (stop func()) {
	if progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			p := base
			p.Done, p.Failed, p.P95 = c.progress()
			p.Left = max(length-time.Since(started), 0)
			progress(p)
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// progress is the run so far: requests ended, failed, and their p95.
func (c *collector) progress() (done, failed int, p95 time.Duration) {
	c.mu.Lock()
	lat := slices.Clone(c.latency)
	failed = len(lat) - c.outcomes[probes.OutcomeSuccess]
	c.mu.Unlock()
	slices.Sort(lat)
	return len(lat), failed, time.Duration(quantile(lat, 0.95) * float64(time.Second))
}
