package testbed

import (
	"slices"
	"sync"
	"sync/atomic"
)

// node is one consumed record awaiting its sinks. pending counts the sink
// deliveries still outstanding (copies x sinks); the last one to finish marks
// the record done in its partition's tracker.
type node struct {
	pending atomic.Int32
	offset  int64
	epoch   int32
	done    bool // guarded by t.mu
	t       *partTracker
}

func (n *node) finish() {
	if n.pending.Add(-1) == 0 {
		n.t.complete(n)
	}
}

// partTracker finds the committable offset of one partition: records finish
// out of order (delays, jitter, reorder), but an offset may be committed only
// once every record before it has finished.
type partTracker struct {
	mu    sync.Mutex
	q     []*node // unfinished prefix and whatever follows, in offset order
	next  int64   // committable offset; -1 while nothing finished
	epoch int32
}

func (t *partTracker) complete(n *node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n.done = true
	i := 0
	for i < len(t.q) && t.q[i].done {
		t.next, t.epoch = t.q[i].offset+1, t.q[i].epoch
		t.q[i] = nil
		i++
	}
	t.q = t.q[i:]
}

type epochOffset struct {
	epoch  int32
	offset int64
}

// offsets tracks every assigned partition of the ingest topic.
type offsets struct {
	mu   sync.Mutex
	part map[int32]*partTracker
	done map[int32]int64 // last committed offset per partition
}

func newOffsets() *offsets {
	return &offsets{part: make(map[int32]*partTracker), done: make(map[int32]int64)}
}

// add registers a consumed record. The caller sets pending and calls finish.
func (o *offsets) add(partition int32, offset int64, epoch int32) *node {
	o.mu.Lock()
	t := o.part[partition]
	if t == nil {
		t = &partTracker{next: -1}
		o.part[partition] = t
	}
	o.mu.Unlock()
	n := &node{offset: offset, epoch: epoch, t: t}
	t.mu.Lock()
	t.q = append(t.q, n)
	t.mu.Unlock()
	return n
}

// committable returns the partitions (all, or only those listed) whose
// committable offset moved since the last commit.
func (o *offsets) committable(only ...int32) map[int32]epochOffset {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[int32]epochOffset)
	for part, t := range o.part {
		if len(only) > 0 && !slices.Contains(only, part) {
			continue
		}
		t.mu.Lock()
		next, epoch := t.next, t.epoch
		t.mu.Unlock()
		if last, ok := o.done[part]; next >= 0 && (!ok || next > last) {
			out[part] = epochOffset{epoch: epoch, offset: next}
		}
	}
	return out
}

func (o *offsets) committed(c map[int32]epochOffset) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for part, eo := range c {
		if eo.offset > o.done[part] {
			o.done[part] = eo.offset
		}
	}
}

// forget drops partitions this member no longer owns. Records of theirs still
// in flight finish into the forgotten tracker and are never committed here;
// the new owner consumes them again.
func (o *offsets) forget(parts []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, part := range parts {
		delete(o.part, part)
		delete(o.done, part)
	}
}
