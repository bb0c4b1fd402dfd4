// Command scaleout measures what a scaled-out burst costs each member: for 1,
// 2 and 3 replicas (slo-canary run, each its own process, coordination on,
// bursts.scale_out) it runs one scheduled burst at the same total rate
// against a fresh testbed process (kfake and the reference stream stage, no
// database), and prints per member the events it sent, its achieved rate,
// the CPU it used while the burst ran and the CPU per event, and the totals.
//
//	go run ./internal/bench/scaleout -bin ./slo-canary   (or scripts/bench-scaleout.sh)
//
// CPU is user+system time from /proc/<pid>/stat, sampled every 100 ms, from
// the burst's announced start to the moment its report is written (the load
// and the wait for the markers). The same member's idle CPU rate, measured
// over the seconds between the group forming and the burst, is subtracted:
// "net" is what the burst cost. Linux only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary/burst"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scaleout:", err)
		os.Exit(1)
	}
}

var (
	bin        = flag.String("bin", "./slo-canary", "the slo-canary binary (built without -race)")
	rate       = flag.Int("rate", 60000, "the burst's total rate, events/s")
	duration   = flag.Duration("duration", 20*time.Second, "the burst's duration")
	members    = flag.String("members", "1,2,3", "group sizes to measure, in order")
	partitions = flag.Int("partitions", 6, "partitions of the ingest topic (a multiple of every group size keeps the shares equal)")
	share      = flag.Float64("marker-share", 0.002, "bursts.marker_share")
	keep       = flag.String("keep", "", "keep each run's configs, logs and reports in this directory")
	observe    = flag.Bool("observe", true, "run the stream stage at full speed, so every member reads every capsule looking for its markers; false: the stream stage at 1 event/s (testbed --capacity 1/s) and a 5 s marker deadline, so a member's CPU is its producer's and the coordination's alone (its markers are lost: the verdict fails)")
	profile    = flag.Bool("profile", false, "take a 10 s CPU profile of every member 3 s into its share (kept with -keep, as <instance>.pprof)")
)

const tick = 20 * time.Second // the burst schedule: the first burst 20 s after the replicas start

func run() error {
	flag.Parse()
	work, err := os.MkdirTemp("", "bench-scaleout-")
	if err != nil {
		return err
	}
	defer func() {
		if *keep != "" {
			os.MkdirAll(*keep, 0o755)
			exec.Command("cp", "-r", work+"/.", *keep).Run()
		}
		os.RemoveAll(work)
	}()
	stage := "the stream stage at full speed: every member reads every capsule"
	if !*observe {
		stage = "the stream stage held at 1 event/s: nothing to read, markers lost after 5 s"
	}
	fmt.Printf("burst: %d events/s for %s in all, %d partitions, marker share %g; %s; slo-canary %s (no -race)\n",
		*rate, *duration, *partitions, *share, stage, *bin)
	fmt.Printf("| members | member | partitions | events | achieved/s | of its share | CPU s (burst) | idle CPU s | net CPU s | CPU µs/event (net) |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range strings.Split(*members, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-members: %q", s)
		}
		dir := filepath.Join(work, fmt.Sprintf("members-%d", n))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := measure(dir, n); err != nil {
			return fmt.Errorf("%d members: %w", n, err)
		}
	}
	return nil
}

// proc is a child process, its output in a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  string
	done chan struct{}
}

func start(dir, name string, args ...string) (*proc, error) {
	p := &proc{name: name, out: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p.cmd = exec.Command(*bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop ends the process: SIGTERM, SIGKILL after 15 s.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// line waits up to a minute for a line of the output that match accepts.
func (p *proc) line(match func(string) bool) (string, error) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return "", fmt.Errorf("%s exited: see %s", p.name, p.out)
		default:
		}
		if data, err := os.ReadFile(p.out); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				if match(sc.Text()) {
					return sc.Text(), nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("%s: no such line in a minute", p.name)
}

// cpu is the process's user+system time so far.
func (p *proc) cpu() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (in parentheses, maybe with spaces).
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

type sample struct {
	at  time.Time
	cpu []time.Duration
}

type replica struct {
	*proc
	inst, url, reports string
}

func metric(url, series string) (float64, bool) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func config(dir, brokers, inst string) (string, error) {
	deadline, budget := "2m", "1m"
	if !*observe {
		deadline, budget = "5s", "5s"
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
canary:
  topic: raw-telemetry
  encoding: avro
  instance: %q
  state_file: %q
  freshness_budget: %s
  recovery:
    enabled: false
http:
  listen: 127.0.0.1:0
  pprof: %t
log:
  format: json
  level: info
consumer_lag:
  groups: [capsule-ingest-consumer]
observers:
  database:
    enabled: false
  capsules:
    enabled: true
    type: kafka
    deadline: %s
    kafka:
      topic: capsule-events
      extract: json
      field: sample_event_ids
queries:
  enabled: false
coordination:
  enabled: true
  session_timeout: 6s
bursts:
  enabled: true
  stage: capsules
  scale_out: true
  report_dir: %q
  max_rate: 10000000
  max_events: 100000000
  marker_share: %g
  profiles:
    bench:
      schedule: "@every %s"
      steps: ["%d/s for %s"]
`, brokers, inst, filepath.Join(dir, inst+".state"), budget, *profile, deadline, filepath.Join(dir, inst+"-reports"), *share, tick, *rate, *duration)
	path := filepath.Join(dir, inst+".yaml")
	if err := os.MkdirAll(filepath.Join(dir, inst+"-reports"), 0o755); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

func measure(dir string, n int) error {
	args := []string{"testbed", "--no-postgres", "--partitions", strconv.Itoa(*partitions), "--log-level", "warn"}
	if !*observe {
		args = append(args, "--capacity", "1/s")
	}
	tb, err := start(dir, "testbed", args...)
	if err != nil {
		return err
	}
	defer tb.stop()
	l, err := tb.line(func(l string) bool { return strings.HasPrefix(l, "kafka:") })
	if err != nil {
		return err
	}
	brokers := strings.Fields(strings.TrimPrefix(l, "kafka:"))[0]

	var rs []*replica
	defer func() {
		for _, r := range rs {
			r.stop() // before the testbed: a replica leaves its group through the broker
		}
	}()
	for i := range n {
		inst := fmt.Sprintf("bench-%d", i)
		path, err := config(dir, brokers, inst)
		if err != nil {
			return err
		}
		p, err := start(dir, inst, "run", "--config", path)
		if err != nil {
			return err
		}
		r := &replica{proc: p, inst: inst, reports: filepath.Join(dir, inst+"-reports")}
		rs = append(rs, r)
		l, err := p.line(func(l string) bool { return strings.Contains(l, `"msg":"slo-canary started"`) })
		if err != nil {
			return err
		}
		var started struct{ Listen string }
		if err := json.Unmarshal([]byte(l), &started); err != nil {
			return err
		}
		r.url = "http://" + started.Listen
	}
	formed := time.Now().Add(time.Minute)
	for !grouped(rs) {
		if time.Now().After(formed) {
			return errors.New("no group of all the replicas within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// CPU of every replica and the testbed, every 100 ms, until the report.
	var mu sync.Mutex
	var samples []sample
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			s := sample{at: time.Now()}
			for _, r := range rs {
				s.cpu = append(s.cpu, r.cpu())
			}
			s.cpu = append(s.cpu, tb.cpu())
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	if *profile {
		for _, r := range rs {
			wg.Add(1)
			go func() { defer wg.Done(); takeProfile(ctx, dir, r) }()
		}
	}
	idleFrom := time.Now()
	var rep *burst.Report
	deadline := time.Now().Add(2*tick + *duration + 2*time.Minute)
	for rep == nil {
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			return errors.New("no report of a burst shared by every replica")
		}
		time.Sleep(100 * time.Millisecond)
		rep = report(rs, n)
	}
	reported := time.Now()
	cancel()
	wg.Wait()

	// The burst's window: its announced start (a second after the leader
	// announced it) to the report; idle: from the group forming to a second
	// before the announcement.
	burstFrom := rep.Started
	at := func(t time.Time) sample {
		i, _ := slices.BinarySearchFunc(samples, t, func(s sample, t time.Time) int { return s.at.Compare(t) })
		return samples[min(i, len(samples)-1)]
	}
	s0, s1 := at(burstFrom), at(reported)
	i0, i1 := at(idleFrom), at(burstFrom.Add(-2*time.Second))
	window := s1.at.Sub(s0.at).Seconds()
	idleWin := i1.at.Sub(i0.at).Seconds()

	// Each member's events and achieved rate: the members' results on the
	// coordination topic, the leader's from its own metric over the
	// burst's steps.
	results, err := memberResults(brokers, rep.ID)
	if err != nil {
		return err
	}
	elapsed := 0.0
	for _, s := range rep.Steps {
		elapsed += s.Elapsed
	}
	var totEvents int64
	var totCPU, totNet float64
	for i, r := range rs {
		parts := rep.Assignment[r.inst]
		if n == 1 {
			parts = allParts()
		}
		var events int64
		var achieved float64
		if p := results[r.inst]; p != nil {
			events, achieved = p.Report.Events.Acked, p.Report.AchievedRate
		} else {
			v, _ := metric(r.url, "slo_canary_burst_events_sent_total")
			events, achieved = int64(v), v/elapsed
			if n == 1 {
				achieved = rep.AchievedRate
			}
		}
		cpu := (s1.cpu[i] - s0.cpu[i]).Seconds()
		idle := (i1.cpu[i] - i0.cpu[i]).Seconds() / idleWin * window
		net := cpu - idle
		want := float64(*rate) * float64(len(parts)) / float64(*partitions)
		fmt.Printf("| %d | %s | %v | %d | %.0f | %.1f%% | %.2f | %.2f | %.2f | %.2f |\n",
			n, r.inst, parts, events, achieved, 100*achieved/want, cpu, idle, net, net/float64(events)*1e6)
		totEvents += events
		totCPU += cpu
		totNet += net
	}
	tbCPU := (s1.cpu[len(rs)] - s0.cpu[len(rs)]).Seconds()
	fmt.Printf("| %d | **all** (verdict %s, window %.1f s) | %d | %d | %.0f | %.1f%% | %.2f | | %.2f | %.2f |\n",
		n, rep.Verdict, window, *partitions, totEvents, rep.AchievedRate, 100*rep.AchievedRate/float64(*rate), totCPU, totNet, totNet/float64(totEvents)*1e6)
	fmt.Printf("| %d | testbed (broker, stream stage) | | | | | %.2f | | | |\n", n, tbCPU)
	return nil
}

func allParts() []int32 {
	out := make([]int32, *partitions)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}

func grouped(rs []*replica) bool {
	leaders := 0
	for _, r := range rs {
		if v, _ := metric(r.url, "slo_canary_coordination_members"); int(v) != len(rs) {
			return false
		}
		if v, _ := metric(r.url, "slo_canary_coordination_leader"); v == 1 {
			leaders++
		}
	}
	return leaders == 1
}

// report is the first burst report shared by n members (for one, any).
func report(rs []*replica, n int) *burst.Report {
	for _, r := range rs {
		files, _ := filepath.Glob(filepath.Join(r.reports, "*.json"))
		slices.Sort(files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			var rep burst.Report
			if json.Unmarshal(data, &rep) != nil {
				continue
			}
			if len(rep.Assignment) == n || (n == 1 && rep.Assignment == nil) {
				return &rep
			}
		}
	}
	return nil
}

// memberResults reads the members' results of burst id from the
// coordination topic, by instance.
func memberResults(brokers, id string) (map[string]*burst.Partial, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("slo-canary-coordination"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[string]*burst.Partial{}
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(rec *kgo.Record) {
			var m burst.Message
			if json.Unmarshal(rec.Value, &m) == nil && m.Type == burst.MsgResult && m.Burst == id && m.Result != nil {
				out[m.From] = m.Result
			}
		})
	}
	return out, nil
}

// takeProfile waits for r's share to run, then writes a 10 s CPU profile of
// it, 3 s in.
func takeProfile(ctx context.Context, dir string, r *replica) {
	for {
		if v, _ := metric(r.url, "slo_canary_burst_running"); v == 1 {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	time.Sleep(3 * time.Second)
	resp, err := http.Get(r.url + "/debug/pprof/profile?seconds=10")
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(dir, r.inst+".pprof"))
	if err != nil {
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}
