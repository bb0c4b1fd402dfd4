package testenv

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyNoLeaks checks, once the test and every cleanup registered after
// this call have run, that no goroutine is left that was not running at the
// call (goleak). Called before the helpers whose cleanups stop what they
// started (Kafka, KafkaClient, Pipeline), it judges the test's parts only
// after those have stopped too.
func VerifyNoLeaks(tb testing.TB, opts ...goleak.Option) {
	tb.Helper()
	opts = append(opts, goleak.IgnoreCurrent())
	tb.Cleanup(func() { goleak.VerifyNone(tb, opts...) })
}
