package burst

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/slo-scout/slo-canary/canary/coord"
	"github.com/slo-scout/slo-canary/config"
)

// Split deals the ingest topic's partitions, sorted, round-robin over the
// members sorted by instance (then member id): every partition to exactly
// one member, the same answer on every replica that holds the same view.
// Members left without a partition (more members than partitions) are not
// in the result: they take no part in the burst.
func Split(parts []int32, members []coord.Member) map[string][]int32 {
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b coord.Member) int {
		return cmp.Or(cmp.Compare(a.Instance, b.Instance), cmp.Compare(a.ID, b.ID))
	})
	ps := slices.Clone(parts)
	slices.Sort(ps)
	out := map[string][]int32{}
	if len(ms) == 0 {
		return out
	}
	for i, p := range ps {
		m := ms[i%len(ms)].Instance
		out[m] = append(out[m], p)
	}
	return out
}

// ShareSteps is a member's share of steps: the same durations, at the rate
// times mine/all partitions.
func ShareSteps(steps []config.Step, mine, all int) []config.Step {
	out := make([]config.Step, len(steps))
	for i, s := range steps {
		out[i] = config.Step{Rate: s.Rate * float64(mine) / float64(all), Duration: s.Duration}
	}
	return out
}

// Message types on the coordination topic.
const (
	MsgStart  = "start"  // the leader: a burst starts, with its assignment
	MsgStop   = "stop"   // the leader: stop the burst's shares now
	MsgResult = "result" // a member: its share's partial result
)

// Message is one record on the coordination topic about a scaled-out burst,
// JSON, keyed by the burst id.
type Message struct {
	Type    string `json:"type"`
	Burst   string `json:"burst"` // the burst id
	Profile string `json:"profile,omitempty"`
	// Steps as configured ("1000/s for 30s"), the whole burst's.
	Steps []string `json:"steps,omitempty"`
	// Start is when every member's load starts.
	Start time.Time `json:"start,omitzero"`
	// Assignment is the partitions of each member, by instance.
	Assignment map[string][]int32 `json:"assignment,omitempty"`
	// Members are the members of the view the assignment was made in.
	Members    []coord.Member `json:"members,omitempty"`
	Generation int32          `json:"generation"`
	Leader     coord.Member   `json:"leader"` // the member that owns the burst
	From       string         `json:"from"`   // the sender's instance
	Abort      *Abort         `json:"abort,omitempty"`
	Result     *Partial       `json:"result,omitempty"`
}

// Partial is one member's share of a scaled-out burst: its report, computed
// but not judged, and the raw figures the leader merges.
type Partial struct {
	Instance   string  `json:"instance"`
	Partitions []int32 `json:"partitions"`
	Report     *Report `json:"report"`
	// Lags are the share's marker lags at the judged stage, in seconds;
	// OtherLags those at the other stages.
	Lags      []float64            `json:"lags"`
	OtherLags map[string][]float64 `json:"other_lags,omitempty"`
	// FirstSeen and LastSeen are the first and last sightings of the share's
	// markers at the judged stage.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
}

func encodeMessage(m Message) ([]byte, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("coordination message: %w", err)
	}
	return data, nil
}

func decodeMessage(data []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("coordination message: %w", err)
	}
	if m.Burst == "" || (m.Type != MsgStart && m.Type != MsgStop && m.Type != MsgResult) {
		return m, fmt.Errorf("coordination message: type %q, burst %q", m.Type, m.Burst)
	}
	if m.Type == MsgResult && (m.Result == nil || m.Result.Report == nil) {
		return m, fmt.Errorf("coordination message: result of burst %s without a report", m.Burst)
	}
	return m, nil
}

// Merge makes one report of the members' partial results of a scaled-out
// burst: per-second sends and step figures added up (the members' seconds
// are aligned: they all started at the announced start), lag percentiles
// from the union of the members' marker lags, counts summed. steps are the
// whole burst's; lead is the leader's partial (its consumer-group samples
// measure the whole topic), or nil. The report is not judged.
func Merge(profile, id, stage string, budgets config.BurstBudgets, steps []config.Step, start time.Time, lead *Partial, parts []*Partial) *Report {
	rep := &Report{Profile: profile, ID: id, Stage: stage, Budgets: budgets, Started: start, LoadEnd: start}
	for _, st := range steps {
		rep.Events.Planned += st.Events()
	}
	var lags []float64
	other := map[string][]float64{}
	var first, last time.Time
	perSec := map[int]*SecondReport{}
	stepsOut := make([]StepReport, len(steps))
	for i, st := range steps {
		stepsOut[i] = StepReport{Rate: config.FormatRate(st.Rate), TargetRate: st.Rate, Duration: config.FormatDuration(st.Duration),
			Planned: st.Events(), Completed: true}
	}
	for _, p := range parts {
		r := p.Report
		if r.Abort != nil && rep.Abort == nil {
			a := *r.Abort
			a.Detail = "member " + p.Instance + ": " + a.Detail
			rep.Abort = &a
		}
		rep.Events.Sent += r.Events.Sent
		rep.Events.Acked += r.Events.Acked
		rep.Events.Failed += r.Events.Failed
		for k, v := range r.Events.ByReason {
			if rep.Events.ByReason == nil {
				rep.Events.ByReason = map[string]int64{}
			}
			rep.Events.ByReason[k] += v
		}
		m := &rep.Markers
		m.Sent += r.Markers.Sent
		m.Acked += r.Markers.Acked
		m.Seen += r.Markers.Seen
		m.Lost += r.Markers.Lost
		m.Late += r.Markers.Late
		m.Duplicates += r.Markers.Duplicates
		m.OutOfOrder += r.Markers.OutOfOrder
		m.Unresolved += r.Markers.Unresolved
		lags = append(lags, p.Lags...)
		for st, l := range p.OtherLags {
			other[st] = append(other[st], l...)
		}
		if !p.FirstSeen.IsZero() && (first.IsZero() || p.FirstSeen.Before(first)) {
			first = p.FirstSeen
		}
		if p.LastSeen.After(last) {
			last = p.LastSeen
		}
		if r.LoadEnd.After(rep.LoadEnd) {
			rep.LoadEnd = r.LoadEnd
		}
		for i := range stepsOut {
			so := &stepsOut[i]
			if i >= len(r.Steps) {
				so.Completed = false
				continue
			}
			s := r.Steps[i]
			so.Sent += s.Sent
			so.Failed += s.Failed
			so.Elapsed = max(so.Elapsed, s.Elapsed)
			so.Completed = so.Completed && s.Completed
			so.MaxBehindSeconds = max(so.MaxBehindSeconds, s.MaxBehindSeconds)
		}
		for _, s := range r.PerSecond {
			sr := perSec[s.Second]
			if sr == nil {
				sr = &SecondReport{Second: s.Second}
				perSec[s.Second] = sr
			}
			sr.Target += s.Target
			sr.Sent += s.Sent
			sr.MaxBehindSeconds = max(sr.MaxBehindSeconds, s.MaxBehindSeconds)
		}
	}
	var acked, elapsed float64
	for i := range stepsOut {
		so := &stepsOut[i]
		if so.Elapsed > 0 {
			so.AchievedRate = float64(so.Sent-so.Failed) / so.Elapsed
			acked += float64(so.Sent - so.Failed)
			elapsed += so.Elapsed
		}
		so.Deviation = deviation(so.AchievedRate, so.TargetRate)
	}
	// Steps no member reached are left out, as a burst run alone leaves out
	// the steps after an abort.
	for len(stepsOut) > 0 && stepsOut[len(stepsOut)-1].Elapsed == 0 && stepsOut[len(stepsOut)-1].Sent == 0 {
		stepsOut = stepsOut[:len(stepsOut)-1]
	}
	rep.Steps = stepsOut
	if elapsed > 0 {
		rep.AchievedRate = acked / elapsed
	}
	for _, k := range slices.Sorted(maps.Keys(perSec)) {
		sr := perSec[k]
		sr.Target = math.Round(sr.Target*10) / 10
		sr.Deviation = deviation(float64(sr.Sent), sr.Target)
		rep.PerSecond = append(rep.PerSecond, *sr)
	}
	sort.Float64s(lags)
	rep.Lag = lagSummary(lags)
	if len(other) > 0 {
		rep.OtherStages = map[string]LagSummary{}
		for st, l := range other {
			sort.Float64s(l)
			rep.OtherStages[st] = lagSummary(l)
		}
	}
	if rep.Markers.Acked > 0 {
		rep.LossRatio = float64(rep.Markers.Lost) / float64(rep.Markers.Acked)
	}
	if !last.IsZero() {
		rep.CatchUpSeconds = max(last.Sub(rep.LoadEnd).Seconds(), 0)
		if d := last.Sub(first).Seconds(); d > 0 {
			rep.Processing.MarkersPerSecond = float64(rep.Markers.Seen-1) / d
		}
	}
	if lead != nil {
		rep.Processing.EventsPerSecond = lead.Report.Processing.EventsPerSecond
		rep.Processing.PeakEventsPerSecond = lead.Report.Processing.PeakEventsPerSecond
	}
	return rep
}
