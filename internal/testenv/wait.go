package testenv

import (
	"testing"
	"time"
)

// WaitTimeout is how long WaitFor waits when a test names no deadline of its
// own. It is generous because CI machines are shared and loaded: a condition
// that holds ends the wait at once, so only a failing test pays for it.
const WaitTimeout = 2 * time.Minute

// maxPoll bounds the pause between two checks of a condition.
const maxPoll = 50 * time.Millisecond

// WaitFor checks cond until it holds and fails the test, naming what it
// waited for, if it still does not once timeout has passed (WaitTimeout if
// timeout is zero or less). It checks again after 1 ms, then backs off to
// every 50 ms, so that a quick condition is seen quickly and a slow one costs
// little CPU. cond runs on the caller's goroutine and may fail the test itself.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	if timeout <= 0 {
		timeout = WaitTimeout
	}
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pause) // the poll interval, not a synchronisation
		pause = min(2*pause, maxPoll)
	}
}
