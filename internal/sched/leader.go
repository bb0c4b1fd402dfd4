package sched

import (
	"context"
	"errors"
	"time"
)

// Reasons a scheduled job did not run here (slo_canary_scheduled_skipped_total).
const (
	skipBusy      = "group_busy" // another job of its group was running
	skipNotLeader = "not_leader" // another replica leads: it runs the job
	skipNoLeader  = "no_leader"  // a rebalance: nobody led, the job ran nowhere
)

// Leadership says whether this replica runs the scheduled jobs among
// replicas that share them (a *coord.Coordinator).
type Leadership interface {
	// Leading reports whether this replica leads now (self), and whether
	// any replica does (false while the group rebalances).
	Leading() (self, any bool)
	// Holds reports whether a run this replica started as the leader may
	// go on: no other replica leads since, and this one did not lose its
	// group session (false once either happened, even before it knows who
	// leads now).
	Holds() bool
	// Changed returns a channel closed at the next change of leadership.
	Changed() <-chan struct{}
}

// ErrLeadershipLost is the cause of a scheduled job's context cancelled
// because this replica no longer holds the leadership: another may start
// the next run.
var ErrLeadershipLost = errors.New("another replica leads now")

// LeaderOnly makes the scheduled jobs run only while l says this replica
// leads: the leader at a job's time runs it, the others count it skipped
// (not_leader, or no_leader during a rebalance, when it runs nowhere and is
// also counted as a skipped run). A run already going is cancelled, with
// cause ErrLeadershipLost, once l no longer Holds; a rebalance that keeps
// this replica leading does not stop it. Runs on demand (TryRun) are
// not gated. Call it before Add: it also aligns the "@every D" schedules
// added after it to the multiples of D since the Unix epoch, the same times
// on every replica, so that a tick is one time for the whole group. If l is
// also a TickLog, the ticks a dead leader left are counted by the replica
// that takes the lead over (leader_lost).
func (s *Scheduler) LeaderOnly(l Leadership) {
	s.lead = l
	s.ticks, _ = l.(TickLog)
}

// leading reports whether j may start here for its time tick, counting it
// skipped if not.
func (s *Scheduler) leading(ctx context.Context, j Job, tick time.Time) bool {
	if s.lead == nil {
		return true
	}
	self, any := s.lead.Leading()
	switch {
	case self:
		return true
	case any:
		s.skip.WithLabelValues(j.Name, skipNotLeader).Inc()
		s.log.Debug("scheduled job left to the leader", "job", j.Name)
		s.leftToLeader(j, tick)
	default:
		s.skip.WithLabelValues(j.Name, skipNoLeader).Inc()
		s.runs.WithLabelValues(j.Name, "skipped").Inc()
		s.log.Warn("scheduled job skipped: the replicas are rebalancing and none leads", "job", j.Name)
		// So that the next leader does not count it again as leader_lost.
		s.announce(ctx, j, tick, skipNoLeader)
	}
	return false
}

// whileLeading derives a context cancelled once this replica no longer holds
// the leadership.
func (s *Scheduler) whileLeading(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			changed := s.lead.Changed()
			if !s.lead.Holds() {
				s.log.Warn("leadership lost: stopping the running job")
				cancel(ErrLeadershipLost)
				return
			}
			select {
			case <-changed:
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, func() {
		close(done)
		<-exited
		cancel(nil)
	}
}
