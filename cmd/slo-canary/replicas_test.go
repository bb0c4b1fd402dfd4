package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// The tests in this file run replicas of the canary as separate processes
// of a binary built for the test (without -race: it is not the test's
// code), so that a SIGKILL is a real crash and a SIGTERM a real rollout.
// The testbed runs in the test process.

const (
	// replicaSession is the replicas' coordination.session_timeout.
	replicaSession = 6 * time.Second
	// replicaTick is the scheduled job's period: "@every 10s".
	replicaTick = 10 * time.Second
	// database is the stage every replica observes its markers at.
	markersObserved = `slo_canary_markers_observed_total{stage="database"}`
	markersLost     = `slo_canary_markers_lost_total{stage="database"}`
	markersLate     = `slo_canary_markers_late_total{stage="database"}`
	markersPending  = `slo_canary_markers_pending{stage="database"}`
)

// replicaProc is one replica: a canary.instance and its config file, run as
// a process, restarted under the same instance as often as a test asks. It
// keeps what every incarnation logged.
type replicaProc struct {
	t        *testing.T
	bin      string
	instance string
	config   string

	mu      sync.Mutex
	lines   []string    // every incarnation's log, for a failure
	jobs    []time.Time // "scheduled job started", every incarnation
	skipped []time.Time // scheduled runs skipped: nobody led, or the group was busy
	lost    []time.Time // the ticks a dead leader left, counted leader_lost by this one as it took the lead over
	listen  chan string // the address of the incarnation starting
	partial []byte

	cmd    *exec.Cmd
	url    string // of the running incarnation
	exited chan error
}

// replicaConfig writes the config of one replica of pipeline p: its own
// instance, coordination on with a short session timeout, recovery from the
// ingest topic on, JSON logs at info. edit changes it further.
func replicaConfig(t *testing.T, p *testbed.Pipeline, dsn, instance string, edit func(*config.Config)) string {
	t.Helper()
	c := pipelineConfig(t, p, dsn, 200*time.Millisecond, func(c *config.Config) {
		c.Log = config.Log{Level: "info", Format: "json"}
		c.Canary.Instance = instance
		c.Canary.Recovery.Enabled = true
		c.Coordination.Enabled = true
		c.Coordination.SessionTimeout = replicaSession
		c.ConsumerLag.Enabled = false
		c.Queries.Enabled = false
		if edit != nil {
			edit(c)
		}
	})
	data, err := config.Render(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), instance+".yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newReplica(t *testing.T, bin, instance, cfg string) *replicaProc {
	r := &replicaProc{t: t, bin: bin, instance: instance, config: cfg}
	t.Cleanup(func() {
		if r.running() {
			r.cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			r.mu.Lock()
			defer r.mu.Unlock()
			tail := r.lines[max(0, len(r.lines)-80):]
			t.Logf("%s: the last %d of %d log lines:\n%s", instance, len(tail), len(r.lines), strings.Join(tail, "\n"))
		}
	})
	return r
}

// Write takes the process's log, line by line.
func (r *replicaProc) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.partial = append(r.partial, b...)
	for {
		i := bytes.IndexByte(r.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		r.line(string(r.partial[:i]))
		r.partial = r.partial[i+1:]
	}
}

func (r *replicaProc) line(l string) {
	r.lines = append(r.lines, l)
	var rec struct {
		Time   time.Time `json:"time"`
		Msg    string    `json:"msg"`
		Listen string    `json:"listen"`
		// Ticks: the ticks of a leader_lost count (its log line is written
		// when the new leader takes over, not at the ticks).
		Ticks []time.Time `json:"ticks"`
	}
	if json.Unmarshal([]byte(l), &rec) != nil {
		return
	}
	switch {
	case rec.Msg == "slo-canary started":
		select {
		case r.listen <- rec.Listen:
		default:
		}
	case rec.Msg == "scheduled job started":
		r.jobs = append(r.jobs, rec.Time)
	case strings.HasPrefix(rec.Msg, "scheduled job skipped") && len(rec.Ticks) > 0: // leader_lost
		r.lost = append(r.lost, rec.Ticks...)
	case strings.HasPrefix(rec.Msg, "scheduled job skipped"): // no leader, or its group busy: a skipped run
		r.skipped = append(r.skipped, rec.Time)
	}
}

// start runs a new incarnation and waits until it serves HTTP.
func (r *replicaProc) start() {
	r.t.Helper()
	r.listen = make(chan string, 1)
	r.cmd = exec.Command(r.bin, "run", "--config", r.config)
	r.cmd.Stdout, r.cmd.Stderr = r, r
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan<- error) { exited <- cmd.Wait() }(r.cmd, r.exited)
	select {
	case addr := <-r.listen:
		r.url = "http://" + addr
	case err := <-r.exited:
		r.exited <- err
		r.t.Fatalf("%s exited before it listened: %v", r.instance, err)
	case <-time.After(daemonWait):
		r.t.Fatalf("%s does not listen after %s", r.instance, daemonWait)
	}
}

func (r *replicaProc) running() bool {
	if r.cmd == nil {
		return false
	}
	select {
	case err := <-r.exited:
		r.exited <- err
		return false
	default:
		return true
	}
}

// waitReady waits until the incarnation's /readyz answers 200.
func (r *replicaProc) waitReady() {
	r.t.Helper()
	testenv.WaitFor(r.t, 60*time.Second, r.instance+" ready", func() bool {
		resp, err := http.Get(r.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// kill ends the incarnation with SIGKILL: a crash.
func (r *replicaProc) kill() {
	r.t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		r.t.Fatal(err)
	}
	<-r.exited
	r.exited <- nil
}

// stop ends the incarnation with SIGTERM, as a rollout does, and wants it
// to exit 0 within its shutdown timeout and some.
func (r *replicaProc) stop() {
	r.t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatal(err)
	}
	select {
	case err := <-r.exited:
		r.exited <- err
		if err != nil {
			r.t.Fatalf("%s exited on SIGTERM with %v", r.instance, err)
		}
	case <-time.After(40 * time.Second):
		r.t.Fatalf("%s did not exit within 40s of SIGTERM", r.instance)
	}
}

// metric reads one series of the running incarnation; false if it cannot.
func (r *replicaProc) metric(series string) (float64, bool) {
	v, err := scrapeSeries(r.url+"/metrics", series)
	return v, err == nil
}

// jobTimes returns when the replica's scheduler started the job, and when it
// counted a run skipped, over every incarnation.
func (r *replicaProc) jobTimes() (ran, skipped []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.jobs...), append([]time.Time(nil), r.skipped...)
}

// lostTicks returns the ticks the replica counted leader_lost, over every
// incarnation.
func (r *replicaProc) lostTicks() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.lost...)
}

// waitGroup waits until the running replicas rs form one group of len(rs)
// with one leader, and returns it.
func waitGroup(t *testing.T, rs []*replicaProc) *replicaProc {
	t.Helper()
	var leader *replicaProc
	testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("a group of %d with one leader", len(rs)), func() bool {
		leader = nil
		for _, r := range rs {
			if n, ok := r.metric("slo_canary_coordination_members"); !ok || int(n) != len(rs) {
				return false
			}
			if l, _ := r.metric("slo_canary_coordination_leader"); l == 1 {
				if leader != nil {
					return false
				}
				leader = r
			}
		}
		return leader != nil
	})
	return leader
}

// noFalseLosses waits until every replica has resolved the markers it
// recovered (no more than a few pending, those of the last seconds), then
// wants none lost or late.
func noFalseLosses(t *testing.T, rs []*replicaProc) {
	t.Helper()
	for _, r := range rs {
		testenv.WaitFor(t, 90*time.Second, r.instance+"'s pending markers resolved", func() bool {
			n, ok := r.metric(markersPending)
			return ok && n <= 3
		})
		for _, series := range []string{markersLost, markersLate} {
			if n, ok := r.metric(series); !ok || n != 0 {
				t.Errorf("%s: %s = %v (present %v), want 0", r.instance, series, n, ok)
			}
		}
		if n, _ := r.metric(markersObserved); n == 0 {
			t.Errorf("%s: none of its markers observed", r.instance)
		}
	}
}

// tickOf is the scheduled time a job start belongs to, in Unix seconds:
// schedules among replicas are aligned to the multiples of their period
// (internal/sched).
func tickOf(at time.Time) int64 { return at.Truncate(replicaTick).Unix() }

// TestReplicaProcessesFailover: three replicas as processes against one
// testbed, a burst due every 10 s. Each replica's markers are observed; one
// leads; every tick runs exactly once across the three. The leader is
// killed with SIGKILL: another leads within the session timeout and some,
// the ticks go on exactly once (those due while the dead leader still held
// the lead run nowhere, and the new leader counts each once as leader_lost,
// docs/replicas.md), and the killed replica, started
// again under its instance, reads its markers in flight back from the
// ingest topic: none is lost.
func TestReplicaProcessesFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("about 2 minutes of replica processes")
	}
	bin := buildCanary(t)
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 3, PostgresDSN: dsn})
	var rs []*replicaProc
	for i := range 3 {
		instance := fmt.Sprintf("canary-%d", i)
		cfg := replicaConfig(t, p, dsn, instance, func(c *config.Config) {
			c.Bursts.Enabled = true
			c.Bursts.ReportDir = t.TempDir()
			c.Bursts.Profiles = map[string]config.BurstProfile{"tick": {Schedule: "@every 10s", Steps: []string{"500/s for 1s"}}}
			c.Bursts.Budgets.RateTolerance = 0.1 // see TestGate
		})
		rs = append(rs, newReplica(t, bin, instance, cfg))
	}
	for _, r := range rs {
		r.start()
	}
	leader := waitGroup(t, rs)
	formed := time.Now()

	// Steady: each tick once, on the leader.
	jobsSince := func(since time.Time) (n int, first time.Time, on *replicaProc) {
		for _, r := range rs {
			ran, _ := r.jobTimes()
			for _, at := range ran {
				if at.After(since) {
					n++
					if first.IsZero() || at.Before(first) {
						first, on = at, r
					}
				}
			}
		}
		return n, first, on
	}
	testenv.WaitFor(t, 90*time.Second, "5 ticks of the group of three", func() bool {
		n, _, _ := jobsSince(formed)
		return n >= 5
	})
	for _, r := range rs {
		if r == leader {
			continue
		}
		if n, _ := r.metric(`slo_canary_scheduled_skipped_total{reason="not_leader",task="burst_tick"}`); n < 4 {
			t.Errorf("%s left %v ticks to the leader, want at least 4", r.instance, n)
		}
		ran, _ := r.jobTimes()
		if len(ran) > 0 && ran[len(ran)-1].After(formed) {
			t.Errorf("%s, not the leader, ran the job at %s", r.instance, ran[len(ran)-1].Format(time.TimeOnly))
		}
	}
	// The metrics count the runs the logs show, finished or going.
	testenv.WaitFor(t, 30*time.Second, "the replicas' run counters to match their logs", func() bool {
		for _, r := range rs {
			var n float64
			for _, series := range []string{
				`slo_canary_scheduled_runs_total{result="success",task="burst_tick"}`,
				`slo_canary_scheduled_runs_total{result="failure",task="burst_tick"}`,
				`slo_canary_scheduled_runs_total{result="panic",task="burst_tick"}`,
				`slo_canary_scheduled_job_running{task="burst_tick"}`,
			} {
				v, _ := r.metric(series)
				n += v
			}
			ran, _ := r.jobTimes()
			if int(n) != len(ran) {
				return false
			}
		}
		return true
	})
	noFalseLosses(t, rs)

	// Kill the leader with a marker in flight, if one comes within 10 s,
	// 8 s into a tick's period: its last heartbeat was at most a third of
	// the session timeout (2 s) before, so the group notices 4 s after the
	// kill at the earliest, and the next tick is left to the dead leader
	// (the new leader must count it leader_lost).
	look := time.Now()
	testenv.WaitFor(t, 40*time.Second, "a marker in flight on the leader, or 10 s, 8 s into a tick's period", func() bool {
		if phase := time.Since(time.Now().Truncate(replicaTick)); phase < 8*time.Second || phase > 8*time.Second+700*time.Millisecond {
			return false
		}
		n, _ := leader.metric(markersPending)
		return n >= 1 || time.Since(look) > 10*time.Second
	})
	sentBefore, _ := leader.metric("slo_canary_markers_sent_total")
	killed := time.Now()
	leader.kill()
	var others []*replicaProc
	for _, r := range rs {
		if r != leader {
			others = append(others, r)
		}
	}
	next := waitGroup(t, others)
	failover := time.Since(killed)
	t.Logf("leadership moved from %s to %s %s after the SIGKILL (session timeout %s)", leader.instance, next.instance, failover.Round(time.Millisecond), replicaSession)
	if limit := replicaSession + 2*(replicaSession/3) + 3*time.Second; failover > limit {
		t.Errorf("failover took %s, want within the session timeout and a rebalance (%s)", failover, limit)
	}
	var firstJob time.Time
	testenv.WaitFor(t, 30*time.Second, "the new leader's first scheduled job", func() bool {
		n, first, on := jobsSince(killed)
		if n > 0 && on != next {
			t.Fatalf("the first job after the kill ran on %s, not the new leader %s", on.instance, next.instance)
		}
		firstJob = first
		return n > 0
	})
	t.Logf("failover time, leader SIGKILLed to the next leader's first scheduled job: %s (ticks every %s)", firstJob.Sub(killed).Round(time.Millisecond), replicaTick)

	// The killed replica comes back under its instance: it recovers its
	// markers, and a replica joining does not move the lead.
	leader.start()
	leader.waitReady()
	if again := waitGroup(t, rs); again != next {
		t.Errorf("leadership moved to %s when %s joined again", again.instance, leader.instance)
	}
	back := time.Now()
	if n, _ := leader.metric(`slo_canary_markers_recovered_total{source="ingest_topic"}`); n < sentBefore {
		t.Errorf("%s recovered %v markers from the ingest topic, want at least the %v it had sent before the kill", leader.instance, n, sentBefore)
	}
	testenv.WaitFor(t, 60*time.Second, "3 ticks after the killed replica came back", func() bool {
		n, _, _ := jobsSince(back)
		return n >= 3
	})
	noFalseLosses(t, rs)

	deadFrom, deadTo := killed.Unix(), killed.Add(failover).Unix()
	// Every tick since the group formed: at most once; exactly once but
	// when nobody led (counted skipped, no_leader), or while a dead leader
	// still held the lead (counted leader_lost by the new leader, once
	// across the group).
	runs, skipped, lost := map[int64]int{}, map[int64]bool{}, map[int64]int{}
	lostMetric := 0.0
	for _, r := range rs {
		ran, skip := r.jobTimes()
		for _, at := range ran {
			runs[tickOf(at)]++
		}
		for _, at := range skip {
			skipped[tickOf(at)] = true
		}
		for _, at := range r.lostTicks() {
			lost[at.Unix()]++
		}
		// The killed leader, started again, counted none: each
		// incarnation's counter holds what its log says.
		n, _ := r.metric(`slo_canary_scheduled_skipped_total{reason="leader_lost",task="burst_tick"}`)
		lostMetric += n
	}
	lostTotal := 0
	for tick, n := range lost {
		lostTotal += n
		if tick <= deadFrom-1 || tick > deadTo {
			t.Errorf("tick %s counted leader_lost, not within the dead leader's hold (%s to %s)", time.Unix(tick, 0).UTC().Format(time.TimeOnly),
				killed.UTC().Format(time.TimeOnly), killed.Add(failover).UTC().Format(time.TimeOnly))
		}
	}
	if lostTotal == 0 {
		t.Errorf("no tick counted leader_lost: the tick after the kill was left to the dead leader")
	}
	if lostMetric != float64(lostTotal) {
		t.Errorf("the replicas count %v ticks leader_lost, their logs %d", lostMetric, lostTotal)
	}
	last := tickOf(time.Now().Add(-2 * time.Second))
	step := int64(replicaTick / time.Second)
	for tick := tickOf(formed) + step; tick <= last; tick += step {
		at := time.Unix(tick, 0).UTC().Format(time.TimeOnly)
		switch n := runs[tick]; {
		case n > 1:
			t.Errorf("tick %s ran %d times", at, n)
		case n+lost[tick] > 1:
			t.Errorf("tick %s ran %d times and was counted leader_lost %d times", at, n, lost[tick])
		case lost[tick] == 1 && skipped[tick]:
			t.Errorf("tick %s counted leader_lost by the new leader and skipped (no_leader) by another replica", at)
		case lost[tick] == 1:
			t.Logf("tick %s ran nowhere: the killed leader still held the lead; the new leader counted it leader_lost", at)
		case n == 0 && skipped[tick]:
			t.Logf("tick %s ran nowhere: counted skipped (a rebalance, or the last run still going)", at)
		case n == 0:
			t.Errorf("tick %s ran nowhere and nobody counted it skipped", at)
		}
	}
	total := 0
	for tick, n := range runs {
		if tick > tickOf(formed) && tick <= last {
			total += n
		}
	}
	t.Logf("%d ticks checked, %d runs", (last-tickOf(formed))/step, total)
}

// TestReplicaProcessesRollingRestart: three replicas as processes, restarted
// one at a time as a rolling update does (SIGTERM, exit, start under the
// same instance, ready, the next). The freshness SLI gets events throughout:
// no gap longer than one marker interval plus one replica's restart; each
// restarted replica reads its markers back from the ingest topic, and none
// is falsely lost.
func TestReplicaProcessesRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("about a minute of replica processes")
	}
	bin := buildCanary(t)
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 3, PostgresDSN: dsn})
	var rs []*replicaProc
	for i := range 3 {
		instance := fmt.Sprintf("canary-%d", i)
		rs = append(rs, newReplica(t, bin, instance, replicaConfig(t, p, dsn, instance, nil)))
	}
	for _, r := range rs {
		r.start()
	}
	waitGroup(t, rs)
	for _, r := range rs {
		r.waitReady()
	}
	markerInterval := time.Second // canary.rate 1/s

	// The sampler reads the SLI's events of every replica up: the gap is the
	// longest time in which none of them counted one more.
	var (
		mu      sync.Mutex
		up      = map[*replicaProc]string{} // replica -> its incarnation's URL
		prev    = map[string]float64{}
		lastInc = time.Now()
		maxGap  time.Duration
	)
	setUp := func(r *replicaProc, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if on {
			up[r] = r.url
		} else {
			delete(up, r)
		}
	}
	for _, r := range rs {
		setUp(r, true)
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			mu.Lock()
			urls := make([]string, 0, len(up))
			for _, u := range up {
				urls = append(urls, u)
			}
			mu.Unlock()
			now, more := time.Now(), false
			for _, u := range urls {
				v, err := scrapeSeries(u+"/metrics", `slo_canary_freshness_sli_total{stage="database"}`)
				if err != nil {
					continue // stopping, or not serving yet
				}
				mu.Lock()
				if p, seen := prev[u]; !seen || v > p {
					more = more || seen
					prev[u] = v
				}
				mu.Unlock()
			}
			if more {
				mu.Lock()
				maxGap = max(maxGap, now.Sub(lastInc))
				lastInc = now
				mu.Unlock()
			}
		}
	}()
	defer func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-stopped
	}()

	var slowest time.Duration
	for _, r := range rs {
		begin := time.Now()
		setUp(r, false)
		r.stop()
		r.start()
		r.waitReady()
		setUp(r, true)
		took := time.Since(begin)
		slowest = max(slowest, took)
		if n, _ := r.metric(`slo_canary_markers_recovered_total{source="ingest_topic"}`); n == 0 {
			t.Errorf("%s read none of its markers back from the ingest topic after its restart", r.instance)
		}
		t.Logf("%s restarted in %s", r.instance, took.Round(time.Millisecond))
	}
	waitGroup(t, rs)
	noFalseLosses(t, rs)
	close(done)
	<-stopped
	mu.Lock()
	gap := max(maxGap, time.Since(lastInc))
	mu.Unlock()
	t.Logf("longest gap in the freshness SLI's events during the rolling restart: %s (marker interval %s, slowest restart %s)",
		gap.Round(time.Millisecond), markerInterval, slowest.Round(time.Millisecond))
	if gap > markerInterval+slowest {
		t.Errorf("the freshness SLI got no event for %s, longer than a marker interval and a restart (%s)", gap, markerInterval+slowest)
	}
}
