package sched

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// skipLeaderLost is a tick that ran nowhere because its leader died: the
// others still believed it led until its session expired.
const skipLeaderLost = "leader_lost"

// Outcomes of a tick as announced on a TickLog: ran, or one of the skip
// reasons group_busy, no_leader, leader_lost.
const tickRan = "ran"

// maxPending bounds the ticks a replica remembers skipping as not_leader,
// per job.
const maxPending = 100

// TickLog is the group's shared record of what became of each scheduled
// tick (the coordination topic; a *coord.Coordinator). A Leadership that is
// also a TickLog makes the scheduler account for the ticks a dead leader
// left: the replica that takes the lead over counts each tick it skipped as
// not_leader and that nobody announced, as skipped with reason leader_lost,
// and announces it, so that the group counts it once.
type TickLog interface {
	// Announce records that job's tick (its scheduled time) ran here, or
	// was skipped here with the reason given. It blocks until the record is
	// written or ctx ends.
	Announce(ctx context.Context, job string, tick time.Time, outcome string) error
	// Announced returns the ticks announced, by job (as Unix nanoseconds),
	// in the records written from since (on the writers' clocks) up to the
	// log's end when it is called. It blocks while it reads.
	Announced(ctx context.Context, since time.Time) (map[string]map[int64]bool, error)
	// Horizon is the longest a dead leader may be believed to lead, and so
	// the oldest a tick left to it can be when another takes the lead over.
	Horizon() time.Duration
	// LeaderInstance names the leader this replica believes in ("" if none),
	// for the logs.
	LeaderInstance() string
}

// pending is a tick this replica left to another leader.
type pending struct {
	tick   time.Time
	leader string
}

// ticked is a job's schedule that remembers the ticks it handed cron, so that
// a firing job knows the scheduled time it fires for (cron does not say).
type ticked struct {
	cron.Schedule
	mu        sync.Mutex
	prev, cur time.Time
}

func (t *ticked) Next(at time.Time) time.Time {
	n := t.Schedule.Next(at)
	t.mu.Lock()
	t.prev, t.cur = t.cur, n
	t.mu.Unlock()
	return n
}

// due returns the tick a job firing at now fires for: cron computes the
// next one right after it starts the job, so it may or may not be there.
func (t *ticked) due(now time.Time) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.cur.After(now) {
		return t.cur
	}
	return t.prev
}

// announce records a tick's outcome on the group's log, if there is one. A
// failure is logged: the next leader may then count the tick as lost.
func (s *Scheduler) announce(ctx context.Context, j Job, tick time.Time, outcome string) {
	if s.ticks == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	if err := s.ticks.Announce(ctx, j.Name, tick, outcome); err != nil {
		s.log.Warn("could not announce a scheduled tick to the group", "job", j.Name, "tick", tick, "outcome", outcome, "err", err)
	}
}

const announceTimeout = 5 * time.Second

// leftToLeader remembers a tick this replica skipped as not_leader, dropping
// those older than the horizon.
func (s *Scheduler) leftToLeader(j Job, tick time.Time) {
	if s.ticks == nil {
		return
	}
	leader := s.ticks.LeaderInstance()
	old := tick.Add(-s.ticks.Horizon())
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := slices.DeleteFunc(s.pending[j.Name], func(p pending) bool { return p.tick.Before(old) })
	if len(ps) >= maxPending {
		ps = slices.Delete(ps, 0, len(ps)-maxPending+1)
	}
	s.pending[j.Name] = append(ps, pending{tick: tick, leader: leader})
}

// watchTakeover settles the ticks left to the previous leader each time this
// replica takes the lead, until ctx ends.
func (s *Scheduler) watchTakeover(ctx context.Context) {
	was := false
	for {
		changed := s.lead.Changed()
		self, _ := s.lead.Leading()
		if self && !was {
			s.settle(ctx, s.now())
		}
		was = self
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// settle counts, as it takes the lead at now, the ticks this replica left to
// another leader within the horizon and that nobody announced (the leader
// did not run them, nobody counted them skipped): they ran nowhere. Only the
// ticks this replica itself skipped as not_leader are candidates, so a tick
// another replica counted as no_leader (announced) is not counted again.
func (s *Scheduler) settle(ctx context.Context, now time.Time) {
	old := now.Add(-s.ticks.Horizon())
	s.mu.Lock()
	left := s.pending
	s.pending = map[string][]pending{}
	s.mu.Unlock()
	since := now
	for job, ps := range left {
		ps = slices.DeleteFunc(ps, func(p pending) bool { return p.tick.Before(old) })
		left[job] = ps
		for _, p := range ps {
			if p.tick.Before(since) {
				since = p.tick
			}
		}
	}
	if !since.Before(now) {
		return
	}
	// A record is stamped on its writer's clock, at or after the tick it
	// announces; the margin covers clocks that disagree by a little.
	seen, err := s.ticks.Announced(ctx, since.Add(-clockMargin))
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("took the lead, but could not read which ticks the previous leader ran: not counting them", "err", err)
		}
		return
	}
	for _, job := range slices.Sorted(maps.Keys(left)) {
		var lost []time.Time
		leaders := map[string]bool{}
		for _, p := range left[job] {
			if seen[job][p.tick.UnixNano()] {
				continue
			}
			lost = append(lost, p.tick)
			leaders[p.leader] = true
		}
		if len(lost) == 0 {
			continue
		}
		j := Job{Name: job}
		s.skip.WithLabelValues(job, skipLeaderLost).Add(float64(len(lost)))
		s.runs.WithLabelValues(job, "skipped").Add(float64(len(lost)))
		s.log.Warn("scheduled job skipped: its leader was lost before it ran, the group still believed it led",
			"job", job, "ticks", lost, "previous_leader", slices.Sorted(maps.Keys(leaders)))
		for _, t := range lost {
			s.announce(ctx, j, t, skipLeaderLost)
		}
	}
}

// clockMargin is how far before a tick its announcement is looked for.
const clockMargin = 5 * time.Second
