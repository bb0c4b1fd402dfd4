package testbed

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// item is one delivery of an event to the sinks: a duplicated event has two.
type item struct {
	due   time.Time     // visibility time
	delay time.Duration // its own delay, to recompute due after a stall
	seq   uint64        // push order: ties release in the order consumed
	ev    *event
}

type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)   { *h = append(*h, x.(*item)) }
func (h *itemHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return x
}

// maxDispatch bounds one hand-over to the sinks, so a released backlog reaches
// the database in several transactions rather than one huge one.
const maxDispatch = 4096

// scheduler holds events until their visibility time, in one time-ordered heap
// released by one timer: per-event sleeps would cost a goroutine each at
// thousands of events a second.
type scheduler struct {
	mu      sync.Mutex
	h       itemHeap
	seq     uint64
	stalled bool
	max     int
	wake    chan struct{} // the head changed or the stall ended
	space   chan struct{} // the heap shrank
}

func newScheduler(maxQueued int, stalled bool) *scheduler {
	return &scheduler{max: maxQueued, stalled: stalled, wake: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (s *scheduler) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.h)
}

// push queues items, waiting while the heap is full: that back-pressure stops
// consumption, as a full stream job stops reading Kafka.
func (s *scheduler) push(ctx context.Context, items ...*item) error {
	for {
		s.mu.Lock()
		if len(s.h) < s.max {
			head := len(s.h) == 0 || items[0].due.Before(s.h[0].due)
			for _, it := range items {
				s.seq++
				it.seq = s.seq
				heap.Push(&s.h, it)
			}
			s.mu.Unlock()
			if head {
				signal(s.wake)
			}
			return nil
		}
		s.mu.Unlock()
		select {
		case <-s.space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// setStalled starts or ends a stall. On resume every queued event becomes
// visible at resume time + its own delay (or its original time, if later).
func (s *scheduler) setStalled(stalled bool, now time.Time) {
	s.mu.Lock()
	s.stalled = stalled
	if !stalled {
		for _, it := range s.h {
			if d := now.Add(it.delay); d.After(it.due) {
				it.due = d
			}
		}
		heap.Init(&s.h)
	}
	s.mu.Unlock()
	signal(s.wake)
}

// run releases due items to dispatch until ctx is done. dispatch may block
// (sinks full); the heap then fills and consumption pauses.
func (s *scheduler) run(ctx context.Context, dispatch func([]*item) error) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		now := time.Now()
		var batch []*item
		wait := time.Duration(-1)
		s.mu.Lock()
		if !s.stalled {
			for len(s.h) > 0 && len(batch) < maxDispatch {
				if d := s.h[0].due.Sub(now); d > 0 {
					wait = d
					break
				}
				batch = append(batch, heap.Pop(&s.h).(*item))
			}
		}
		s.mu.Unlock()
		if len(batch) > 0 {
			signal(s.space)
			if err := dispatch(batch); err != nil {
				return err
			}
			continue
		}
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}
