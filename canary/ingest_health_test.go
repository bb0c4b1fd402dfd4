package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIngestHealthAccounting drives the ingest health through start-up,
// failures and recovery, and checks the SLI events and ingest_up after each.
func TestIngestHealthAccounting(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), []string{"s"})
	var changes []bool
	h := newIngestHealth(m, slog.New(slog.DiscardHandler), func(up bool) { changes = append(changes, up) }, 10*time.Second)
	t0 := time.Unix(1e9, 0)
	// produce sends a marker to p and completes its produce with err.
	produce := func(p int32, err error) {
		id := uuid.New()
		h.sent(id, p, t0)
		h.produced(id, p, err)
	}
	check := func(when string, total, good float64, up float64, errs map[string]float64) {
		t.Helper()
		if got := testutil.ToFloat64(m.IngestSLITotal); got != total {
			t.Errorf("%s: sli_total %v, want %v", when, got, total)
		}
		if got := testutil.ToFloat64(m.IngestSLIGood); got != good {
			t.Errorf("%s: sli_good_total %v, want %v", when, got, good)
		}
		if got := testutil.ToFloat64(m.IngestUp); got != up {
			t.Errorf("%s: ingest_up %v, want %v", when, got, up)
		}
		for _, r := range IngestErrorReasons {
			if got := testutil.ToFloat64(m.IngestErrors.WithLabelValues(r)); got != errs[r] {
				t.Errorf("%s: ingest_errors_total{reason=%q} %v, want %v", when, r, got, errs[r])
			}
		}
	}

	// Rounds due before the first metadata answer wait for it; an answer
	// with partitions makes them start-up, not failures.
	h.missed()
	h.missed()
	check("before the first metadata", 0, 0, 0, nil)
	if err := h.Err(); err == nil {
		t.Error("healthy before any marker")
	}
	h.partitions([]int32{0, 1, 2})
	check("metadata answered", 0, 0, 0, nil)
	produce(0, nil)
	produce(1, nil)
	check("two of three partitions acknowledged", 2, 2, 0, nil)
	produce(2, nil)
	check("every partition acknowledged", 3, 3, 1, nil)
	if err := h.Err(); err != nil {
		t.Errorf("Err() = %v while healthy", err)
	}

	// One partition fails: down until it is acknowledged again.
	produce(1, kerr.NotEnoughReplicas)
	check("one partition failed", 4, 3, 0, map[string]float64{"produce": 1})
	produce(1, nil)
	check("recovered", 5, 4, 1, map[string]float64{"produce": 1})

	// Shutdown is no event.
	produce(0, kgo.ErrClientClosed)
	check("shutdown", 5, 4, 1, map[string]float64{"produce": 1})

	// A marker left unanswered (a broker lost mid-request) fails once it has
	// waited for the timeout, with the metadata's reason while that fails
	// too; its late acknowledgement is no second event.
	late := uuid.New()
	h.sent(late, 2, t0)
	h.sweep(t0.Add(9 * time.Second))
	check("an unanswered marker within the timeout", 5, 4, 1, map[string]float64{"produce": 1})
	h.metadataFailed(fmt.Errorf("unable to dial: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}))
	h.sweep(t0.Add(10 * time.Second))
	check("an unanswered marker past the timeout", 6, 4, 0, map[string]float64{"produce": 1, "connect": 1})
	h.produced(late, 2, nil)
	check("its late acknowledgement", 6, 4, 1, map[string]float64{"produce": 1, "connect": 1})

	// The metadata lists no partitions: every round counts as many failed
	// events as the topic had partitions.
	h.partitions(nil)
	h.missed()
	check("no partitions", 9, 4, 0, map[string]float64{"produce": 1, "connect": 1, "no_partitions": 3})
	if len(changes) != 6 || changes[5] {
		t.Errorf("up changes %v", changes)
	}

	// A fresh canary whose first metadata fails: the rounds waiting for it
	// fail with its reason, at least one event each.
	m2 := NewMetrics(prometheus.NewRegistry(), []string{"s"})
	h2 := newIngestHealth(m2, slog.New(slog.DiscardHandler), nil, 0)
	h2.missed()
	h2.missed()
	h2.metadataFailed(errors.Join(errors.New("unable to dial"), kerr.SaslAuthenticationFailed))
	h2.missed()
	if got := testutil.ToFloat64(m2.IngestErrors.WithLabelValues("auth")); got != 3 {
		t.Errorf("auth errors %v, want 3", got)
	}
	if got := testutil.ToFloat64(m2.IngestSLITotal); got != 3 {
		t.Errorf("sli_total %v, want 3", got)
	}
}

// TestIngestErrorReason classifies the errors franz-go gives for each way
// injection fails.
func TestIngestErrorReason(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	cases := []struct {
		err      error
		fallback string
		want     string
	}{
		{fmt.Errorf("unable to dial: %w", refused), "connect", "connect"},
		{fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, fmt.Errorf("unable to dial: %w", refused)), "produce", "connect"},
		{kerr.SaslAuthenticationFailed, "connect", "auth"},
		{fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.SaslAuthenticationFailed), "produce", "auth"},
		{kerr.TopicAuthorizationFailed, "produce", "auth"},
		{kerr.UnknownTopicOrPartition, "produce", "unknown_topic"},
		{kerr.NotEnoughReplicas, "produce", "produce"},
		{kgo.ErrRecordTimeout, "produce", "produce"},
		{context.DeadlineExceeded, "connect", "connect"},
	}
	for _, c := range cases {
		if got := IngestErrorReason(c.err, c.fallback); got != c.want {
			t.Errorf("IngestErrorReason(%v, %s) = %s, want %s", c.err, c.fallback, got, c.want)
		}
	}
}
