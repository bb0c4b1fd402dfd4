package canary

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// IngestErrorReasons are the reasons of slo_canary_ingest_errors_total: why
// a marker the canary meant to send was not acknowledged by Kafka.
var IngestErrorReasons = []string{"connect", "auth", "unknown_topic", "no_partitions", "produce"}

// Errors of the metadata the injector learns partitions from, where Kafka
// answered but the answer leaves nothing to send to.
var (
	errTopicNotFound = errors.New("ingest topic not in the metadata")
	errNoPartitions  = errors.New("the metadata lists no partitions of the ingest topic")
)

// IngestErrorReason classifies err, the failure of a marker's produce or of
// the ingest topic's metadata, as one of IngestErrorReasons: connect (no
// broker could be reached, or it hung up), auth (SASL or TLS refused the
// canary, or it is not authorised), unknown_topic, no_partitions. An error
// it does not recognise is fallback: "produce" for a produce, "connect" for
// metadata that never came.
func IngestErrorReason(err error, fallback string) string {
	var (
		op      *net.OpError
		dns     *net.DNSError
		verify  *tls.CertificateVerificationError
		alert   tls.AlertError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, errNoPartitions):
		return "no_partitions"
	case errors.Is(err, errTopicNotFound), errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return "unknown_topic"
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState),
		errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.TransactionalIDAuthorizationFailed),
		errors.As(err, &verify), errors.As(err, &alert), errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid):
		return "auth"
	case errors.As(err, &op), errors.As(err, &dns), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connect"
	default:
		return fallback
	}
}

// isShutdown reports whether a produce failed only because the canary is
// stopping: not an ingest failure, and not an SLI event.
func isShutdown(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed)
}

// ingestHealth knows whether marker injection works, and counts the
// ingest-availability SLI: one event per marker the canary meant to send,
// good when Kafka acknowledged it.
//
// A round finds the partitions known or not. Known, every marker of the
// round is an event, resolved by its produce, or failed once it has waited
// for its acknowledgement longer than the produce timeout: a producer that
// lost its brokers mid-request keeps such markers (it cannot tell whether
// they were written), and the canary must not wait with it. Not known (the metadata never
// came, names no such topic, or lists no partitions), the round still meant
// to send: it counts max(1, the last known partition count) failed events,
// with the metadata's reason. Rounds due before the first metadata answer
// wait for it: if it fails they fail with its reason, if it succeeds they
// were only the start-up and are dropped.
type ingestHealth struct {
	metrics *Metrics
	log     *slog.Logger
	changed func(up bool) // called outside the lock when up changes
	timeout time.Duration // a marker not acknowledged by then failed (0: never)

	mu       sync.Mutex
	open     map[uuid.UUID]struct{} // markers sent and not judged yet
	queue    []inflight             // the same, by send time, with judged ones left to skip
	metaErr  error                  // the latest metadata refresh's failure, nil once it works
	answered bool                   // the metadata answered, or failed, at least once
	pending  int                    // events of rounds due before that
	parts    []int32
	expected int            // events of a round without partitions
	acked    map[int32]bool // the latest marker of each partition: acknowledged or not
	reason   string         // the latest failure while down ("": none seen)
	err      error
	up       bool
	logged   string // the reason last logged as failing; "" while working
}

// inflight is a marker waiting for its acknowledgement.
type inflight struct {
	id uuid.UUID
	p  int32
	at time.Time
}

func newIngestHealth(m *Metrics, log *slog.Logger, changed func(bool), timeout time.Duration) *ingestHealth {
	return &ingestHealth{metrics: m, log: log, changed: changed, timeout: timeout, expected: 1,
		acked: map[int32]bool{}, open: map[uuid.UUID]struct{}{}}
}

// partitions records the partitions the metadata lists (none: no_partitions).
func (h *ingestHealth) partitions(parts []int32) {
	if len(parts) == 0 {
		h.metadataFailed(errNoPartitions)
		return
	}
	h.update(func() {
		h.answered, h.pending, h.metaErr = true, 0, nil
		h.parts = slices.Clone(parts)
		h.expected = len(parts)
	})
}

// metadataFailed records a failed metadata refresh. While partitions are
// known it changes nothing: markers still go to them, and their produces say
// whether Kafka takes them.
func (h *ingestHealth) metadataFailed(err error) {
	h.update(func() {
		h.metaErr = err
		if errors.Is(err, errNoPartitions) {
			h.parts, h.acked = nil, map[int32]bool{}
		}
		if len(h.parts) > 0 {
			h.answered = true
			return
		}
		h.reason, h.err = IngestErrorReason(err, "connect"), err
		h.answered = true
		if h.pending > 0 {
			h.fail(h.pending, h.reason)
			h.pending = 0
		}
	})
}

// missed records a round due while no partition is known.
func (h *ingestHealth) missed() {
	h.update(func() {
		if !h.answered {
			h.pending += h.expected
			return
		}
		h.fail(h.expected, h.reason)
	})
}

// sent records a marker handed to the producer.
func (h *ingestHealth) sent(id uuid.UUID, p int32, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.open[id] = struct{}{}
	h.queue = append(h.queue, inflight{id: id, p: p, at: at})
}

// sweep fails the markers that have waited longer than the timeout. The
// reason is the metadata's while it fails too (connect, auth: the producer
// cannot reach the cluster either), else produce.
func (h *ingestHealth) sweep(now time.Time) {
	h.mu.Lock()
	for len(h.queue) > 0 {
		if _, ok := h.open[h.queue[0].id]; ok {
			break
		}
		h.queue = h.queue[1:] // judged already
	}
	due := h.timeout > 0 && len(h.queue) > 0 && !now.Before(h.queue[0].at.Add(h.timeout))
	h.mu.Unlock()
	if !due {
		return
	}
	h.update(func() {
		for len(h.queue) > 0 {
			f := h.queue[0]
			if _, ok := h.open[f.id]; ok {
				if now.Before(f.at.Add(h.timeout)) {
					break
				}
				delete(h.open, f.id)
				h.acked[f.p] = false
				h.reason, h.err = "produce", fmt.Errorf("no acknowledgement within %s (canary.produce_timeout)", h.timeout)
				if h.metaErr != nil {
					h.reason, h.err = IngestErrorReason(h.metaErr, "connect"), h.metaErr
				}
				h.fail(1, h.reason)
			}
			h.queue = h.queue[1:]
		}
	})
}

// produced records the completed produce of marker id to partition p. A
// marker the sweep already failed is no second event, but its late
// acknowledgement still shows that the partition takes markers again.
func (h *ingestHealth) produced(id uuid.UUID, p int32, err error) {
	h.mu.Lock()
	_, open := h.open[id]
	delete(h.open, id)
	h.mu.Unlock()
	if err != nil && isShutdown(err) {
		return
	}
	h.update(func() {
		if !open {
			if err == nil {
				h.acked[p] = true
			}
			return
		}
		h.metrics.IngestSLITotal.Inc()
		if err == nil {
			h.metrics.IngestSLIGood.Inc()
			h.acked[p] = true
			return
		}
		h.acked[p] = false
		h.reason, h.err = IngestErrorReason(err, "produce"), err
		h.metrics.IngestErrors.WithLabelValues(h.reason).Inc()
	})
}

// fail counts n failed events; under h.mu.
func (h *ingestHealth) fail(n int, reason string) {
	h.metrics.IngestSLITotal.Add(float64(n))
	h.metrics.IngestErrors.WithLabelValues(reason).Add(float64(n))
}

// update applies f under the lock, then re-judges up: every known partition's
// latest marker acknowledged. It logs when injection stops working or its
// reason changes, and when it works again; never once per marker.
func (h *ingestHealth) update(f func()) {
	h.mu.Lock()
	f()
	was := h.up
	h.up = len(h.parts) > 0
	for _, p := range h.parts {
		h.up = h.up && h.acked[p]
	}
	switch {
	case h.up:
		h.reason, h.err = "", nil
		if h.logged != "" || !was {
			h.log.Info("markers acknowledged on every partition", "partitions", len(h.parts))
		}
		h.logged = ""
	case h.reason != "" && h.reason != h.logged:
		h.log.Error("marker injection failing: no marker reaches Kafka on some partition", "reason", h.reason,
			"partitions", len(h.parts), "err", h.err)
		h.logged = h.reason
	}
	up := h.up
	v := 0.0
	if up {
		v = 1
	}
	h.metrics.IngestUp.Set(v)
	h.mu.Unlock()
	if up != was && h.changed != nil {
		h.changed(up)
	}
}

// Err is nil while injection works, else why not.
func (h *ingestHealth) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.up:
		return nil
	case h.err != nil:
		return fmt.Errorf("kafka: markers not acknowledged (%s): %w", h.reason, h.err)
	case !h.answered:
		return errors.New("kafka: ingest topic metadata not loaded yet")
	default:
		return errors.New("kafka: no marker acknowledged yet on every partition")
	}
}

// roundSize is the number of events a round without partitions counts.
func (h *ingestHealth) roundSize() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.expected
}
