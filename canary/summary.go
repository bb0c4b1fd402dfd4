package canary

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// StageSummary is one stage's running totals and recent lag percentiles.
type StageSummary struct {
	Name                                                 string
	Ready                                                bool
	Observed, Lost, Late, Duplicate, OutOfOrder, Unknown uint64
	Unmeasured                                           uint64
	Pending                                              int
	P50, P95, P99                                        time.Duration
	Samples                                              int // lags behind the percentiles
}

// Summary is what the demo prints every few seconds.
type Summary struct {
	Sent   uint64
	Stages []StageSummary
}

// Summary snapshots the service's totals. Percentiles are over the latest
// lags (at most 2048 per stage); the exported histograms are the real record.
func (s *Service) Summary() Summary {
	sum := Summary{Sent: s.injector.sent.Load()}
	for _, st := range s.stages {
		ss := StageSummary{
			Name:       st.name,
			Ready:      st.ready.Load(),
			Observed:   st.stats.Observed.Load(),
			Lost:       st.stats.Lost.Load(),
			Late:       st.stats.Late.Load(),
			Duplicate:  st.stats.Duplicate.Load(),
			OutOfOrder: st.stats.OutOfOrder.Load(),
			Unknown:    st.stats.Unknown.Load(),
			Unmeasured: st.stats.Unmeasured.Load(),
			Pending:    s.tracker.PendingCount(st.idx),
		}
		st.mu.Lock()
		n := min(st.recentN, recentLags)
		lags := slices.Clone(st.recent[:n])
		st.mu.Unlock()
		slices.Sort(lags)
		ss.Samples = n
		ss.P50, ss.P95, ss.P99 = Quantile(lags, 0.50), Quantile(lags, 0.95), Quantile(lags, 0.99)
		sum.Stages = append(sum.Stages, ss)
	}
	return sum
}

// Quantile of sorted seconds, nearest rank: the summary line's, and a
// burst report's.
func Quantile(sorted []float64, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return time.Duration(sorted[i] * float64(time.Second))
}

// String renders the one-line summary.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent=%d", s.Sent)
	for _, st := range s.Stages {
		fmt.Fprintf(&b, " | %s: observed=%d lost=%d late=%d dup=%d ooo=%d pending=%d", st.Name,
			st.Observed, st.Lost, st.Late, st.Duplicate, st.OutOfOrder, st.Pending)
		if st.Samples > 0 {
			fmt.Fprintf(&b, " lag p50=%s p95=%s p99=%s", round(st.P50), round(st.P95), round(st.P99))
		}
		if !st.Ready {
			b.WriteString(" (not ready)")
		}
	}
	return b.String()
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}
