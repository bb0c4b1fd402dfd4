package queries

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slo-scout/slo-canary/probes"
)

// Load is one open-loop run: requests due on a fixed schedule, Rate per
// second for Duration, served by at most Clients requests in flight.
type Load struct {
	Clients  int
	Rate     float64
	Duration time.Duration
	// MaxWait bounds how long a due request may wait for a free client: one
	// that waited longer is a timeout, not sent (its latency, the wait, is
	// already past any timeout), so that a stalled server cannot stretch a
	// run to its whole backlog times the timeout.
	MaxWait time.Duration
	// WarmUp has every client send one request, not judged, before the first
	// is due, so that the run times the server rather than the canary's own
	// connection set-up (TCP, TLS, a database session) in its first second.
	WarmUp bool
}

// Requests is how many requests the load schedules.
func (l Load) Requests() int { return int(math.Ceil(l.Rate * l.Duration.Seconds())) }

// Sample is one request of an open-loop run.
type Sample struct {
	Seq uint64
	// Due is when the schedule wanted the request sent.
	Due time.Time
	// Start is what the latency counts from: Due, when no client was free at
	// Due, so that the wait for a client, which a slow server causes, counts
	// (no coordinated omission); or, when a client was already waiting for
	// the request, the moment it woke, so that the lateness of the client's
	// own timer (up to a millisecond or so on Linux) is not blamed on the
	// server.
	Start  time.Time
	Result probes.QueryResult
	// Unsent: the request waited more than MaxWait for a client, and was
	// counted as a timeout without being sent.
	Unsent bool
}

// Latency is the open-loop latency: from Start to the end of the answer.
func (s Sample) Latency() time.Duration { return s.Result.Done.Sub(s.Start) }

// ServiceTime is what a closed-loop client would report: from the moment the
// request was sent. Unsent requests have none.
func (s Sample) ServiceTime() time.Duration {
	if s.Unsent {
		return 0
	}
	return s.Result.Done.Sub(s.Result.Sent)
}

// RunLoad runs l against p, calling observe for every request as it ends,
// from the client that ran it (observe must be safe for concurrent use). It
// returns when every scheduled request has ended, or when ctx is cancelled;
// then the requests not yet ended are dropped and the error is ctx's.
//
// Clients take the next request of the schedule in order as soon as they are
// free; a request due while every client is busy waits for the first one
// free, and its wait counts in its latency. That is what makes the load
// open-loop: the schedule never waits for the server.
func RunLoad(ctx context.Context, p probes.QueryProbe, l Load, observe func(Sample)) error {
	if l.Clients < 1 || !(l.Rate > 0) || l.Duration <= 0 {
		return fmt.Errorf("load: clients %d, rate %v, duration %s: all must be positive", l.Clients, l.Rate, l.Duration)
	}
	total := uint64(l.Requests())
	clients := min(uint64(l.Clients), total)
	if l.WarmUp {
		var wg sync.WaitGroup
		for i := range clients {
			// Sequence numbers past the run's, so that the rotation of the
			// run itself is unchanged.
			wg.Go(func() { p.Do(ctx, total+i) })
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	start := time.Now()
	var next atomic.Uint64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= total {
					return
				}
				// start + k/rate, computed so that rounding never accumulates.
				due := start.Add(time.Duration(float64(k) / l.Rate * float64(time.Second)))
				s := Sample{Seq: k, Due: due, Start: due}
				if wait := time.Until(due); wait > 0 {
					timer.Reset(wait)
					select {
					case <-timer.C:
					case <-ctx.Done():
						return
					}
					s.Start = time.Now()
				} else if l.MaxWait > 0 && -wait > l.MaxWait {
					now := time.Now()
					s.Unsent = true
					s.Result = probes.QueryResult{Outcome: probes.OutcomeTimeout, Sent: now, Done: now,
						Err: fmt.Errorf("waited %s for a free client, over %s", (-wait).Round(time.Millisecond), l.MaxWait)}
					observe(s)
					continue
				}
				s.Result = p.Do(ctx, k)
				if s.Result.Outcome == probes.OutcomeCanceled {
					return
				}
				observe(s)
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

// Budget is what a concurrency run is judged against; zero values are not
// judged.
type Budget struct {
	P95             float64 `json:"p95_seconds,omitempty"`
	P99             float64 `json:"p99_seconds,omitempty"`
	MinSuccessRatio float64 `json:"min_success_ratio,omitempty"`
}

// Verdicts of a run.
const (
	VerdictPass = "pass"
	VerdictFail = "fail"
)

// RunResult is one concurrency run, as `slo-canary queries --once` prints it
// and the gate reports it. Latencies are in seconds.
type RunResult struct {
	Run      string    `json:"run"`
	Probe    string    `json:"probe"`
	Clients  int       `json:"clients"`
	Rate     float64   `json:"rate"`
	Duration string    `json:"duration"`
	Started  time.Time `json:"started"`
	Elapsed  float64   `json:"elapsed_seconds"`
	Requests int       `json:"requests"`
	// Outcomes counts requests by outcome; every outcome is present.
	Outcomes     map[string]int `json:"outcomes"`
	SuccessRatio float64        `json:"success_ratio"`
	// Latency is open-loop, from when each request was due, over every
	// request whatever its outcome. This is what the budgets judge.
	Latency Percentiles `json:"latency_seconds"`
	// ServiceTime is the closed-loop view of the same requests, from when
	// each was sent: what a load tester that waits for its clients reports.
	// Far below Latency, it shows requests queued behind a slow server.
	ServiceTime Percentiles `json:"service_time_seconds"`
	// SendLagP99 is the 99th percentile of how late requests were sent after
	// they were due: near zero unless clients ran out.
	SendLagP99 float64  `json:"send_lag_p99_seconds"`
	Budget     Budget   `json:"budget"`
	Verdict    string   `json:"verdict"`
	Breaches   []string `json:"breaches,omitempty"`
}

// collector gathers a run's samples; safe for concurrent use.
type collector struct {
	mu       sync.Mutex
	latency  []float64
	service  []float64
	sendLag  []float64
	outcomes map[string]int
}

func newCollector(expected int) *collector {
	c := &collector{
		latency:  make([]float64, 0, expected),
		service:  make([]float64, 0, expected),
		sendLag:  make([]float64, 0, expected),
		outcomes: map[string]int{},
	}
	for _, o := range probes.QueryOutcomes {
		c.outcomes[o] = 0
	}
	return c
}

func (c *collector) observe(s Sample) {
	lat := s.Latency().Seconds()
	lag := s.Result.Sent.Sub(s.Due).Seconds()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latency = append(c.latency, lat)
	if !s.Unsent {
		c.service = append(c.service, s.ServiceTime().Seconds())
	}
	c.sendLag = append(c.sendLag, max(lag, 0))
	c.outcomes[s.Result.Outcome]++
}

// result summarises the run and judges it against b.
func (c *collector) result(b Budget) RunResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := RunResult{
		Requests:    len(c.latency),
		Outcomes:    c.outcomes,
		Latency:     percentiles(c.latency),
		ServiceTime: percentiles(c.service),
		Budget:      b,
	}
	r.SendLagP99 = percentiles(c.sendLag).P99
	if r.Requests > 0 {
		r.SuccessRatio = float64(c.outcomes[probes.OutcomeSuccess]) / float64(r.Requests)
	}
	if r.Requests == 0 {
		r.Breaches = append(r.Breaches, "no request completed")
	}
	if b.MinSuccessRatio > 0 && r.SuccessRatio < b.MinSuccessRatio {
		r.Breaches = append(r.Breaches, fmt.Sprintf("success ratio %.4f < %.4f", r.SuccessRatio, b.MinSuccessRatio))
	}
	if b.P95 > 0 && r.Latency.P95 >= b.P95 {
		r.Breaches = append(r.Breaches, fmt.Sprintf("p95 %.3fs >= %.3fs", r.Latency.P95, b.P95))
	}
	if b.P99 > 0 && r.Latency.P99 >= b.P99 {
		r.Breaches = append(r.Breaches, fmt.Sprintf("p99 %.3fs >= %.3fs", r.Latency.P99, b.P99))
	}
	r.Verdict = VerdictPass
	if len(r.Breaches) > 0 {
		r.Verdict = VerdictFail
	}
	return r
}

// errNoRun reports a run name that is not configured.
var errNoRun = errors.New("no such concurrency run")
