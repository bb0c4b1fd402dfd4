package canary

import (
	"testing"
	"time"
)

// TestPollClock: a stage polls an eighth of an interval after a round is
// sent, never twice within half an interval, and at the default rate (one
// round per interval) no more often than once per interval.
func TestPollClock(t *testing.T) {
	const iv = time.Second
	c := newPollClock(iv)
	c.polled(at(0))
	if !c.next.Equal(at(iv)) {
		t.Fatalf("next = %v after a poll at 0, want one interval on", c.next.Sub(t0))
	}
	// A round the poll began long after was looked for already.
	if c.sent(at(-time.Second)) {
		t.Errorf("a round sent a second before the poll moved the next poll to %v", c.next.Sub(t0))
	}
	// A round sent at once after the poll: its markers are looked for no
	// sooner than half an interval after the last poll.
	if !c.sent(at(10*time.Millisecond)) || !c.next.Equal(at(iv/2)) {
		t.Errorf("round at 10ms: next poll at %v, want %v", c.next.Sub(t0), iv/2)
	}
	// Rounds in step with the polls: each poll runs an eighth of an
	// interval after its round, and the polls stay one interval apart.
	c.polled(at(iv / 2))
	for k := 1; k <= 5; k++ {
		round := at(time.Duration(k) * iv)
		c.sent(round) // moves the first poll; the regular one is as early after
		if !c.next.Equal(round.Add(iv / 8)) {
			t.Fatalf("round %d at %v: next poll at %v, want %v", k, round.Sub(t0), c.next.Sub(t0), round.Add(iv/8).Sub(t0))
		}
		// A second round in the same interval waits for the same poll.
		if c.sent(round.Add(iv / 4)) {
			t.Errorf("round %d: a later round moved the poll to %v", k, c.next.Sub(t0))
		}
		c.polled(c.next)
	}
	if want := at(5*iv + iv/8 + iv); !c.next.Equal(want) {
		t.Errorf("without a round the next poll is at %v, want %v", c.next.Sub(t0), want.Sub(t0))
	}
}
