package queries

import (
	"math"
	"slices"
)

// Percentiles summarise latencies, in seconds. They are computed exactly from
// every sample (nearest rank), not from histogram buckets.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// percentiles sorts vals in place and returns their percentiles; zeros for
// no values.
func percentiles(vals []float64) Percentiles {
	slices.Sort(vals)
	return Percentiles{P50: quantile(vals, 0.50), P95: quantile(vals, 0.95), P99: quantile(vals, 0.99), Max: quantile(vals, 1)}
}

// quantile of sorted values by nearest rank: the smallest value with at
// least q of the values at or below it.
func quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(n))) - 1
	return sorted[min(max(i, 0), n-1)]
}
