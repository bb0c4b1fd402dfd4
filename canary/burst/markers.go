package burst

import (
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/probes"
)

// marker makes one burst marker for the pacer, through the service: tracked
// and observed as the steady markers.
func (b *burst) marker(partition int32, now time.Time) (*kgo.Record, func(*kgo.Record, error)) {
	b.seqs[partition]++
	m := canary.Marker{ID: uuid.New(), Run: b.id, Partition: partition, Seq: b.seqs[partition], SentAt: now}
	rec, promise, err := b.r.svc.MarkerRecord(m, b.produced)
	if err != nil {
		return nil, nil // counted by the service; the pacer sends a load event instead
	}
	// Known before the record is handed over: no outcome of it can come sooner.
	b.mu.Lock()
	b.markers[m.ID] = &burstMarker{sentAt: now}
	b.mu.Unlock()
	return rec, promise
}

// produced accounts for a marker's completed produce; the service has
// abandoned a failed one already.
func (b *burst) produced(m canary.Marker, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		delete(b.markers, m.ID)
		b.failed++
		b.failureLocked(err)
		return
	}
	if bm := b.markers[m.ID]; bm != nil {
		bm.acked = true
	}
	b.acked++
	b.r.o.Metrics.MarkersSent.Inc()
}

func (b *burst) failure(err error) {
	b.mu.Lock()
	b.failureLocked(err)
	b.mu.Unlock()
}

func (b *burst) failureLocked(err error) {
	reason := canary.ProduceFailureReason(err)
	b.reasons[reason]++
	b.r.o.Metrics.ProduceFailures.WithLabelValues(reason).Inc()
}

// result and lostHook see every outcome of the service; they keep those of
// this burst's markers.
func (b *burst) result(stage string, sg probes.Sighting, r canary.Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bm := b.markers[sg.ID]
	if bm == nil {
		return
	}
	if stage != b.stage {
		if r.Outcome == canary.OutcomeObserved || r.Outcome == canary.OutcomeLate {
			if bm.other == nil {
				bm.other = map[string]time.Duration{}
			}
			if _, ok := bm.other[stage]; !ok {
				bm.other[stage] = r.Lag
			}
		}
		return
	}
	bm.dups += r.Duplicates
	if r.OutOfOrder {
		bm.ooo = true
	}
	switch r.Outcome {
	case canary.OutcomeObserved, canary.OutcomeUnmeasured:
		bm.seenAt, bm.lag = sg.At, r.Lag
		b.seen++
		b.lags = append(b.lags, r.Lag.Seconds())
	case canary.OutcomeLate:
		bm.late = true
		bm.seenAt, bm.lag = sg.At, r.Lag
	}
}

func (b *burst) lostHook(stage string, m canary.Marker) {
	if stage != b.stage {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if bm := b.markers[m.ID]; bm != nil && !bm.lost {
		bm.lost = true
		b.lost++
	}
}

// recoverInto keeps a helper goroutine's panic for Run to raise again.
func (b *burst) recoverInto(stop func()) {
	if p := recover(); p != nil {
		b.panicked.CompareAndSwap(nil, &p)
		stop()
	}
}

func (b *burst) setAbort(a *Abort) {
	b.abortMu.Lock()
	defer b.abortMu.Unlock()
	if b.abort == nil {
		if a.At.IsZero() {
			a.At = time.Now()
		}
		b.abort = a
	}
}

func (b *burst) getAbort() *Abort {
	b.abortMu.Lock()
	defer b.abortMu.Unlock()
	return b.abort
}
