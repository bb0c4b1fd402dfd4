package burst

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary/coord"
	"github.com/slo-scout/slo-canary/config"
)

// Membership is the coordination group as a scaled-out burst reads it (a
// *coord.Coordinator).
type Membership interface {
	Members() []coord.Member
	Self() string
	Leader() (coord.Member, bool)
	Holds() bool
	Generation() int32
	Changed() <-chan struct{}
}

const (
	// scaleOutLead is how far ahead of its start the leader announces a
	// scaled-out burst: time for every member to read the announcement.
	scaleOutLead = time.Second
	// coordReadBack is how far before now a coordination reader starts: a
	// member whose clock runs behind stamps its records earlier.
	coordReadBack = time.Minute
	// ReasonMemberLost is the abort of a scaled-out burst that lost a
	// member (or its leader, or a member's result).
	ReasonMemberLost = "member_lost"
)

// scaleOut reports whether the next burst is split across the group: scale
// out is on, and the group has more than one member.
func (r *Runner) scaleOut() bool {
	return r.cfg.Bursts.ScaleOut && r.o.Membership != nil && r.o.CoordinationTopic != "" && len(r.o.Membership.Members()) > 1
}

// coordClient produces to and reads the coordination topic's partition 0,
// from records stamped at from onwards.
func (r *Runner) coordClient(from time.Time) (*kgo.Client, error) {
	opts := append(r.svc.ProducerOpts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.o.CoordinationTopic: {0: kgo.NewOffset().AfterMilli(from.UnixMilli())}}),
		kgo.ProducerLinger(0),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("burst scale-out: kafka client: %w", err)
	}
	return cl, nil
}

// send writes m to the coordination topic, waiting for it at most the
// produce timeout and a margin, even after ctx ends (a stop announced as
// the daemon stops), and then no later than afterStop allows. kgo fails a
// record on its context only while it waits to be sent: one in flight to a
// broker that does not answer waits for the client's Close, so send stops
// waiting at the deadline instead.
func (r *Runner) send(ctx context.Context, cl *kgo.Client, m Message) error {
	data, err := encodeMessage(m)
	if err != nil {
		return err
	}
	ctx, cancel := r.afterStop(ctx, r.cfg.Canary.ProduceTimeout+5*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: r.o.CoordinationTopic, Partition: 0, Key: []byte(m.Burst), Value: data}
	errc := make(chan error, 1)
	cl.Produce(ctx, rec, func(_ *kgo.Record, err error) { errc <- err })
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	if err != nil {
		return fmt.Errorf("burst scale-out: %s message: %w", m.Type, err)
	}
	return nil
}

func total(steps []config.Step) time.Duration {
	var d time.Duration
	for _, s := range steps {
		d += s.Duration
	}
	return d
}

func stepSpecs(steps []config.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.String()
	}
	return out
}

// resultWait is the longest the leader waits for the members' results: the
// load, then the judged stage's deadline and polls, as a burst run alone
// waits for its markers, and a margin for the results to travel.
func (r *Runner) resultWait(steps []config.Step) time.Duration {
	oc := r.cfg.Observers[r.cfg.Bursts.Stage]
	return total(steps) + oc.EffectiveDeadline(r.cfg.Canary.Deadline) + 3*oc.PollInterval + 15*time.Second
}

// leaderRun is the leader's account of a scaled-out burst.
type leaderRun struct {
	r      *Runner
	cl     *kgo.Client
	start  Message           // the announcement
	others map[string]string // member id by instance, of the members other than the leader with partitions

	mu       sync.Mutex
	partials map[string]*Partial
	abort    *Abort
	aborted  chan struct{} // closed with the first abort
	all      chan struct{} // closed once every other member reported
	stopOwn  chan *Abort   // the leader's own share
}

// fail records the first abort of the burst, stops the leader's share and
// tells the members to stop theirs.
func (l *leaderRun) fail(ctx context.Context, a *Abort) {
	l.mu.Lock()
	if l.abort != nil {
		l.mu.Unlock()
		return
	}
	if a.At.IsZero() {
		a.At = time.Now()
	}
	l.abort = a
	close(l.aborted)
	l.mu.Unlock()
	select {
	case l.stopOwn <- a:
	default:
	}
	l.r.log.Warn("scaled-out burst aborted", "id", l.start.Burst, "reason", a.Reason, "detail", a.Detail)
	stop := l.start
	stop.Type, stop.Abort, stop.Assignment, stop.Members, stop.Steps = MsgStop, a, nil, nil, nil
	if err := l.r.send(ctx, l.cl, stop); err != nil {
		l.r.log.Warn("scaled-out burst: stop not announced", "err", err)
	}
}

// results reads the members' results until ctx ends.
func (l *leaderRun) results(ctx context.Context) {
	for {
		fs := l.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachRecord(func(rec *kgo.Record) {
			m, err := decodeMessage(rec.Value)
			if err != nil || m.Type != MsgResult || m.Burst != l.start.Burst {
				return
			}
			if _, ok := l.others[m.From]; !ok {
				return
			}
			l.mu.Lock()
			_, dup := l.partials[m.From]
			l.partials[m.From] = m.Result
			if !dup && len(l.partials) == len(l.others) {
				close(l.all)
			}
			l.mu.Unlock()
			if a := m.Result.Report.Abort; a != nil {
				l.fail(ctx, &Abort{Reason: a.Reason, Detail: "member " + m.From + ": " + a.Detail, Value: a.Value, Threshold: a.Threshold, At: a.At})
			}
		})
	}
}

// watch aborts the burst with member_lost when a member with partitions
// leaves the group, or this replica stops leading it, until every member
// reported or ctx ends. It checks at every change of the view and every
// guard interval.
func (l *leaderRun) watch(ctx context.Context) {
	m := l.r.o.Membership
	t := time.NewTicker(l.r.cfg.Bursts.Guard.Interval)
	defer t.Stop()
	for {
		changed := m.Changed()
		if a := l.check(); a != nil {
			l.fail(ctx, a)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-l.all:
			return
		case <-changed:
		case <-t.C:
		}
	}
}

func (l *leaderRun) check() *Abort {
	m := l.r.o.Membership
	if !m.Holds() {
		return &Abort{Reason: ReasonMemberLost, Detail: "this replica no longer leads the coordination group"}
	}
	view := m.Members()
	if view == nil {
		return nil // a rebalance: judged once it ends
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, inst := range slices.Sorted(maps.Keys(l.others)) {
		if _, ok := l.partials[inst]; ok {
			continue // reported: it may go
		}
		id := l.others[inst]
		if !slices.ContainsFunc(view, func(x coord.Member) bool { return x.ID == id }) {
			return &Abort{Reason: ReasonMemberLost, Detail: fmt.Sprintf("member %s left the coordination group during the burst", inst)}
		}
	}
	return nil
}

// lead runs a scaled-out burst as its leader: it splits the partitions
// over the members, announces the burst on the coordination topic, runs its
// own share, collects the members' results and writes one report and one
// verdict.
func (r *Runner) lead(ctx context.Context, profile string, steps []config.Step) (*Report, error) {
	ms := r.o.Membership
	members, self, gen := ms.Members(), ms.Self(), ms.Generation()
	i := slices.IndexFunc(members, func(m coord.Member) bool { return m.ID == self })
	if i < 0 || !ms.Holds() {
		return nil, errors.New("burst scale-out: this replica does not lead the coordination group")
	}
	me := members[i]
	cl, err := r.coordClient(time.Now().Add(-coordReadBack))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	parts, err := topicPartitions(ctx, cl, r.cfg.Canary.Topic)
	if err != nil {
		return nil, fmt.Errorf("burst: %w", err)
	}
	assign := Split(parts, members)
	b, rep := r.newBurst(profile, steps)
	start := time.Now().Add(scaleOutLead)
	l := &leaderRun{
		r: r, cl: cl, others: map[string]string{}, partials: map[string]*Partial{},
		aborted: make(chan struct{}), all: make(chan struct{}), stopOwn: make(chan *Abort, 1),
		start: Message{Type: MsgStart, Burst: b.id, Profile: profile, Steps: stepSpecs(steps), Start: start,
			Assignment: assign, Members: members, Generation: gen, Leader: me, From: me.Instance},
	}
	for _, m := range members {
		if _, ok := assign[m.Instance]; ok && m.ID != me.ID {
			l.others[m.Instance] = m.ID
		}
	}
	if len(l.others) == 0 {
		close(l.all)
	}
	if err := r.send(ctx, cl, l.start); err != nil {
		return nil, err
	}
	r.log.Info("scaled-out burst announced", "profile", profile, "id", b.id, "start", start, "generation", gen, "assignment", assign)

	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.results(wctx) }()
	go func() { defer wg.Done(); l.watch(wctx) }()
	defer func() { wcancel(); wg.Wait() }()

	var own *Partial
	if mine := assign[me.Instance]; len(mine) > 0 {
		results, err := b.run(ctx, rep, ShareSteps(steps, len(mine), len(parts)), share{parts: mine, start: start, stop: l.stopOwn})
		if err != nil {
			l.fail(ctx, &Abort{Reason: ReasonMemberLost, Detail: "the leader's share could not start: " + err.Error()})
			return nil, err
		}
		b.compute(rep, results)
		own = b.partial(rep, mine)
		if a := rep.Abort; a != nil {
			l.fail(ctx, a)
		}
	}

	wait := time.NewTimer(time.Until(start.Add(r.resultWait(steps))))
	defer wait.Stop()
	select {
	case <-l.all:
	case <-wait.C:
		l.mu.Lock()
		var missing []string
		for inst := range l.others {
			if _, ok := l.partials[inst]; !ok {
				missing = append(missing, inst)
			}
		}
		l.mu.Unlock()
		slices.Sort(missing)
		l.fail(ctx, &Abort{Reason: ReasonMemberLost, Detail: "no result from member " + strings.Join(missing, ", ")})
	case <-ctx.Done():
		l.fail(ctx, &Abort{Reason: "cancelled", Detail: "the burst was cancelled (shutdown)"})
	case <-l.aborted:
		// The members stop at once and skip their wait: give them a guard
		// interval to report what they did.
		grace := time.NewTimer(r.cfg.Bursts.Guard.Interval)
		select {
		case <-l.all:
		case <-grace.C:
		case <-ctx.Done():
		}
		grace.Stop()
	}

	l.mu.Lock()
	all := make([]*Partial, 0, len(l.partials)+1)
	if own != nil {
		all = append(all, own)
	}
	for _, inst := range slices.Sorted(maps.Keys(l.others)) {
		if p := l.partials[inst]; p != nil {
			all = append(all, p)
		}
	}
	abort := l.abort
	l.mu.Unlock()
	merged := Merge(profile, b.id, r.cfg.Bursts.Stage, r.cfg.Bursts.Budgets, steps, start, own, all)
	if abort != nil {
		merged.Abort = abort
	}
	merged.Generation, merged.Assignment = gen, assign
	merged.Finished = time.Now()
	var acked int64
	if own != nil {
		acked = own.Report.Events.Acked
	}
	return r.publish(merged, acked, false), nil
}

// partial is b's share as its leader merges it; rep is computed.
func (b *burst) partial(rep *Report, parts []int32) *Partial {
	p := &Partial{Instance: b.r.cfg.Canary.Instance, Partitions: parts, Report: rep}
	b.mu.Lock()
	defer b.mu.Unlock()
	p.Lags = slices.Clone(b.lags)
	for _, bm := range b.markers {
		if !bm.acked {
			continue
		}
		if !bm.lost && !bm.seenAt.IsZero() {
			if p.FirstSeen.IsZero() || bm.seenAt.Before(p.FirstSeen) {
				p.FirstSeen = bm.seenAt
			}
			if bm.seenAt.After(p.LastSeen) {
				p.LastSeen = bm.seenAt
			}
		}
		for st, lag := range bm.other {
			if p.OtherLags == nil {
				p.OtherLags = map[string][]float64{}
			}
			p.OtherLags[st] = append(p.OtherLags[st], lag.Seconds())
		}
	}
	return p
}

// Follow runs this replica's shares of the scaled-out bursts its group's
// leader announces, until ctx ends: it reads the coordination topic, runs a
// share at its start, stops it when the leader says so or leaves the group,
// and reports the share's partial result. It returns once ctx ends and a
// share under way has stopped.
func (r *Runner) Follow(ctx context.Context) error {
	ctx, unclock := withStopClock(ctx)
	defer unclock()
	if !r.cfg.Bursts.ScaleOut || r.o.Membership == nil || r.o.CoordinationTopic == "" {
		return errors.New("burst: Follow needs bursts.scale_out, a membership and a coordination topic")
	}
	cl, err := r.coordClient(time.Now().Add(-coordReadBack))
	if err != nil {
		return err
	}
	defer cl.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	stops := map[string]chan *Abort{} // the shares running, by burst id
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			r.log.Warn("coordination topic fetch failed", "topic", topic, "partition", p, "err", err)
		})
		fs.EachRecord(func(rec *kgo.Record) {
			m, err := decodeMessage(rec.Value)
			if err != nil || m.From == r.cfg.Canary.Instance {
				return
			}
			switch m.Type {
			case MsgStart:
				stop := make(chan *Abort, 1)
				mu.Lock()
				stops[m.Burst] = stop
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() {
						mu.Lock()
						delete(stops, m.Burst)
						mu.Unlock()
					}()
					r.runShare(ctx, cl, m, stop)
				}()
			case MsgStop:
				mu.Lock()
				if stop := stops[m.Burst]; stop != nil {
					a := m.Abort
					if a == nil {
						a = &Abort{Reason: ReasonMemberLost, Detail: "the leader stopped the burst"}
					}
					select {
					case stop <- a:
					default:
					}
				}
				mu.Unlock()
			}
		})
	}
}

// runShare runs this member's share of the burst that start announces, and
// sends its result.
func (r *Runner) runShare(ctx context.Context, cl *kgo.Client, start Message, stop chan *Abort) {
	self := r.cfg.Canary.Instance
	mine := start.Assignment[self]
	if len(mine) == 0 {
		return
	}
	log := r.log.With("id", start.Burst, "leader", start.Leader.Instance)
	all := 0
	for _, ps := range start.Assignment {
		all += len(ps)
	}
	steps, err := config.ParseSteps(start.Steps)
	var refuse string
	switch {
	case err != nil:
		refuse = "bad steps: " + err.Error()
	case time.Now().After(start.Start.Add(total(steps))):
		return // an announcement read back from before this replica started: that burst is over
	case time.Now().After(start.Start.Add(r.cfg.Bursts.Guard.Interval)):
		refuse = "the announcement came too late (clocks apart, or a slow coordination topic)"
	case !r.running.CompareAndSwap(false, true):
		refuse = "a burst was already running on " + self
	}
	b, rep := r.newBurst(start.Profile, ShareSteps(steps, len(mine), all))
	b.id, rep.ID = start.Burst, start.Burst
	var results []StepResult
	if refuse == "" {
		r.o.Metrics.Running.Set(1)
		log.Info("scaled-out burst: running this replica's share", "partitions", mine, "start", start.Start)
		watchCtx, cancel := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() { defer close(watched); r.watchLeader(watchCtx, start.Leader, stop) }()
		results, err = b.run(ctx, rep, ShareSteps(steps, len(mine), all), share{parts: mine, start: start.Start, stop: stop})
		cancel()
		<-watched
		r.o.Metrics.Running.Set(0)
		r.running.Store(false)
		if err != nil {
			refuse = err.Error()
		}
	}
	if refuse != "" {
		log.Warn("scaled-out burst: share not run", "reason", refuse)
		b.setAbort(&Abort{Reason: ReasonMemberLost, Detail: refuse})
	}
	b.compute(rep, results)
	rep.Abort = b.getAbort()
	rep.Finished = time.Now()
	p := b.partial(rep, mine)
	r.o.Metrics.EventsSent.Add(float64(rep.Events.Acked))
	res := Message{Type: MsgResult, Burst: start.Burst, Profile: start.Profile, Generation: start.Generation, Leader: start.Leader,
		From: self, Result: p}
	if err := r.send(ctx, cl, res); err != nil {
		log.Warn("scaled-out burst: result not sent", "err", err)
		return
	}
	log.Info("scaled-out burst: share done", "events", rep.Events.Acked, "markers", rep.Markers.Acked, "seen", rep.Markers.Seen,
		"abort", rep.Abort)
}

// watchLeader stops the share (through stop) once the burst's leader is no
// longer the group's: a view that names another leader, or no view for a
// whole guard interval. It checks at every change of the view and every
// guard interval, until ctx ends.
func (r *Runner) watchLeader(ctx context.Context, leader coord.Member, stop chan<- *Abort) {
	m := r.o.Membership
	iv := r.cfg.Bursts.Guard.Interval
	t := time.NewTicker(iv / 2)
	defer t.Stop()
	var unstable time.Time
	for {
		changed := m.Changed()
		l, ok := m.Leader()
		gone := ""
		switch {
		case ok && l.ID != leader.ID:
			gone = fmt.Sprintf("the burst's leader %s no longer leads the coordination group (%s does)", leader.Instance, l.Instance)
		case ok:
			unstable = time.Time{}
		case unstable.IsZero():
			unstable = time.Now()
		case time.Since(unstable) >= iv:
			gone = fmt.Sprintf("the coordination group has had no leader for %s", iv)
		}
		if gone != "" {
			select {
			case stop <- &Abort{Reason: ReasonMemberLost, Detail: gone}:
			default:
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
	}
}
