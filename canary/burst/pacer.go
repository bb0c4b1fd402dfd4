package burst

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/config"
)

// Pacer produces events at an exact rate. Event k of a step is due at
// start + k/rate: the schedule is absolute, so a late wake-up is made up at
// once rather than carried forward (no drift), and between wake-ups the pacer
// sleeps until the next event is due (no bunching beyond the timer's
// resolution). It counts what it hands to the client per wall-clock second,
// so the achieved rate can be shown second by second.
//
// Load events are built straight into slabs (LoadGen): a slab holds the
// records of consecutive events of one partition and their values one after
// another, and is reused whole once Kafka has answered for every record in
// it. One partition's records are answered in order, so a slow partition
// holds only its own slabs, never everyone's. The hot loop thus allocates
// nothing and writes memory in order: at a million events a second,
// scattered per-record buffers cost more in cache misses than building the
// events does. A marker, every 1/MarkerShare events, is built by Marker,
// which may allocate.
type Pacer struct {
	Client     *kgo.Client // manual partitioner
	Topic      string
	Partitions []int32
	Gen        *LoadGen
	// MarkerShare is the fraction of events that are markers; Marker builds
	// the record of one for the given partition, or returns nil to send a
	// load event instead (the tracker is full). Marker records carry their
	// own promise, passed to Produce.
	MarkerShare float64
	Marker      func(partition int32, now time.Time) (*kgo.Record, func(*kgo.Record, error))
	// MaxEvents stops the pacer once this many events were handed over,
	// whatever the steps say (0: no cap).
	MaxEvents int64
	// Failed is called for every load event whose produce failed.
	Failed func(err error)

	acked     atomic.Int64
	failed    atomic.Int64
	handed    atomic.Int64 // published every batch, for progress and the guard
	markers   int64
	perSecond []int64         // handed per wall-clock second since Start
	behind    []time.Duration // the most the pacer ran late in each second
	start     time.Time
	timer     *time.Timer

	slabs []*slab // the one being filled, per partition (index in Partitions)
	// Slabs made and taken (made or reused), by the pacer's goroutine: for
	// tests, like slabsReleased.
	slabsMade, slabsTaken int

	freeMu        sync.Mutex // guards the three below; promises release slabs
	free          []*slab    // answered for, ready for reuse (last freed on top: warmest)
	done          bool       // Run returned: slabs answered for from now on go to the GC
	slabsReleased int
}

// StepResult is what the pacer did in one step.
type StepResult struct {
	Step    config.Step
	Start   time.Time
	End     time.Time // when the last event was handed over (or the abort)
	Handed  int64
	Markers int64
	Done    bool // every event of the step was handed over
	// MaxBehind is the longest the pacer ran behind its schedule: how late
	// the latest due event was when a batch went out.
	MaxBehind time.Duration
}

// Elapsed is the step's length as run: at least its planned duration.
func (r StepResult) Elapsed() time.Duration {
	d := r.End.Sub(r.Start)
	if r.Done {
		// The last event is due 1/rate before the planned end.
		d = max(d+time.Duration(float64(time.Second)/r.Step.Rate), r.Step.Duration)
	}
	return d
}

// A slab's size: enough records that taking a slab is rare, small enough
// that one partly filled slab per partition costs little (42 KiB, records
// included) and the slabs held stay close to what the client buffers.
const (
	slabRecords = 64
	slabBytes   = 32 << 10
	// slabHeadroom is the room a slab must have left for another event; an
	// event that still does not fit goes to the heap (correct, just not free).
	slabHeadroom = 2 << 10
)

// slab is a run of load-event records and the bytes of their values.
type slab struct {
	recs []kgo.Record
	buf  []byte
	// refs is the count of records handed over but not yet answered for,
	// minus those handed over while the slab was being filled: promises
	// take 1 each as they come, and the pacer adds the number handed once it
	// moves on to another slab. Whoever brings it to zero frees the slab.
	refs atomic.Int64
	done func(*kgo.Record, error) // the promise of its records
}

// record returns the next record of partition i's slab (i indexes
// Partitions) and where its value is to be built, taking a fresh slab when
// that one is full.
func (p *Pacer) record(i int) (*kgo.Record, *slab) {
	if p.slabs == nil {
		p.slabs = make([]*slab, len(p.Partitions))
	}
	s := p.slabs[i]
	if s == nil || len(s.recs) == cap(s.recs) || cap(s.buf)-len(s.buf) < slabHeadroom {
		p.retire(i)
		s = p.takeSlab()
		p.slabs[i] = s
	}
	s.recs = s.recs[:len(s.recs)+1]
	return &s.recs[len(s.recs)-1], s
}

// retire lets go of partition i's slab: it is freed when its last record
// is answered for, now if they all are.
func (p *Pacer) retire(i int) {
	s := p.slabs[i]
	if s == nil {
		return
	}
	p.slabs[i] = nil
	if s.refs.Add(int64(len(s.recs))) == 0 {
		p.release(s)
	}
}

func (p *Pacer) takeSlab() *slab {
	p.slabsTaken++
	p.freeMu.Lock()
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.freeMu.Unlock()
		return s
	}
	p.freeMu.Unlock()
	p.slabsMade++
	s := &slab{recs: make([]kgo.Record, 0, slabRecords), buf: make([]byte, 0, slabBytes)}
	s.done = func(_ *kgo.Record, err error) {
		if err != nil {
			p.failed.Add(1)
			if p.Failed != nil {
				p.Failed(err)
			}
		} else {
			p.acked.Add(1)
		}
		if s.refs.Add(-1) == 0 {
			p.release(s)
		}
	}
	return s
}

func (p *Pacer) release(s *slab) {
	clear(s.recs) // drop references (contexts, keys) the client left behind
	s.recs, s.buf = s.recs[:0], s.buf[:0]
	p.freeMu.Lock()
	p.slabsReleased++
	if !p.done {
		p.free = append(p.free, s)
	}
	p.freeMu.Unlock()
}

// drop lets the GC have the slabs once the load is over: a burst then waits
// minutes for its markers, and the slabs of a million-events-a-second step
// come to tens of megabytes.
func (p *Pacer) drop() {
	for i := range p.slabs {
		p.retire(i)
	}
	p.freeMu.Lock()
	p.done, p.free = true, nil
	p.freeMu.Unlock()
}

func (p *Pacer) init(start time.Time) {
	p.start = start
	p.timer = time.NewTimer(time.Hour)
	p.timer.Stop()
}

// Acked and FailedCount count load events whose produce completed.
func (p *Pacer) Acked() int64       { return p.acked.Load() }
func (p *Pacer) FailedCount() int64 { return p.failed.Load() }

// Handed is how many events (load and markers) were handed to the client.
func (p *Pacer) Handed() int64 { return p.handed.Load() }

// PerSecond returns the events handed over in each wall-clock second since
// the first step started. Call it once the pacer is done.
func (p *Pacer) PerSecond() []int64 { return p.perSecond }

// Behind returns, per wall-clock second, the most the pacer ran behind its
// schedule: a starved process (no CPU for the canary) shows here, where a
// short second alone could also be Kafka pushing back.
func (p *Pacer) Behind() []time.Duration { return p.behind }

// Run paces the steps one after the other, from start, until they are done
// or ctx is cancelled. It returns what each step did, up to where it stopped.
func (p *Pacer) Run(ctx context.Context, start time.Time, steps []config.Step) []StepResult {
	p.init(start)
	defer p.timer.Stop()
	defer p.drop()
	var out []StepResult
	at := start
	for _, st := range steps {
		r := p.step(ctx, at, st)
		out = append(out, r)
		if !r.Done {
			break
		}
		at = at.Add(st.Duration)
	}
	return out
}

func (p *Pacer) step(ctx context.Context, start time.Time, st config.Step) StepResult {
	res := StepResult{Step: st, Start: start}
	total := st.Events()
	perEvent := float64(time.Second) / st.Rate
	nparts := int64(len(p.Partitions))
	var sent int64
	// Wait for the step's start (the previous step may have finished its
	// last event early, 1/rate before its end).
	if !p.sleepUntil(ctx, start) {
		res.End = time.Now()
		return res
	}
	for sent < total {
		now := time.Now()
		due := min(int64(float64(now.Sub(start))/perEvent)+1, total)
		if p.MaxEvents > 0 {
			due = min(due, p.MaxEvents-p.handed.Load()+sent)
		}
		// Event number sent was due at start + sent/rate: how late it goes.
		behind := max(now.Sub(start)-time.Duration(float64(sent)*perEvent), 0)
		res.MaxBehind = max(res.MaxBehind, behind)
		batch, first, base := due-sent, sent, p.handed.Load()
		for ; sent < due; sent++ {
			n := base + sent - first // the event's index in the whole burst
			if p.isMarker(n) {
				part := p.Partitions[p.markers%nparts]
				if rec, promise := p.Marker(part, time.Now()); rec != nil {
					p.markers++
					res.Markers++
					p.Client.Produce(ctx, rec, promise)
					continue
				}
			}
			r, s := p.record(int(n % nparts))
			at := len(s.buf)
			val, key := p.Gen.Event(s.buf[at:at], now)
			if len(val) <= cap(s.buf)-at { // built in place, not moved to the heap
				s.buf = s.buf[:at+len(val)]
				val = val[:len(val):len(val)]
			}
			*r = kgo.Record{Topic: p.Topic, Key: key, Value: val, Partition: p.Partitions[n%nparts], Timestamp: now}
			p.Client.Produce(ctx, r, s.done)
		}
		p.handed.Add(batch)
		res.Handed += batch
		p.count(now, batch, behind)
		if ctx.Err() != nil || (p.MaxEvents > 0 && p.handed.Load() >= p.MaxEvents) {
			break
		}
		if sent >= total {
			break
		}
		if !p.sleepUntil(ctx, start.Add(time.Duration(float64(sent)*perEvent))) {
			break
		}
	}
	res.End = time.Now()
	res.Done = sent >= total
	return res
}

// isMarker spreads markers evenly: event n is one when it crosses a multiple
// of 1/MarkerShare.
func (p *Pacer) isMarker(n int64) bool {
	if p.Marker == nil || p.MarkerShare <= 0 {
		return false
	}
	return math.Floor(float64(n+1)*p.MarkerShare) > math.Floor(float64(n)*p.MarkerShare)
}

func (p *Pacer) count(now time.Time, n int64, behind time.Duration) {
	sec := max(int(now.Sub(p.start)/time.Second), 0)
	for len(p.perSecond) <= sec {
		p.perSecond = append(p.perSecond, 0)
		p.behind = append(p.behind, 0)
	}
	p.perSecond[sec] += n
	p.behind[sec] = max(p.behind[sec], behind)
}

// sleepUntil reports false if ctx ended first.
func (p *Pacer) sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	p.timer.Reset(d)
	select {
	case <-ctx.Done():
		p.timer.Stop()
		return false
	case <-p.timer.C:
		return true
	}
}
