package burst

import (
	"math"
	"math/rand/v2"
	"testing"
)

// polled is what a stage polled at the given times shows of markers sent
// every gap seconds over [from, to], each visible delay + growth*sent (+
// jitter) after it was sent: each is seen at the first poll at or after it
// became visible, its lag taken from the middle of the interval since the
// poll before, as the canary's poll clock does.
func polled(polls []float64, from, to, gap, delay, growth, jitter float64, rng *rand.Rand) []sighting {
	var ms []sighting
	for x := from; x <= to; x += gap {
		visible := x + delay + growth*x
		if jitter > 0 {
			visible += jitter * rng.Float64()
		}
		for i, p := range polls {
			if p >= visible && i > 0 {
				ms = append(ms, sighting{sent: x, seen: p, lag: (polls[i-1]+p)/2 - x})
				break
			}
		}
	}
	return ms
}

// everyPoll is polls from phase until end, every poll seconds or, irregular,
// every half to one poll (as the canary's poll clock does after each round
// of steady markers).
func everyPoll(phase, end, poll float64, irregular bool, rng *rand.Rand) []float64 {
	var polls []float64
	for p := phase - poll; p < end; {
		polls = append(polls, p)
		step := poll
		if irregular {
			step = poll * (0.5 + 0.5*rng.Float64())
		}
		p += step
	}
	return polls
}

// TestLagGrowthOverEnoughPolls: over the last three quarters of a 3 s step
// polled every 250 ms, and of a 20 s step polled every second, the growth of
// a polled stage's marker lag is the pipeline's within 2% and 0.5%,
// whatever the polls' phase, regular or not; over two or three 1 s polls it
// would be off by a tenth, and there is none.
func TestLagGrowthOverEnoughPolls(t *testing.T) {
	const gap, jitter, delay = 0.01, 0.02, 0.3
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ from, to, poll, tolerance float64 }{{0.75, 3, 0.25, 0.02}, {5, 20, 1, 0.005}} {
		for _, growth := range []float64{0, 0.01, 0.03, 0.05, 0.2} {
			for phase := 0.0; phase < c.poll; phase += c.poll / 20 {
				for _, irregular := range []bool{false, true} {
					ms := polled(everyPoll(phase, 2*c.to, c.poll, irregular, rng), c.from, c.to, gap, delay, growth, jitter, rng)
					g, ok := lagGrowth(ms)
					if !ok {
						t.Fatalf("span %v-%vs: no growth from %d markers", c.from, c.to, len(ms))
					}
					if math.Abs(g-growth) > c.tolerance*(1+growth) {
						t.Errorf("span %v-%vs, polls every %vs from %.3fs (irregular %v), growth %v: measured %.4f",
							c.from, c.to, c.poll, phase, irregular, growth, g)
					}
				}
			}
		}
	}
	worst := 0.0
	for phase := 0.0; phase < 1; phase += 0.05 {
		ms := polled(everyPoll(phase, 6, 1, false, nil), 0.75, 3, gap, delay, 0, 0, nil)
		if g, ok := lagGrowth(ms); ok {
			t.Fatalf("a growth (%v) from %d markers over a few 1 s polls", g, len(ms))
		}
		pts := make([]point, len(ms))
		for i, m := range ms {
			pts[i] = point{m.sent, m.lag}
		}
		worst = max(worst, math.Abs(leastSquaresSlope(pts)))
	}
	// Why there is none: a line through those lags is off by far more.
	if worst < 0.05 {
		t.Errorf("over a few 1 s polls the lags' line is off by at most %.3f: the minimum of polls shows nothing", worst)
	}
}

// TestLagGrowthTold: a stage that is told shows each marker when it
// arrives: the growth is the slope of their lags. Too few markers give
// none.
func TestLagGrowthTold(t *testing.T) {
	var ms []sighting
	for x := 0.0; x < 3; x += 0.05 {
		lag := 0.2 + 0.1*x
		ms = append(ms, sighting{sent: x, seen: x + lag, lag: lag})
	}
	if g, ok := lagGrowth(ms); !ok || math.Abs(g-0.1) > 1e-9 {
		t.Errorf("growth %v %v, want 0.1", g, ok)
	}
	if _, ok := lagGrowth(ms[:minTrendMarkers-1]); ok {
		t.Error("a growth from fewer than minTrendMarkers markers")
	}
}

// TestLagGrowthPartitions: a stream job that keeps up on one partition and
// falls behind by 10% of the time on the other has fallen behind on half
// the markers: the growth is the markers', between the two.
func TestLagGrowthPartitions(t *testing.T) {
	polls := everyPoll(0, 40, 0.25, false, nil)
	var ms []sighting
	for _, growth := range []float64{0, 0.1} {
		ms = append(ms, polled(polls, 0.75, 20, 0.01, 0.3, growth, 0, nil)...)
	}
	if g, ok := lagGrowth(ms); !ok || math.Abs(g-0.05) > 0.005 {
		t.Errorf("growth %v %v, want 0.05, between the partitions' 0 and 0.1", g, ok)
	}
}

// TestRecordsTolerance: the groups' records checks keep backlog_tolerance
// over a window of enough commits, and widen it to half a commit's share
// of the window over fewer, so a commit's stair is not read as backlog.
func TestRecordsTolerance(t *testing.T) {
	win := func(commits, samples int, hasCommit bool) []lagSample {
		var w []lagSample
		for i := range samples {
			w = append(w, lagSample{committed: int64(i * commits / samples), hasCommit: hasCommit})
		}
		return w
	}
	for _, c := range []struct {
		commits   int
		hasCommit bool
		want      float64
	}{
		{22, true, 0.05}, {minCommits, true, 0.05}, {4, true, 0.125}, {1, true, 0.5}, {1, false, 0.05},
	} {
		if got := recordsTolerance(0.05, win(c.commits, 22, c.hasCommit)); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%d commits (committed offsets known: %v): tolerance %v, want %v", c.commits, c.hasCommit, got, c.want)
		}
	}
}
