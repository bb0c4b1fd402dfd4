package testenv_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

// fatalTB records a Fatalf instead of failing the test, and ends the
// goroutine as testing.T's FailNow does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatal runs fn with a fatalTB on a goroutine of its own and returns what it
// failed with ("" if it did not).
func fatal(t *testing.T, fn func(tb testing.TB)) string {
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(tb)
	}()
	<-done
	return tb.msg
}

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	testenv.WaitFor(t, 0, "the third check", func() bool { return n.Add(1) == 3 })
	if n.Load() != 3 {
		t.Errorf("checked %d times, want 3", n.Load())
	}
	start := time.Now()
	msg := fatal(t, func(tb testing.TB) {
		testenv.WaitFor(tb, 100*time.Millisecond, "nothing", func() bool { return false })
	})
	if msg != "timed out after 100ms waiting for nothing" {
		t.Errorf("failed with %q", msg)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("gave up after %s, before its deadline", d)
	}
}

func TestMetricValue(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "h"}, []string{"stage", "reason"})
	c.WithLabelValues("db", "auth").Add(2)
	c.WithLabelValues("db", "query").Add(3)
	promauto.With(reg).NewGauge(prometheus.GaugeOpts{Name: "g", Help: "h"}).Set(7)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"c_total", map[string]string{"stage": "db", "reason": "query"}, 3},
		{"c_total", map[string]string{"reason": "auth"}, 2},
		{"g", nil, 7},
	} {
		if got := testenv.MetricValue(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	for _, labels := range []map[string]string{{"stage": "other"}, {"no_such_label": "db"}} {
		msg := fatal(t, func(tb testing.TB) { testenv.MetricValue(tb, reg, "c_total", labels) })
		if !strings.Contains(msg, "not found") {
			t.Errorf("c_total%v: failed with %q, want not found", labels, msg)
		}
	}
}

func TestKafka(t *testing.T) {
	c, addrs := testenv.Kafka(t, kfake.NumBrokers(1), kfake.SeedTopics(2, "t"))
	if len(addrs) != 1 || c.TopicInfo("t") == nil {
		t.Fatalf("addrs %v, topic %+v", addrs, c.TopicInfo("t"))
	}
	cl := testenv.KafkaClient(t, addrs, kgo.DefaultProduceTopic("t"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	testenv.Produce(t, cl, &kgo.Record{Partition: 1, Value: []byte("v")})
	if hw := c.PartitionInfo("t", 1).HighWatermark; hw != 1 {
		t.Errorf("high watermark %d, want 1", hw)
	}
}

// TestSchedulerNoiseSeesAStarvedProcess: with the process's only P held by a
// busy goroutine, the noise goroutine wakes up late, and the p99 says so.
func TestSchedulerNoiseSeesAStarvedProcess(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	stop := testenv.SchedulerNoise()
	// Busy loops that yield only at preemption (every ~10 ms), several times.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
			}
		}()
	}
	wg.Wait()
	if got := stop(); got < time.Millisecond {
		t.Errorf("wake-up delay p99 %s with the process starved, want at least 1ms", got)
	}
}
