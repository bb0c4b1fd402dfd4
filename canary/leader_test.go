package canary_test

import (
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestE2ELeaderMoves: partition leaders move between three brokers again and
// again while markers flow. Produce and fetch follow the leaders; no marker is
// lost, and every acknowledged marker is observed at both stages.
func TestE2ELeaderMoves(t *testing.T) {
	e := newE2E(t, testbed.PipelineConfig{NumBrokers: 3, Partitions: 6})
	cfg := e.config(func(c *config.Config) {
		c.Canary.Rate = 2
		c.Canary.Deadline = 30 * time.Second
		c.Canary.MetadataRefresh = time.Second
	})
	const n = 120
	cr := e.start(cfg, n)
	cluster := e.pipe.Cluster()
	leaders := func() map[int32]int32 {
		m := map[int32]int32{}
		for p := range int32(6) {
			m[p] = cluster.LeaderFor("raw-telemetry", p)
		}
		return m
	}
	before, moved := leaders(), 0
	for moves := 0; ; moves++ {
		e.mu.Lock()
		sent := len(e.sent) + len(e.failed)
		e.mu.Unlock()
		if sent >= n {
			if moves < 3 {
				t.Fatalf("only %d leader moves while markers flowed", moves)
			}
			break
		}
		cluster.ShufflePartitionLeaders()
		for p, l := range leaders() {
			if l != before[p] {
				moved++
			}
		}
		testenv.WaitFor(t, 30*time.Second, "more markers after a leader move", func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			return len(e.sent)+len(e.failed) >= sent+10 || len(e.sent)+len(e.failed) >= n
		})
	}
	if moved == 0 {
		t.Fatal("no leader ever moved; the test proves nothing")
	}
	e.waitSettled(cr, n, 90*time.Second)
	cr.stop()

	e.mu.Lock()
	defer e.mu.Unlock()
	e.checkAllObserved(t, "across leader moves")
	t.Logf("acknowledged %d, failed %d", len(e.sent), len(e.failed))
}

// TestE2EBrokerRemoved: one of three brokers leaves the cluster while markers
// flow (its partitions move to the others, as after a broker failure with
// replicas). The canary follows, and no acknowledged marker is lost.
func TestE2EBrokerRemoved(t *testing.T) {
	e := newE2E(t, testbed.PipelineConfig{NumBrokers: 3, Partitions: 6})
	cfg := e.config(func(c *config.Config) {
		c.Canary.Rate = 2
		c.Canary.Deadline = 30 * time.Second
		c.Canary.MetadataRefresh = time.Second
	})
	const n = 96
	cr := e.start(cfg, n)
	cluster := e.pipe.Cluster()
	testenv.WaitFor(t, 30*time.Second, "markers before the removal", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.sent) >= 24
	})
	victim := cluster.LeaderFor("raw-telemetry", 0)
	for p := range int32(6) {
		for _, topic := range []string{"raw-telemetry", "capsule-events"} {
			if cluster.LeaderFor(topic, p) == victim {
				others := []int32{0, 1, 2}
				target := others[(int(victim)+1)%3]
				if err := cluster.MoveTopicPartition(topic, p, target); err != nil {
					t.Fatalf("move %s/%d: %v", topic, p, err)
				}
			}
		}
	}
	if err := cluster.RemoveNode(victim); err != nil {
		t.Fatalf("remove broker %d: %v", victim, err)
	}
	e.waitSettled(cr, n, 90*time.Second)
	cr.stop()

	e.mu.Lock()
	defer e.mu.Unlock()
	e.checkAllObserved(t, "after the broker left")
	t.Logf("acknowledged %d, failed %d (removed broker %d)", len(e.sent), len(e.failed), victim)
}
