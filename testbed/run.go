package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"
)

// event is one decoded, validated TelemetryEvent on its way to the sinks.
type event struct {
	id        uuid.UUID
	ev        telemetryEvent
	eventType string  // telemetry_event_type label
	severity  *string // telemetry_severity label, nil = NULL
	attrs     []byte  // attributes as JSON
	partition int32
	node      *node // offset bookkeeping: done when every sink has it
}

// Run consumes the ingest topic and feeds both sinks until ctx is cancelled or
// the pipeline is closed; it then commits what was fully processed and
// returns nil. It returns an error only if it cannot run at all. Events still
// queued when it returns are not committed, so a new pipeline in the same
// group processes them again (at-least-once, like the real pipeline).
func (p *Pipeline) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errAlreadyRunning
	}
	defer close(p.runDone)
	if p.closeCtx.Err() != nil {
		return errors.New("testbed: pipeline Run after Close")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.closeCtx, cancel)()

	sinks := 1
	dbCh := make(chan []*item, 16)
	fwdCh := make(chan []*item, 16)
	if p.db != nil {
		sinks = 2
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.consume(gctx, sinks) })
	g.Go(func() error {
		return p.sched.run(gctx, func(batch []*item) error {
			if p.db != nil {
				if err := send(gctx, dbCh, batch); err != nil {
					return err
				}
			}
			return send(gctx, fwdCh, batch)
		})
	})
	if p.db != nil {
		g.Go(func() error { return p.writeDB(gctx, dbCh) })
	}
	g.Go(func() error { return p.forward(gctx, fwdCh) })
	g.Go(func() error { return p.commitLoop(gctx) })
	err := g.Wait()

	// Commit what the sinks finished, on a fresh context: ours is done.
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	p.commit(cctx)
	ccancel()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func send(ctx context.Context, ch chan<- []*item, batch []*item) error {
	select {
	case ch <- batch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Pipeline) consume(ctx context.Context, sinks int) error {
	for {
		fetches := p.consumer.PollRecords(ctx, 1000)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fetches.IsClientClosed() {
			return errors.New("testbed: consumer client closed")
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.Canceled) {
				p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		var err error
		fetches.EachRecord(func(r *kgo.Record) {
			if err == nil {
				err = p.throttle(ctx)
			}
			if err == nil {
				err = p.ingest(ctx, r, sinks)
			}
		})
		if err != nil {
			return err
		}
	}
}

// capacityCredit is how far behind now the capacity's schedule may fall
// before it restarts at now: an idle stage takes at most this much work at
// once, as a real one does not bank its idle time either.
const capacityCredit = 20 * time.Millisecond

// throttle holds consumption to Faults.Capacity events per second: each event
// takes 1/capacity of the stage's time, on a schedule kept across events, and
// the consumer sleeps once it is more than a millisecond ahead of it. Without
// a capacity it returns at once.
func (p *Pipeline) throttle(ctx context.Context) error {
	c := p.Faults().Capacity
	if c <= 0 {
		p.capNext = time.Time{}
		return nil
	}
	now := time.Now()
	if p.capNext.Before(now.Add(-capacityCredit)) {
		p.capNext = now.Add(-capacityCredit)
	}
	p.capNext = p.capNext.Add(time.Duration(float64(time.Second) / c))
	wait := p.capNext.Sub(now)
	if wait < time.Millisecond {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ingest decodes one record, takes the fault decisions for it and queues it
// for its visibility time. It blocks while the queue is full.
func (p *Pipeline) ingest(ctx context.Context, r *kgo.Record, sinks int) error {
	now := time.Now()
	p.stats.consumed.Add(1)
	n := p.offs.add(r.Partition, r.Offset, r.LeaderEpoch)

	ev, err := p.decode(r)
	if err != nil {
		p.stats.decodeErrors.Add(1)
		p.log.Debug("bad ingest record", "partition", r.Partition, "offset", r.Offset, "err", err)
		n.pending.Store(1)
		n.finish()
		return nil
	}
	ev.node = n

	f := p.Faults()
	dropped := f.DropPct > 0 && p.rng.Float64()*100 < f.DropPct
	duplicated := !dropped && f.DuplicatePct > 0 && p.rng.Float64()*100 < f.DuplicatePct
	p.truth.consumed(ev.id, now, r.Partition, r.Offset, dropped, duplicated)
	if dropped {
		p.stats.dropped.Add(1)
		n.pending.Store(1)
		n.finish()
		return nil
	}

	delay := f.Delay
	if f.Jitter > 0 {
		delay += time.Duration(p.rng.Int64N(int64(2*f.Jitter)+1)) - f.Jitter
	}
	if f.Reorder {
		delay += time.Duration(p.rng.Int64N(int64(f.reorderWindow())))
	}
	delay = max(delay, 0)

	copies := 1
	if duplicated {
		p.stats.duplicated.Add(1)
		copies = 2
	}
	n.pending.Store(int32(copies * sinks))
	items := make([]*item, copies)
	for i := range items {
		items[i] = &item{due: now.Add(delay), delay: delay, ev: ev}
	}
	return p.sched.push(ctx, items...)
}

// decode parses a record into an event and checks what the database would
// reject: a bad id, an unknown event type or severity.
func (p *Pipeline) decode(r *kgo.Record) (*event, error) {
	te, err := decodeEvent(p.cfg.Encoding, r.Value)
	if err != nil {
		return nil, err
	}
	id, err := uuid.Parse(te.EventID)
	if err != nil {
		return nil, fmt.Errorf("event_id %q: %w", te.EventID, err)
	}
	et := strings.ToLower(te.EventType)
	switch et {
	case "log", "trace", "metric":
	default:
		return nil, fmt.Errorf("event %s: unknown event_type %q", id, te.EventType)
	}
	sev, err := Severity(te.Severity)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", id, err)
	}
	if te.Attributes == nil {
		te.Attributes = map[string]string{}
	}
	attrs, err := json.Marshal(te.Attributes)
	if err != nil {
		return nil, fmt.Errorf("event %s attributes: %w", id, err)
	}
	return &event{id: id, ev: te, eventType: et, severity: sev, attrs: attrs, partition: r.Partition}, nil
}

// Severity maps a TelemetryEvent severity (Avro enum DEBUG, INFO, WARN, ERROR,
// FATAL; any case) to the telemetry_severity database label. Null stays null.
func Severity(s *string) (*string, error) {
	if s == nil {
		return nil, nil
	}
	var v string
	switch strings.ToUpper(*s) {
	case "DEBUG":
		v = "debug"
	case "INFO":
		v = "info"
	case "WARN", "WARNING":
		v = "warning"
	case "ERROR":
		v = "error"
	case "FATAL", "CRITICAL":
		v = "critical"
	default:
		return nil, fmt.Errorf("unknown severity %q", *s)
	}
	return &v, nil
}

func (p *Pipeline) commitLoop(ctx context.Context) error {
	t := time.NewTicker(p.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			p.commit(ctx)
		}
	}
}

// commit commits, for every partition, the offset after the last record whose
// predecessors all reached every sink.
func (p *Pipeline) commit(ctx context.Context, only ...int32) {
	todo := p.offs.committable(only...)
	if len(todo) == 0 {
		return
	}
	offsets := map[string]map[int32]kgo.EpochOffset{p.cfg.IngestTopic: {}}
	for part, eo := range todo {
		offsets[p.cfg.IngestTopic][part] = kgo.EpochOffset{Epoch: eo.epoch, Offset: eo.offset}
	}
	p.consumer.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			for _, t := range resp.Topics {
				for _, pr := range t.Partitions {
					if pr.ErrorCode != 0 {
						err = fmt.Errorf("partition %d: error code %d", pr.Partition, pr.ErrorCode)
					}
				}
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("offset commit failed", "err", err)
			}
			return
		}
		p.stats.commits.Add(1)
		p.offs.committed(todo)
	})
}

func (p *Pipeline) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	parts := revoked[p.cfg.IngestTopic]
	if len(parts) == 0 {
		return
	}
	p.commit(ctx, parts...)
	p.offs.forget(parts)
}

func (p *Pipeline) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.offs.forget(lost[p.cfg.IngestTopic])
}
