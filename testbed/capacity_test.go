package testbed_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestCapacity: with a processing capacity of 1,000 events/s, a backlog of
// 4,000 events is consumed no faster than that, and the consumer group lags
// by most of it meanwhile, as behind a saturated stream job. Lifting the
// capacity through the control API drains the rest at once.
func TestCapacity(t *testing.T) {
	t.Parallel()
	const (
		parts    = 4
		n        = 4000
		capacity = 1000.0
	)
	p := startPipeline(t, testbed.PipelineConfig{Partitions: parts, Faults: testbed.Faults{Capacity: capacity}, CommitInterval: 100 * time.Millisecond})
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()

	start := produce(t, p.Brokers(), canary.EncodingAvro, parts, newEvents(n, parts))
	adm := kadm.NewClient(testenv.KafkaClient(t, p.Brokers()))
	lag := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, err := adm.Lag(ctx, p.Config().Group)
		if err != nil {
			t.Fatalf("group lag: %v", err)
		}
		var sum int64
		for _, gl := range l.Sorted() {
			for _, pl := range gl.Lag.Sorted() {
				if pl.Err == nil {
					sum += pl.Lag
				}
			}
		}
		return sum
	}
	// The stage's schedule lets it run at most capacityCredit ahead.
	testenv.WaitFor(t, 20*time.Second, "1,500 events consumed", func() bool { return p.Stats().Consumed >= 1500 })
	if el, min := time.Since(start), 1400*time.Millisecond; el < min {
		t.Errorf("1,500 events consumed in %s: faster than the capacity of %.0f/s allows (%s)", el, capacity, min)
	}
	// Committed offsets follow the consumption: the group lags by the rest.
	if l := lag(); l < n-2500 {
		t.Errorf("group lag %d records after %d consumed, want the backlog's most", l, p.Stats().Consumed)
	}

	req, _ := http.NewRequest("PUT", srv.URL+"/faults", strings.NewReader(`{"capacity":0}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || p.Faults().Capacity != 0 {
		t.Fatalf("PUT capacity 0: %d, faults %+v", resp.StatusCode, p.Faults())
	}
	lifted := time.Now()
	testenv.WaitFor(t, 20*time.Second, "group lag 0", func() bool { return lag() == 0 })
	if left := n - 1500; time.Since(lifted) > 2*time.Duration(float64(left)/capacity*float64(time.Second)) {
		t.Errorf("the rest took %s after the capacity was lifted", time.Since(lifted))
	}

	for _, bad := range []string{`{"capacity":-1}`, `{"capacity":"fast"}`} {
		req, _ := http.NewRequest("PUT", srv.URL+"/faults", strings.NewReader(bad))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("PUT %s: %d, want 400", bad, resp.StatusCode)
		}
	}
}
