package canary

import "time"

// pollClock decides when a stage polls next. A stage polls every poll
// interval, and also soon after each round of markers is sent: the injector
// and the poll loop tick at the same period by default, so a poll fixed in
// phase would run just before the round's rows commit, every round, and find
// every marker almost a whole interval late. Polling a short while after the
// round instead finds the markers of a fast pipeline at once; the lag is
// then bracketed by the send and that poll (Sighting.NotBefore, Result.Lag).
//
// A poll moved earlier also moves the next regular one, so at the default
// rate (one round per interval) the stage still polls once per interval.
// Polls are never closer than half an interval: at higher rates a stage
// polls at most twice per interval.
type pollClock struct {
	interval time.Duration
	last     time.Time // start of the latest poll; zero before the first
	next     time.Time // when the next poll is due
}

// The early poll runs earlyShare of an interval after a round was sent, and
// polls are at least minGapShare of an interval apart.
const (
	earlyShare  = 8
	minGapShare = 2
)

func newPollClock(interval time.Duration) *pollClock {
	return &pollClock{interval: interval}
}

// polled records that a poll started at start: the next is due an interval on.
func (c *pollClock) polled(start time.Time) {
	c.last, c.next = start, start.Add(c.interval)
}

// sent records a round of markers sent at at, and reports whether the next
// poll moved earlier for it. A round the latest poll began well after was
// looked for by it already, and is left to the regular polls.
func (c *pollClock) sent(at time.Time) bool {
	due := at.Add(c.interval / earlyShare)
	if !due.After(c.last) {
		return false
	}
	due = later(due, c.last.Add(c.interval/minGapShare))
	if !due.Before(c.next) {
		return false
	}
	c.next = due
	return true
}
