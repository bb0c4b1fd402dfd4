package canary

import (
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/probes"
)

// marker builds and tracks one burst marker for the pacer.
func (b *burst) marker(partition int32, now time.Time) (*kgo.Record, func(*kgo.Record, error)) {
	svc := b.r.svc
	b.seqs[partition]++
	m := Marker{ID: uuid.New(), Instance: b.r.cfg.Canary.Instance, Run: b.id, Partition: partition, Seq: b.seqs[partition], SentAt: now}
	c := b.r.cfg.Canary
	ev := m.Event(EventOptions{ServiceName: c.ServiceName, Environment: c.Environment, EventType: c.EventType, Severity: c.Severity})
	value, err := Encode(Encoding(c.Encoding), &ev)
	if err != nil {
		svc.metrics.NotSent.WithLabelValues("encode").Inc()
		return nil, nil
	}
	b.mu.Lock()
	b.markers[m.ID] = &burstMarker{sentAt: now}
	b.mu.Unlock()
	if !svc.tracker.Track(m, false) {
		b.mu.Lock()
		delete(b.markers, m.ID)
		b.mu.Unlock()
		svc.metrics.NotSent.WithLabelValues("tracker_full").Inc()
		return nil, nil
	}
	rec := &kgo.Record{
		Topic: c.Topic, Partition: partition, Key: []byte(c.ServiceName), Value: value, Timestamp: now,
		Headers: []kgo.RecordHeader{{Key: HeaderInstance, Value: []byte(c.Instance)}},
	}
	return rec, func(_ *kgo.Record, err error) {
		if err != nil {
			// Not under b.mu: the tracker calls lostHook under its own lock,
			// so b.mu is always taken after the tracker's, never before.
			svc.tracker.Abandon(m.ID)
		}
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
		observeWithID(svc.metrics.ProduceLatency, time.Since(now).Seconds(), m.ID)
	}
}

func (b *burst) failure(err error) {
	b.mu.Lock()
	b.failureLocked(err)
	b.mu.Unlock()
}

func (b *burst) failureLocked(err error) {
	reason := produceFailureReason(err)
	b.reasons[reason]++
	b.r.o.Metrics.ProduceFailures.WithLabelValues(reason).Inc()
}

// result and lostHook see every outcome of the service; they keep those of
// this burst's markers.
func (b *burst) result(stage string, sg probes.Sighting, r Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bm := b.markers[sg.ID]
	if bm == nil {
		return
	}
	if stage != b.stage {
		if r.Outcome == OutcomeObserved || r.Outcome == OutcomeLate {
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
	case OutcomeObserved, OutcomeUnmeasured:
		bm.seenAt, bm.lag = sg.At, r.Lag
		b.seen++
		b.lags = append(b.lags, r.Lag.Seconds())
	case OutcomeLate:
		bm.late = true
		bm.seenAt, bm.lag = sg.At, r.Lag
	}
}

func (b *burst) lostHook(stage string, m Marker) {
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

func (b *burst) setAbort(a *BurstAbort) {
	b.abortMu.Lock()
	defer b.abortMu.Unlock()
	if b.abort == nil {
		if a.At.IsZero() {
			a.At = time.Now()
		}
		b.abort = a
	}
}

func (b *burst) getAbort() *BurstAbort {
	b.abortMu.Lock()
	defer b.abortMu.Unlock()
	return b.abort
}
