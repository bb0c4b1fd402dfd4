package burst

import (
	"math"
	"math/rand/v2"
	"testing"
)

// polled is what a stage polled at the given times shows of markers sent
// every gap seconds over [from, to], each visible delay + growth*sent (+
// jitter) after it was sent: each marker is seen at the first poll at or
// after it became visible.
func polled(polls []float64, from, to, gap, delay, growth, jitter float64, rng *rand.Rand) []sighting {
	var ms []sighting
	for x := from; x <= to; x += gap {
		visible := x + delay + growth*x
		if jitter > 0 {
			visible += jitter * rng.Float64()
		}
		for _, p := range polls {
			if p >= visible {
				ms = append(ms, sighting{sent: x, seen: p})
				break
			}
		}
	}
	return ms
}

// TestLagGrowthIgnoresThePolls: over a few seconds of 1 s polls, regular or
// not, the growth of a polled stage's marker lag is the pipeline's, whatever
// the polls' phase, within the marker spacing and the pipeline's jitter;
// a least-squares line through the lags themselves is off by far more.
func TestLagGrowthIgnoresThePolls(t *testing.T) {
	// The last three quarters of a 3 s step, with 1 s polls: two or three
	// polls, so the growth is good to about the marker spacing over a poll
	// interval, and the jitter; and of a 20 s step, with a dozen or more.
	for _, c := range []struct{ to, tolerance float64 }{{3, 0.025}, {20, 0.004}} {
		worst := lagGrowthErrors(t, 0.75, c.to, c.tolerance)
		t.Logf("step of %vs: least squares through the lags off by up to %.3f", c.to, worst)
		if c.to == 3 && worst < 2*c.tolerance { // over 20 s the lags' own line is close too
			t.Errorf("step of %vs: least squares is off by at most %.4f: the polls do not bias it here, so this test shows nothing", c.to, worst)
		}
	}
}

// lagGrowthErrors checks lagGrowth over polls of every phase, regular or
// not, against the growth the markers were given, and returns the largest
// error of a least-squares line through the lags instead.
func lagGrowthErrors(t *testing.T, from, to, tolerance float64) (worstLS float64) {
	const gap, jitter = 0.01, 0.02
	rng := rand.New(rand.NewPCG(1, 2))
	for _, growth := range []float64{0, 0.01, 0.03, 0.05, 0.2} {
		for phase := 0.0; phase < 1; phase += 0.05 {
			for _, irregular := range []bool{false, true} {
				// Polls every second, or (as the canary's poll clock does
				// after each round of steady markers) every half to one.
				var polls []float64
				for p := phase; p < 2*to; {
					polls = append(polls, p)
					step := 1.0
					if irregular {
						step = 0.5 + 0.5*rng.Float64()
					}
					p += step
				}
				ms := polled(polls, from, to, gap, 0.3, growth, jitter, rng)
				g, ok := lagGrowth(ms)
				if !ok {
					t.Fatalf("growth %v phase %v: no growth from %d markers", growth, phase, len(ms))
				}
				if math.Abs(g-growth) > tolerance*(1+growth) {
					t.Errorf("span %v-%vs, growth %v, polls from %.2fs (irregular %v): measured %.4f", from, to, growth, phase, irregular, g)
				}
				// The lag as the poll clock reports it: from the middle of
				// the interval the marker arrived in.
				var pts []point
				for _, m := range ms {
					prev := m.seen - 1
					for i, p := range polls {
						if p == m.seen && i > 0 {
							prev = polls[i-1]
						}
					}
					pts = append(pts, point{m.sent, (prev+m.seen)/2 - m.sent})
				}
				worstLS = max(worstLS, math.Abs(leastSquaresSlope(pts)-growth))
			}
		}
	}
	return worstLS
}

// TestLagGrowthTold: a stage that is told shows each marker when it
// arrives: the growth is the slope of their lags. Too few markers, or
// fewer than three polls (two points), give none.
func TestLagGrowthTold(t *testing.T) {
	var ms []sighting
	for x := 0.0; x < 3; x += 0.05 {
		ms = append(ms, sighting{sent: x, seen: x + 0.2 + 0.1*x})
	}
	if g, ok := lagGrowth(ms); !ok || math.Abs(g-0.1) > 1e-9 {
		t.Errorf("growth %v %v, want 0.1", g, ok)
	}
	if _, ok := lagGrowth(ms[:minTrendMarkers-1]); ok {
		t.Error("a growth from fewer than minTrendMarkers markers")
	}
	two := polled([]float64{1, 2}, 0, 1.5, 0.01, 0.3, 0, 0, nil) // the last poll does not count
	if _, ok := lagGrowth(two); ok {
		t.Errorf("a growth from %d markers seen at two polls", len(two))
	}
}

// TestLagGrowthPartitions: a stream job that keeps up on one partition and
// falls behind by 10% of the time on the other has fallen behind on half
// the markers: the growth is the partitions' own, pooled, not that of the
// one it serves first.
func TestLagGrowthPartitions(t *testing.T) {
	var polls []float64
	for p := 0.0; p < 40; p += 0.25 {
		polls = append(polls, p)
	}
	var ms []sighting
	for part, growth := range []float64{0, 0.1} {
		for _, m := range polled(polls, 0.75, 20, 0.01, 0.3, growth, 0, nil) {
			m.partition = int32(part)
			ms = append(ms, m)
		}
	}
	if g, ok := lagGrowth(ms); !ok || math.Abs(g-0.05) > 0.005 {
		t.Errorf("growth %v %v, want 0.05, between the partitions' 0 and 0.1", g, ok)
	}
}
