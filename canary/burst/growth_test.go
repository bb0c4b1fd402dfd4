package burst

import (
	"math"
	"testing"
)

// sawtooth is the lags a stage polled every period reports for markers sent
// every gap seconds over [0, to]: a marker is seen at the first poll (at
// phase + k*period) after it becomes visible, delay plus growth*x after it
// was sent, and its lag is taken at the middle of the poll interval it
// arrived in, as the poll clock does.
func sawtooth(to, gap, period, phase, delay, growth float64) []point {
	var pts []point
	for x := 0.0; x <= to; x += gap {
		visible := x + delay + growth*x
		k := math.Ceil((visible - phase) / period)
		seen := phase + k*period - period/2
		pts = append(pts, point{x, seen - x})
	}
	return pts
}

// TestLagGrowthIgnoresThePollPhase: over a window of a few 1 s polls, the
// growth of a polled stage's marker lag is the pipeline's, whatever the
// polls' phase, where a least-squares line through the same lags tilts by
// several percent with it.
func TestLagGrowthIgnoresThePollPhase(t *testing.T) {
	const from, to, period, gap = 0.75, 3.0, 1.0, 0.01
	worstLS := 0.0
	for _, growth := range []float64{0, 0.01, 0.05, 0.2} {
		for phase := 0.0; phase < period; phase += 0.05 {
			var pts []point
			for _, p := range sawtooth(to, gap, period, phase, 0.3, growth) {
				if p.x >= from {
					pts = append(pts, p)
				}
			}
			g, ok := lagGrowth(pts, from, to, period)
			if !ok {
				t.Fatalf("growth %v phase %v: no growth from %d markers", growth, phase, len(pts))
			}
			// Within about a percent of the time, and 5% of a large growth:
			// a window's ends still split a poll's markers unevenly.
			if math.Abs(g-growth) > 0.012+0.05*growth {
				t.Errorf("growth %v, poll phase %.2fs: measured %.4f", growth, phase, g)
			}
			worstLS = max(worstLS, math.Abs(leastSquaresSlope(pts)-growth))
		}
	}
	// The reason for the windows: the plain fit is off by far more.
	t.Logf("least squares: off by up to %.3f", worstLS)
	if worstLS < 0.05 {
		t.Errorf("least squares is off by at most %.4f: the sawtooth does not bias it here, so this test shows nothing", worstLS)
	}
}

// TestLagGrowthTold: a stage that is told (no poll period) gets the
// least-squares slope; too few markers give none.
func TestLagGrowthTold(t *testing.T) {
	pts := sawtooth(3, 0.05, 1e-9, 0, 0.2, 0.1)
	if g, ok := lagGrowth(pts, 0, 3, 0); !ok || math.Abs(g-0.1) > 1e-3 {
		t.Errorf("growth %v %v, want 0.1", g, ok)
	}
	if _, ok := lagGrowth(pts[:minTrendMarkers-1], 0, 3, 0); ok {
		t.Error("a growth from fewer than minTrendMarkers markers")
	}
}
