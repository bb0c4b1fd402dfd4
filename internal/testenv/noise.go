package testenv

import (
	"slices"
	"sync"
	"time"
)

// SchedulerNoise starts measuring how late this process's goroutines wake up
// and returns a function that stops the measurement and gives the 99th
// percentile of the delay. A goroutine sleeps 1 ms at a time and records how
// much longer each sleep took. On a quiet machine that is well under a
// millisecond; on a loaded one (other processes on the same cores, the race
// detector) it is what any latency this process measures carries too.
//
// Tests of timing accuracy widen their tolerance by it, a peer measured in the
// same run, instead of by a constant: the check keeps its strength on a quiet
// machine and does not fail on a busy one for what the machine, not the code,
// added.
func SchedulerNoise() (stop func() time.Duration) {
	var (
		mu     sync.Mutex
		delays []time.Duration
	)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		const nap = time.Millisecond
		for {
			select {
			case <-done:
				return
			default:
			}
			start := time.Now()
			time.Sleep(nap)
			d := time.Since(start) - nap
			mu.Lock()
			delays = append(delays, max(d, 0))
			mu.Unlock()
		}
	}()
	return func() time.Duration {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		if len(delays) == 0 {
			return 0
		}
		slices.Sort(delays)
		return delays[(len(delays)*99)/100]
	}
}
