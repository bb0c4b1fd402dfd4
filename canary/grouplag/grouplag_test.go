package grouplag_test

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/grouplag"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestGroupLagMatchesPipeline: the reference pipeline commits what it has
// processed, then stalls; records produced afterwards are consumed but not
// committed. Watcher reports exactly those records per partition, their
// age from the timestamps they were produced with, end offsets equal to what
// kcat (librdkafka) lists and lag equal to kadm's own computation. A group
// that does not exist, and one that never committed, are reported as such.
func TestGroupLagMatchesPipeline(t *testing.T) {
	t.Parallel()
	kcat := testenv.Binary(t, "kcat")
	const group = "capsule-ingest-consumer"
	p, err := testbed.NewPipeline(context.Background(), testbed.PipelineConfig{Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done; p.Close() }()
	brokers := p.Brokers()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("raw-telemetry"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(counts [3]int, ts func(part int32, i int) time.Time) {
		t.Helper()
		var recs []*kgo.Record
		for part, n := range counts {
			for i := range n {
				m := canary.Marker{ID: uuid.New(), Instance: "lag-test", Run: "r", Partition: int32(part), Seq: uint64(i + 1), SentAt: time.Now()}
				ev := m.Event(canary.EventOptions{ServiceName: "svc", Environment: "prod", EventType: "log"})
				v, err := canary.Encode(canary.EncodingAvro, &ev)
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, &kgo.Record{Partition: int32(part), Value: v, Timestamp: ts(int32(part), i)})
			}
		}
		pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer pcancel()
		if err := cl.ProduceSync(pctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	before := [3]int{5, 7, 9}
	produce(before, func(int32, int) time.Time { return time.Now() })
	adm := kadm.NewClient(cl)
	testenv.WaitFor(t, 20*time.Second, "first records processed and committed", func() bool {
		offs, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			return false
		}
		for part, n := range before {
			if o, ok := offs.Lookup("raw-telemetry", int32(part)); !ok || o.At != int64(n) {
				return false
			}
		}
		return true
	})

	p.Stall()
	after := [3]int{11, 4, 0}
	first := map[int32]time.Time{}
	base := time.Now().Add(-90 * time.Second).Truncate(time.Millisecond)
	produce(after, func(part int32, i int) time.Time {
		ts := base.Add(time.Duration(part)*10*time.Second + time.Duration(i)*time.Second)
		if i == 0 {
			first[part] = ts
		}
		return ts
	})
	testenv.WaitFor(t, 20*time.Second, "stalled records consumed", func() bool { return p.Stats().Consumed == 36 })

	reg := prometheus.NewRegistry()
	gl, err := grouplag.New(grouplag.Config{
		KafkaOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Groups: []string{group, "no-such-group", "idle-group"},
		Interval: time.Second, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	// A group with a member and no commit.
	idle, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("idle-group"), kgo.ConsumeTopics("capsule-events"), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	pollCtx, pollCancel := context.WithCancel(context.Background())
	defer pollCancel()
	go func() {
		for pollCtx.Err() == nil {
			idle.PollFetches(pollCtx)
		}
	}()
	testenv.WaitFor(t, 20*time.Second, "idle-group joined", func() bool {
		d, err := adm.DescribeGroups(context.Background(), "idle-group")
		return err == nil && d["idle-group"].State == "Stable"
	})

	snap, err := gl.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	byName := map[string]grouplag.Group{}
	for _, g := range snap.Groups {
		byName[g.Group] = g
	}
	if g := byName["no-such-group"]; g.Status != grouplag.StatusNotFound || g.State != "Dead" {
		t.Errorf("no-such-group: %+v, want not_found", g)
	}
	if g := byName["idle-group"]; g.Status != grouplag.StatusNoCommits || len(g.Topics) != 0 {
		t.Errorf("idle-group: %+v, want no_commits", g)
	}
	g := byName[group]
	if g.Status != grouplag.StatusOK || len(g.Topics) != 1 || g.Topics[0].Topic != "raw-telemetry" {
		t.Fatalf("%s: %+v", group, g)
	}
	tl := g.Topics[0]

	// kcat's view of the end offsets, and kadm's of the lag.
	ends := map[int32]int64{}
	for part := range 3 {
		out, err := exec.Command(kcat, "-b", strings.Join(brokers, ","), "-Q", "-t", fmt.Sprintf("raw-telemetry:%d:-1", part)).CombinedOutput()
		if err != nil {
			t.Fatalf("kcat -Q: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`\[(\d+)\] offset (\d+)`).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("kcat -Q output: %s", out)
		}
		n, _ := strconv.ParseInt(m[2], 10, 64)
		ends[int32(part)] = n
	}
	lags, err := adm.Lag(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, pl := range tl.Partitions {
		part := pl.Partition
		if want := int64(before[part] + after[part]); pl.End != want || ends[part] != want {
			t.Errorf("partition %d: end %d, kcat %d, produced %d", part, pl.End, ends[part], want)
		}
		if pl.Committed != int64(before[part]) || pl.Lag != int64(after[part]) {
			t.Errorf("partition %d: committed %d lag %d, want %d and %d", part, pl.Committed, pl.Lag, before[part], after[part])
		}
		if kl, ok := lags[group].Lag.Lookup("raw-telemetry", part); !ok || kl.Lag != pl.Lag {
			t.Errorf("partition %d: lag %d, kadm says %d", part, pl.Lag, kl.Lag)
		}
		if pl.Lag > 0 {
			want := now.Sub(first[part]).Seconds()
			if !pl.SecondsKnown || math.Abs(pl.Seconds-want) > 2 {
				t.Errorf("partition %d: %.1fs behind, the first uncommitted record is %.1fs old", part, pl.Seconds, want)
			}
		} else if pl.Seconds != 0 {
			t.Errorf("partition %d: caught up but %.1fs behind", part, pl.Seconds)
		}
		total += pl.Lag
	}
	if len(tl.Partitions) != 3 || tl.Records != total || total != 15 {
		t.Errorf("topic lag %d over %d partitions, want 15 over 3", tl.Records, len(tl.Partitions))
	}
	if want := now.Sub(first[0]).Seconds(); !tl.SecondsKnown || math.Abs(tl.Seconds-want) > 2 {
		t.Errorf("topic lag %.1fs, want the oldest, %.1fs", tl.Seconds, want)
	}

	// The metrics say the same.
	if got := testenv.MetricValue(t, reg, "slo_canary_consumer_group_lag_records", map[string]string{"group": group, "partition": "0"}); got != 11 {
		t.Errorf("lag_records{partition=0} = %v", got)
	}
	if got := testenv.MetricValue(t, reg, "slo_canary_consumer_group_lag_seconds", map[string]string{"group": group}); math.Abs(got-tl.Seconds) > 1e-9 {
		t.Errorf("lag_seconds = %v, want %v", got, tl.Seconds)
	}
	for name, want := range map[string]float64{group: 1, "no-such-group": 0, "idle-group": 0} {
		if got := testenv.MetricValue(t, reg, "slo_canary_consumer_group_up", map[string]string{"group": name}); got != want {
			t.Errorf("up{%s} = %v, want %v", name, got, want)
		}
	}
	if got := testenv.MetricValue(t, reg, "slo_canary_consumer_group_state", map[string]string{"group": "no-such-group", "state": "Dead"}); got != 1 {
		t.Errorf("state{no-such-group,Dead} = %v", got)
	}

	// Once the pipeline resumes and commits, the lag goes back to zero.
	p.Resume()
	testenv.WaitFor(t, 20*time.Second, "lag back to zero", func() bool {
		s, err := gl.Refresh(context.Background())
		if err != nil {
			return false
		}
		n, _ := s.MaxRecords()
		sec, _ := s.MaxSeconds()
		return n == 0 && sec == 0
	})
}
