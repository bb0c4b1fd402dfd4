package burst

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/canary/coord"
	"github.com/slo-scout/slo-canary/config"
)

func TestSplit(t *testing.T) {
	m := func(inst, id string) coord.Member { return coord.Member{ID: id, Instance: inst} }
	for _, tc := range []struct {
		name    string
		parts   []int32
		members []coord.Member
		want    map[string][]int32
	}{
		{"one member takes all", []int32{2, 0, 1}, []coord.Member{m("a", "x")}, map[string][]int32{"a": {0, 1, 2}}},
		{"dealt by instance, not by order", []int32{3, 1, 0, 2, 4}, []coord.Member{m("c", "1"), m("a", "2"), m("b", "3")},
			map[string][]int32{"a": {0, 3}, "b": {1, 4}, "c": {2}}},
		{"more members than partitions", []int32{0, 1}, []coord.Member{m("c", "1"), m("a", "2"), m("b", "3")},
			map[string][]int32{"a": {0}, "b": {1}}},
		{"no members", []int32{0}, nil, map[string][]int32{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Split(tc.parts, tc.members)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Split = %v, want %v", got, tc.want)
			}
			// Every partition to exactly one member, whatever the order the
			// members are listed in.
			rev := slices.Clone(tc.members)
			slices.Reverse(rev)
			if again := Split(tc.parts, rev); !reflect.DeepEqual(again, got) {
				t.Fatalf("Split depends on the members' order: %v vs %v", again, got)
			}
			var all []int32
			for _, ps := range got {
				all = append(all, ps...)
			}
			slices.Sort(all)
			want := slices.Sorted(slices.Values(tc.parts))
			if len(tc.members) > 0 && !slices.Equal(all, want) {
				t.Fatalf("partitions covered %v, want each of %v once", all, want)
			}
		})
	}
}

func TestShareSteps(t *testing.T) {
	steps := []config.Step{{Rate: 300, Duration: 2 * time.Second}, {Rate: 600, Duration: time.Second}}
	a, b := ShareSteps(steps, 2, 3), ShareSteps(steps, 1, 3)
	for i := range steps {
		if a[i].Duration != steps[i].Duration || b[i].Duration != steps[i].Duration {
			t.Fatalf("durations changed: %v %v", a, b)
		}
		if got := a[i].Events() + b[i].Events(); got != steps[i].Events() {
			t.Errorf("step %d: shares of %d events, want %d", i, got, steps[i].Events())
		}
	}
	if a[0].Rate != 200 || b[0].Rate != 100 {
		t.Errorf("rates %v %v, want 200 and 100", a[0].Rate, b[0].Rate)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	start := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
	in := Message{Type: MsgStart, Burst: "r.b1", Profile: "p", Steps: []string{"300/s for 2s"}, Start: start,
		Assignment: map[string][]int32{"a": {0, 2}, "b": {1}}, Members: []coord.Member{{ID: "1", Instance: "a"}, {ID: "2", Instance: "b"}},
		Generation: 7, Leader: coord.Member{ID: "1", Instance: "a"}, From: "a"}
	data, err := encodeMessage(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeMessage(data)
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
	for _, bad := range []string{`{}`, `{"type":"start"}`, `{"type":"bogus","burst":"x"}`, `{"type":"result","burst":"x"}`, `not json`} {
		if _, err := decodeMessage([]byte(bad)); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
}

// TestMerge: the members' partial results make one report: counts summed,
// per-second sends and steps added up, lag percentiles from the union of
// the lags (not an average of the members' percentiles), the first abort.
func TestMerge(t *testing.T) {
	start := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
	steps := []config.Step{{Rate: 300, Duration: 2 * time.Second}}
	part := func(inst string, rate float64, sent int64, lags []float64, first, last time.Duration) *Partial {
		return &Partial{Instance: inst, Lags: lags, FirstSeen: start.Add(first), LastSeen: start.Add(last),
			Report: &Report{
				LoadEnd: start.Add(2 * time.Second),
				Events:  EventCounts{Planned: sent, Sent: sent, Acked: sent - 1, Failed: 1, ByReason: map[string]int64{"timeout": 1}},
				Markers: MarkerCounts{Sent: int64(len(lags)) + 1, Acked: int64(len(lags)) + 1, Seen: int64(len(lags)), Lost: 1},
				Steps: []StepReport{{TargetRate: rate, Planned: sent, Sent: sent, Failed: 1, Elapsed: 2, Completed: true,
					MaxBehindSeconds: rate / 1000}},
				PerSecond: []SecondReport{{Second: 0, Target: rate, Sent: sent / 2}, {Second: 1, Target: rate, Sent: sent / 2}},
			}}
	}
	a := part("a", 200, 400, []float64{0.1, 0.2, 0.3}, 500*time.Millisecond, 3*time.Second)
	b := part("b", 100, 200, []float64{0.4, 5}, 200*time.Millisecond, 2500*time.Millisecond)
	rep := Merge("p", "r.b1", "capsules", config.BurstBudgets{}, steps, start, a, []*Partial{a, b})
	if rep.Events.Sent != 600 || rep.Events.Acked != 598 || rep.Events.Failed != 2 || rep.Events.Planned != 600 ||
		rep.Events.ByReason["timeout"] != 2 {
		t.Errorf("events %+v", rep.Events)
	}
	if m := rep.Markers; m.Acked != 7 || m.Seen != 5 || m.Lost != 2 {
		t.Errorf("markers %+v", m)
	}
	if rep.Lag.Samples != 5 || rep.Lag.Max != 5 || rep.Lag.P50 != 0.3 {
		t.Errorf("lag %+v, want the union's", rep.Lag)
	}
	if len(rep.Steps) != 1 {
		t.Fatalf("steps %+v", rep.Steps)
	}
	s := rep.Steps[0]
	if s.TargetRate != 300 || s.Sent != 600 || s.Failed != 2 || !s.Completed || s.AchievedRate != 299 || s.MaxBehindSeconds != 0.2 {
		t.Errorf("step %+v", s)
	}
	if rep.AchievedRate != 299 {
		t.Errorf("achieved rate %v", rep.AchievedRate)
	}
	if len(rep.PerSecond) != 2 || rep.PerSecond[0].Sent != 300 || rep.PerSecond[0].Target != 300 || rep.PerSecond[1].Sent != 300 {
		t.Errorf("per second %+v", rep.PerSecond)
	}
	if rep.CatchUpSeconds != 1 {
		t.Errorf("catch-up %v, want from the load's end to the last sighting of any member", rep.CatchUpSeconds)
	}
	if rep.LossRatio != 2.0/7 {
		t.Errorf("loss %v", rep.LossRatio)
	}
	if rep.Abort != nil {
		t.Errorf("abort %+v", rep.Abort)
	}

	// A member that stopped early: the step is not complete, its abort is
	// the burst's.
	b.Report.Steps[0].Completed = false
	b.Report.Abort = &Abort{Reason: "marker_lag", Detail: "slow"}
	rep = Merge("p", "r.b1", "capsules", config.BurstBudgets{}, steps, start, a, []*Partial{a, b})
	if rep.Steps[0].Completed || rep.Abort == nil || rep.Abort.Reason != "marker_lag" || rep.Abort.Detail != "member b: slow" {
		t.Errorf("step %+v, abort %+v", rep.Steps[0], rep.Abort)
	}
}
