package canary_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// refuseProduce makes the cluster answer every produce to topic with a
// retriable error while on is set, as a cluster short of in-sync replicas does.
func refuseProduce(p *testbed.Pipeline, topic string, on *atomic.Bool) {
	c := p.Cluster()
	id := c.TopicInfo(topic).TopicID
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		if !on.Load() {
			return nil, nil, false
		}
		ours := false
		for _, rt := range req.Topics {
			ours = ours || rt.Topic == topic || rt.TopicID == id
		}
		if !ours {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// TestE2EOutages: Kafka refuses produce requests for 10 s, then the database
// is stopped for 10 s. The canary does not crash, counts the failures, resumes
// measuring, and reports no marker lost: markers that reached the pipeline
// during the outages are found before their deadline.
func TestE2EOutages(t *testing.T) {
	e := newE2E(t, testbed.PipelineConfig{})
	cfg := e.config(func(c *config.Config) {
		c.Canary.Rate = 1 // 10 markers/s over 10 partitions
		c.Canary.ProduceTimeout = 2 * time.Second
		c.Canary.Deadline = 60 * time.Second
		c.Canary.FreshnessBudget = 30 * time.Second
	})
	const n = 320
	cr := e.start(cfg, n)
	metric := func(name string, labels map[string]string) float64 {
		return testenv.MetricValue(t, cr.reg, name, labels)
	}
	testenv.WaitFor(t, 30*time.Second, "markers observed before the outages", func() bool {
		return metric("slo_canary_markers_observed_total", map[string]string{"stage": "database"}) >= 10
	})

	var refusing atomic.Bool
	refuseProduce(e.pipe, "raw-telemetry", &refusing)
	refusing.Store(true)
	testenv.WaitFor(t, 20*time.Second, "produce failures counted", func() bool {
		return metric("slo_canary_produce_failures_total", map[string]string{"reason": "timeout"})+
			metric("slo_canary_produce_failures_total", map[string]string{"reason": "broker"}) > 0
	})
	time.Sleep(10*time.Second - cfg.Canary.ProduceTimeout) // the outage lasts 10 s in all
	refusing.Store(false)
	sentBefore := metric("slo_canary_markers_sent_total", nil)
	testenv.WaitFor(t, 20*time.Second, "produce resumed", func() bool {
		return metric("slo_canary_markers_sent_total", nil) > sentBefore+5
	})

	ctx := context.Background()
	if err := e.pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "observer errors counted", func() bool {
		return metric("slo_canary_observer_errors_total", map[string]string{"stage": "database", "reason": "connect"}) > 0
	})
	time.Sleep(8 * time.Second) // the outage lasts about 10 s in all
	if err := e.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitSettled(cr, n, 120*time.Second)
	cr.stop()

	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.failed) == 0 {
		t.Error("no produce failed during the Kafka outage")
	}
	e.checkAllObserved(t, "across the outages")
	if got := metric("slo_canary_markers_observed_total", map[string]string{"stage": "database"}); int(got) != len(e.sent) {
		t.Errorf("database observed %v markers, %d were acknowledged", got, len(e.sent))
	}
	t.Logf("acknowledged %d, failed %d", len(e.sent), len(e.failed))
}
