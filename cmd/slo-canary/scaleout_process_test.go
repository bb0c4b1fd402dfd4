package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/internal/testenv"
)

// The scale-out process test's burst: 30,000 events/s for 30 s over six
// partitions, two to each of three members (10,000/s each).
const (
	soRate       = 30000
	soDuration   = 30 * time.Second
	soPartitions = 6
	soMembers    = 3
)

// soProc is a child process whose output goes to a file, killed at the end
// of the test; its output's tail is logged if the test failed.
type soProc struct {
	name   string
	cmd    *exec.Cmd
	out    string // the file of its stdout and stderr
	exited chan struct{}
	err    error // once exited is closed
}

func soStart(t *testing.T, name, bin string, args ...string) *soProc {
	t.Helper()
	p := &soProc{name: name, out: filepath.Join(t.TempDir(), name+".log"), exited: make(chan struct{})}
	f, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s (%v), the end of its output:\n%s", name, p.err, p.tail(40))
		}
	})
	return p
}

// tail is the last n lines of the process's output.
func (p *soProc) tail(n int) string {
	data, _ := os.ReadFile(p.out)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// waitLine waits for a line of the process's output that match accepts and
// returns it; the process exiting first fails the test.
func (p *soProc) waitLine(t *testing.T, what string, match func(string) bool) string {
	t.Helper()
	var found string
	testenv.WaitFor(t, time.Minute, p.name+": "+what, func() bool {
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%v) before %s:\n%s", p.name, p.err, what, p.tail(40))
		default:
		}
		f, err := os.Open(p.out)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if match(sc.Text()) {
				found = sc.Text()
				return true
			}
		}
		return false
	})
	return found
}

// soReplica is one slo-canary run --config process of the group.
type soReplica struct {
	*soProc
	inst, url, reports string
}

func (r *soReplica) metric(t *testing.T, series string) float64 {
	t.Helper()
	v, _ := seriesValue(t, r.url+"/metrics", series)
	return v
}

// soConfig is a replica's config file: the testbed's Kafka, the capsule
// stage judged, coordination on, and one scaled-out burst profile due every
// 20 s (the scheduler skips a tick while a burst runs: one burst starts
// 20 s after the replicas, the next about 60 s after them).
func soConfig(t *testing.T, dir, brokers, inst string) string {
	t.Helper()
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
canary:
  topic: raw-telemetry
  encoding: avro
  instance: %q
  state_file: %q
  recovery:
    enabled: false
http:
  listen: 127.0.0.1:0
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
    deadline: 2m
    poll_interval: 100ms
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
  max_rate: 100000
  marker_share: 0.01
  budgets:
    rate_tolerance: 0.01
  profiles:
    wide:
      schedule: "@every 20s"
      steps: [%q]
`, brokers, inst, filepath.Join(dir, "state.gob"), filepath.Join(dir, "reports"),
		fmt.Sprintf("%d/s for %s", soRate, soDuration))
	path := filepath.Join(dir, "canary.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "reports"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// soReports reads every burst report the replicas wrote, by burst id, with
// the instance that wrote each.
func soReports(t *testing.T, rs []*soReplica) map[string][]soReport {
	t.Helper()
	out := map[string][]soReport{}
	for _, r := range rs {
		files, _ := filepath.Glob(filepath.Join(r.reports, "*.json"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var rep burst.Report
			if err := json.Unmarshal(data, &rep); err != nil {
				continue // still being written
			}
			out[rep.ID] = append(out[rep.ID], soReport{by: r.inst, Report: rep})
		}
	}
	return out
}

type soReport struct {
	by string
	burst.Report
}

// TestProcessScaleOutThreeMembers: three replicas, each its own process of
// the built binary, with bursts.scale_out, against a testbed in another
// process. A scheduled burst of 30,000 events/s for 30 s is shared by all
// three, two partitions each: the total achieved within 1% of the rate,
// each member's events on the topic within 5% of its share, every partition
// loaded by exactly one member (read back from the ingest topic), one report
// and one verdict (pass), on the leader only. The next burst: a member is
// SIGKILLed mid-burst; the leader aborts it with member_lost, and no verdict
// of pass is added.
func TestProcessScaleOutThreeMembers(t *testing.T) {
	bin := buildCanary(t)
	tb := soStart(t, "testbed", bin, "testbed", "--no-postgres", "--partitions", fmt.Sprint(soPartitions),
		"--log-level", "warn")
	line := tb.waitLine(t, "its Kafka address", func(l string) bool { return strings.HasPrefix(l, "kafka:") })
	brokers := strings.Fields(strings.TrimPrefix(line, "kafka:"))[0]

	var rs []*soReplica
	for _, inst := range []string{"so-a", "so-b", "so-c"} {
		dir := t.TempDir()
		p := soStart(t, inst, bin, "run", "--config", soConfig(t, dir, brokers, inst))
		r := &soReplica{soProc: p, inst: inst, reports: filepath.Join(dir, "reports")}
		l := p.waitLine(t, "the started line", func(l string) bool { return strings.Contains(l, `"msg":"slo-canary started"`) })
		var started struct{ Listen string }
		if err := json.Unmarshal([]byte(l), &started); err != nil {
			t.Fatal(err)
		}
		r.url = "http://" + started.Listen
		rs = append(rs, r)
	}
	var leader *soReplica
	testenv.WaitFor(t, time.Minute, "a group of three with one leader", func() bool {
		leader = nil
		for _, r := range rs {
			if r.metric(t, "slo_canary_coordination_members") != soMembers {
				return false
			}
			if r.metric(t, "slo_canary_coordination_leader") == 1 {
				if leader != nil {
					return false
				}
				leader = r
			}
		}
		return leader != nil
	})
	t.Logf("leader: %s", leader.inst)

	// The first burst shared by all three. (A tick before the group formed
	// would have run with fewer members: such a report is passed over.)
	var first soReport
	testenv.WaitFor(t, 2*time.Minute, "the report of a burst shared by three members", func() bool {
		for _, reps := range soReports(t, rs) {
			for _, rep := range reps {
				if len(rep.Assignment) == soMembers {
					first = rep
					return true
				}
			}
		}
		return false
	})
	adm := kadm.NewClient(testenv.KafkaClient(t, []string{brokers}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, "raw-telemetry")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("burst %s: %s, %d events acknowledged, %.1f/s, markers %d sent %d seen, lag p95 %.2fs, assignment %v",
		first.ID, first.Verdict, first.Events.Acked, first.AchievedRate, first.Markers.Acked, first.Markers.Seen, first.Lag.P95, first.Assignment)

	// One report, by the leader, one verdict: pass.
	if reps := soReports(t, rs)[first.ID]; len(reps) != 1 || reps[0].by != leader.inst {
		t.Errorf("burst %s: %d reports (the first by %s), want one, by the leader %s", first.ID, len(reps), first.by, leader.inst)
	}
	if first.Verdict != burst.VerdictPass {
		t.Errorf("verdict %s: %v", first.Verdict, first.Reasons)
	}
	planned := int64(soRate * soDuration.Seconds())
	if first.Events.Planned != planned || first.Events.Acked != planned {
		t.Errorf("events %+v, want %d planned and acknowledged", first.Events, planned)
	}
	if dev := math.Abs(first.AchievedRate-soRate) / soRate; dev > 0.01 {
		t.Errorf("achieved %.1f/s in all, %.2f%% off %d/s, want within 1%%", first.AchievedRate, 100*dev, soRate)
	}
	var passes float64
	for _, r := range rs {
		v := r.metric(t, `slo_canary_bursts_total{profile="wide",verdict="pass"}`)
		if r != leader && v != 0 {
			t.Errorf("%s, not the leader, exports %v bursts passed", r.inst, v)
		}
		passes += v
	}
	if passes != 1 {
		t.Errorf("bursts passed across the replicas: %v, want 1", passes)
	}

	// The partitions: each to exactly one member, two each, all six.
	var all []int32
	for _, ps := range first.Assignment {
		if len(ps) != soPartitions/soMembers {
			t.Errorf("assignment %v: want %d partitions each", first.Assignment, soPartitions/soMembers)
		}
		all = append(all, ps...)
	}
	if slices.Sort(all); !slices.Equal(all, []int32{0, 1, 2, 3, 4, 5}) {
		t.Errorf("assignment %v does not cover partitions 0-5 exactly once", first.Assignment)
	}
	// The members' own results on the coordination topic: each share's rate.
	elapsed := 0.0
	for _, s := range first.Steps {
		elapsed += s.Elapsed
	}
	share := float64(soRate) / soMembers
	results := soResults(t, brokers, first.ID)
	for _, r := range rs {
		if r == leader {
			continue
		}
		p := results[r.inst]
		if p == nil {
			t.Errorf("no result from %s on the coordination topic", r.inst)
			continue
		}
		if !slices.Equal(p.Partitions, first.Assignment[r.inst]) {
			t.Errorf("%s ran partitions %v, assigned %v", r.inst, p.Partitions, first.Assignment[r.inst])
		}
		if dev := math.Abs(p.Report.AchievedRate-share) / share; dev > 0.05 {
			t.Errorf("%s reports %.1f/s, %.2f%% off its share %.0f/s", r.inst, p.Report.AchievedRate, 100*dev, share)
		}
	}

	// The second burst: kill a member with partitions mid-burst.
	var victim *soReplica
	for _, r := range rs {
		if r != leader {
			victim = r
			break
		}
	}
	mine := first.Assignment[victim.inst]
	before := int64(0)
	for _, p := range mine {
		o, _ := ends.Lookup("raw-telemetry", p)
		before += o.Offset
	}
	testenv.WaitFor(t, 2*time.Minute, victim.inst+" running its share of the next burst, 5 s of it on its partitions", func() bool {
		if victim.metric(t, "slo_canary_burst_running") != 1 {
			return false
		}
		now, err := adm.ListEndOffsets(ctx, "raw-telemetry")
		if err != nil {
			return false
		}
		n := int64(0)
		for _, p := range mine {
			o, _ := now.Lookup("raw-telemetry", p)
			n += o.Offset
		}
		return n-before >= int64(5*share)
	})
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-victim.exited
	var second soReport
	testenv.WaitFor(t, 2*time.Minute, "the report of the burst that lost a member", func() bool {
		for id, reps := range soReports(t, rs) {
			if id != first.ID && reps[0].Started.After(first.Started) {
				second = reps[0]
				return true
			}
		}
		return false
	})
	t.Logf("burst %s: %s after %s, reasons %v", second.ID, second.Verdict, time.Since(killed).Round(time.Second), second.Reasons)
	if second.Verdict != burst.VerdictAborted || second.Abort == nil || second.Abort.Reason != burst.ReasonMemberLost {
		t.Errorf("burst %s: verdict %s, abort %+v; want aborted by %s", second.ID, second.Verdict, second.Abort, burst.ReasonMemberLost)
	} else if !strings.Contains(second.Abort.Detail, victim.inst) {
		t.Errorf("abort %q does not name %s", second.Abort.Detail, victim.inst)
	}
	if second.by != leader.inst {
		t.Errorf("the report of burst %s was written by %s, not the leader %s", second.ID, second.by, leader.inst)
	}
	if n := leader.metric(t, `slo_canary_burst_aborts_total{reason="member_lost"}`); n != 1 {
		t.Errorf("leader: burst_aborts_total{member_lost} = %v, want 1", n)
	}
	if n := leader.metric(t, `slo_canary_bursts_total{profile="wide",verdict="pass"}`); n != 1 {
		t.Errorf("leader: bursts_total{pass} = %v, want still 1", n)
	}
	testenv.WaitFor(t, 30*time.Second, "every share stopped after the abort", func() bool {
		for _, r := range rs {
			if r != victim && r.metric(t, "slo_canary_burst_running") != 0 {
				return false
			}
		}
		return true
	})

	// What reached the topic in the first burst, read back: each partition
	// from one member only, its own, and each member's events within 5% of
	// its share over the burst's time.
	scan := time.Now()
	got := soBurstEvents(t, brokers, ends, first.ID, []string{"so-a", "so-b", "so-c"})
	t.Logf("the ingest topic read back in %s", time.Since(scan).Round(100*time.Millisecond))
	byInstance := map[string]int64{}
	for part, senders := range got {
		if len(senders) != 1 {
			t.Errorf("partition %d got load from %v, want one member", part, senders)
		}
		for inst, n := range senders {
			if !slices.Contains(first.Assignment[inst], part) {
				t.Errorf("%s produced to partition %d, not its own", inst, part)
			}
			byInstance[inst] += n
		}
	}
	if len(got) != soPartitions {
		t.Errorf("load on %d partitions (%v), want %d", len(got), slices.Sorted(maps.Keys(got)), soPartitions)
	}
	var sum int64
	for _, r := range rs {
		n := byInstance[r.inst]
		sum += n
		rate := float64(n) / elapsed
		t.Logf("%s: %d events on partitions %v, %.1f/s over the burst's %.2f s", r.inst, n, first.Assignment[r.inst], rate, elapsed)
		if dev := math.Abs(rate-share) / share; dev > 0.05 {
			t.Errorf("%s: %.1f/s, %.2f%% off its share %.0f/s", r.inst, rate, 100*dev, share)
		}
	}
	if sum != planned {
		t.Errorf("%d events of burst %s on the topic, want %d", sum, first.ID, planned)
	}
}

// soResults reads the members' results of burst id from the coordination
// topic, by instance.
func soResults(t *testing.T, brokers, id string) map[string]*burst.Partial {
	t.Helper()
	out := map[string]*burst.Partial{}
	for _, rec := range soReadAll(t, brokers, "slo-canary-coordination", nil, nil) {
		var m burst.Message
		if json.Unmarshal(rec.Value, &m) == nil && m.Type == burst.MsgResult && m.Burst == id && m.Result != nil {
			out[m.From] = m.Result
		}
	}
	return out
}

// soBurstEvents counts the ingest topic's records of burst run, up to ends,
// by partition and the instance that sent them, from the start of the
// topic. Decoding 900,000 Avro records under -race takes half a minute, so
// it matches the attribute entries' bytes instead (an Avro map entry is its
// key's encoding then its value's) and checks that against a decode of
// every 500th record.
func soBurstEvents(t *testing.T, brokers string, ends kadm.ListedOffsets, run string, insts []string) map[int32]map[string]int64 {
	t.Helper()
	runEntry := soAvroEntry(canary.AttrRun, run)
	instEntries := map[string][]byte{}
	for _, inst := range insts {
		instEntries[inst] = soAvroEntry(canary.AttrInstance, inst)
	}
	out := map[int32]map[string]int64{}
	soReadAll(t, brokers, "raw-telemetry", ends, func(rec *kgo.Record) {
		ours := bytes.Contains(rec.Value, runEntry)
		from := "(another)"
		for inst, e := range instEntries {
			if bytes.Contains(rec.Value, e) {
				from = inst
			}
		}
		if rec.Offset%500 == 0 {
			ev, err := canary.Decode(canary.EncodingAvro, rec.Value)
			if err != nil {
				t.Fatalf("partition %d offset %d: %v", rec.Partition, rec.Offset, err)
			}
			if dec := ev.Attributes[canary.AttrRun] == run; dec != ours || (ours && ev.Attributes[canary.AttrInstance] != from) {
				t.Fatalf("partition %d offset %d: decoded run %q instance %q; matched %v, %s", rec.Partition, rec.Offset,
					ev.Attributes[canary.AttrRun], ev.Attributes[canary.AttrInstance], ours, from)
			}
		}
		if !ours {
			return
		}
		if out[rec.Partition] == nil {
			out[rec.Partition] = map[string]int64{}
		}
		out[rec.Partition][from]++
	})
	return out
}

// soAvroEntry is the Avro encoding of a map<string,string> entry.
func soAvroEntry(k, v string) []byte {
	var b []byte
	for _, s := range []string{k, v} {
		b = binary.AppendVarint(b, int64(len(s))) // zig-zag, as Avro's long
		b = append(b, s...)
	}
	return b
}

// soReadAll reads topic from its start to ends (nil: its end offsets as of
// now): each record to each if set, else kept and returned.
func soReadAll(t *testing.T, brokers, topic string, ends kadm.ListedOffsets, each func(*kgo.Record)) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if ends == nil {
		var err error
		adm := kadm.NewClient(testenv.KafkaClient(t, []string{brokers}))
		if ends, err = adm.ListEndOffsets(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl := testenv.KafkaClient(t, []string{brokers}, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20))
	var kept []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s not read to its end: %v left", topic, left)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			end, ok := left[rec.Partition]
			if !ok || rec.Offset >= end {
				return
			}
			if rec.Offset+1 >= end {
				delete(left, rec.Partition)
			}
			if each != nil {
				each(rec)
			} else {
				kept = append(kept, rec)
			}
		})
	}
	return kept
}
