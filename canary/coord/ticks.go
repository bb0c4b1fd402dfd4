package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tickRecord is what became of one scheduled job's tick, as a replica
// announces it on the coordination topic (partition 0, keyed by the job):
// the leader's run or group_busy skip, a no_leader skip during a rebalance,
// a new leader's leader_lost count. A replica that takes the lead over
// reads them to tell the ticks its dead predecessor left from those it ran
// (sched.TickLog).
type tickRecord struct {
	Type     string `json:"type"` // "tick"
	Job      string `json:"job"`
	Tick     int64  `json:"tick"` // the scheduled time, Unix nanoseconds
	Outcome  string `json:"outcome"`
	Instance string `json:"instance"`
}

const tickType = "tick"

// Announce writes what became of job's tick here on the coordination topic,
// with the coordinator's own client; it blocks until the broker has it.
func (c *Coordinator) Announce(ctx context.Context, job string, tick time.Time, outcome string) error {
	cl := c.client.Load()
	if cl == nil {
		return errors.New("coordination: not joined")
	}
	data, err := json.Marshal(tickRecord{Type: tickType, Job: job, Tick: tick.UnixNano(), Outcome: outcome, Instance: c.cfg.Instance})
	if err != nil {
		return err
	}
	rec := &kgo.Record{Topic: c.cfg.Topic, Partition: 0, Key: []byte(job), Value: data}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("coordination: announce %s tick: %w", job, err)
	}
	return nil
}

// Announced reads the coordination topic's partition 0 from the records
// stamped at since up to its end when called, and returns the ticks
// announced, by job. The coordinator's group client is assigned the
// partition on the leader only, at its end: reading back takes a client of
// its own for the while.
func (c *Coordinator) Announced(ctx context.Context, since time.Time) (map[string]map[int64]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	from := kgo.NewOffset().AfterMilli(since.UnixMilli())
	cl, err := kgo.NewClient(append(c.cfg.KafkaOpts[:len(c.cfg.KafkaOpts):len(c.cfg.KafkaOpts)],
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.cfg.Topic: {0: from}}))...)
	if err != nil {
		return nil, fmt.Errorf("coordination client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, c.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("coordination topic end: %w", err)
	}
	starts, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), c.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("coordination topic offsets since %v: %w", since, err)
	}
	end, ok := ends.Lookup(c.cfg.Topic, 0)
	if !ok || end.Err != nil {
		return nil, fmt.Errorf("coordination topic end: %v", end.Err)
	}
	start, ok := starts.Lookup(c.cfg.Topic, 0)
	if !ok || start.Err != nil {
		return nil, fmt.Errorf("coordination topic offsets since %v: %v", since, start.Err)
	}
	out := map[string]map[int64]bool{}
	if start.Offset < 0 { // no record stamped since
		return out, nil
	}
	for next := start.Offset; next < end.Offset; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("coordination topic: read to offset %d: %w", end.Offset, err)
		}
		fs.EachError(func(topic string, p int32, err error) {
			c.log.Warn("coordination topic fetch failed", "topic", topic, "partition", p, "err", err)
		})
		fs.EachRecord(func(rec *kgo.Record) {
			next = max(next, rec.Offset+1)
			var t tickRecord
			if json.Unmarshal(rec.Value, &t) != nil || t.Type != tickType || t.Job == "" {
				return
			}
			if out[t.Job] == nil {
				out[t.Job] = map[int64]bool{}
			}
			out[t.Job][t.Tick] = true
		})
	}
	return out, nil
}

// Horizon is the longest a crashed leader may still be believed to lead:
// its session timeout, a heartbeat for the others to hear of the
// rebalance, and the rebalance itself (bounded by the session timeout too).
func (c *Coordinator) Horizon() time.Duration {
	return 2*c.cfg.SessionTimeout + c.heartbeat()
}

// LeaderInstance returns the canary.instance of the leader of the current
// view ("" without one).
func (c *Coordinator) LeaderInstance() string {
	m, _ := c.Leader()
	return m.Instance
}

// heartbeat is the interval of the group's heartbeats: a third of the
// session timeout, at most 3 s.
func (c *Coordinator) heartbeat() time.Duration {
	return min(3*time.Second, c.cfg.SessionTimeout/3)
}
