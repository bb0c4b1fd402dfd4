package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// waitLeader waits until the daemons whose /metrics are at urls form one
// group of them all with exactly one leader, and returns the leader's index.
func waitLeader(t *testing.T, urls []string) int {
	t.Helper()
	leader := -1
	testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("a group of %d with one leader", len(urls)), func() bool {
		leader = -1
		for i, u := range urls {
			if n, _ := seriesValue(t, u, "slo_canary_coordination_members"); n != float64(len(urls)) {
				return false
			}
			if l, _ := seriesValue(t, u, "slo_canary_coordination_leader"); l == 1 {
				if leader >= 0 {
					return false
				}
				leader = i
			}
		}
		return leader >= 0
	})
	return leader
}

// TestDaemonReplicasShareBursts: two daemons with coordination on, each
// with its own instance, form one group of two with one leader; a burst
// scheduled every 2 s runs on the leader only, and the other counts it left
// to the leader.
func TestDaemonReplicasShareBursts(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn})
	var urls []string
	for _, instance := range []string{"canary-0", "canary-1"} {
		c := pipelineConfig(t, p, dsn, 200*time.Millisecond, func(c *config.Config) {
			c.Canary.Instance = instance
			c.Coordination.Enabled = true
			c.Coordination.SessionTimeout = 6 * time.Second
			c.Bursts.Enabled = true
			c.Bursts.Profiles = map[string]config.BurstProfile{"tiny": {Schedule: "@every 2s", Steps: []string{"500/s for 1s"}}}
			c.Bursts.Budgets.RateTolerance = 0.1 // see TestGate
			c.ConsumerLag.Enabled = false
		})
		urls = append(urls, startDaemon(t, daemonOpts{cfg: c}).url()+"/metrics")
	}
	leader := waitLeader(t, urls)
	other := urls[1-leader]
	testenv.WaitFor(t, 60*time.Second, "a burst on the leader and ticks left to it on the other", func() bool {
		ran, _ := seriesValue(t, urls[leader], `slo_canary_scheduled_runs_total{result="success",task="burst_tiny"}`)
		left, _ := seriesValue(t, other, `slo_canary_scheduled_skipped_total{reason="not_leader",task="burst_tiny"}`)
		return ran >= 1 && left >= 2
	})
	for _, result := range []string{"success", "failure", "panic"} {
		if n, _ := seriesValue(t, other, `slo_canary_scheduled_runs_total{result="`+result+`",task="burst_tiny"}`); n != 0 {
			t.Errorf("the replica that does not lead counts %v runs with result %s", n, result)
		}
	}
	if n, _ := seriesValue(t, other, `slo_canary_bursts_total{profile="tiny",verdict="pass"}`); n != 0 {
		t.Errorf("the replica that does not lead ran %v bursts", n)
	}
}

// TestDaemonReplicasScaleOutBurst: with bursts.scale_out, the leader's
// scheduled burst is shared: the other replica runs its share (it counts
// the events it sent) and exports no burst of its own; the leader exports
// the one verdict.
func TestDaemonReplicasScaleOutBurst(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 2, PostgresDSN: dsn})
	var urls, dirs []string
	for _, instance := range []string{"canary-0", "canary-1"} {
		dir := t.TempDir()
		dirs = append(dirs, dir)
		c := pipelineConfig(t, p, dsn, 200*time.Millisecond, func(c *config.Config) {
			c.Canary.Instance = instance
			c.Coordination.Enabled = true
			c.Coordination.SessionTimeout = 6 * time.Second
			c.Bursts.Enabled = true
			c.Bursts.ReportDir = dir
			c.Bursts.ScaleOut = true
			c.Bursts.MarkerShare = 0.02
			c.Bursts.Profiles = map[string]config.BurstProfile{"wide": {Schedule: "@every 3s", Steps: []string{"1000/s for 1s"}}}
			c.Bursts.Budgets.RateTolerance = 0.1 // see TestGate
			c.ConsumerLag.Enabled = false
		})
		urls = append(urls, startDaemon(t, daemonOpts{cfg: c}).url()+"/metrics")
	}
	leader := waitLeader(t, urls)
	other := urls[1-leader]
	// The first tick may come before the group formed, and run alone: wait
	// for a report of a shared burst.
	var shared burst.Report
	testenv.WaitFor(t, 60*time.Second, "the report of a shared burst on the leader", func() bool {
		files, _ := filepath.Glob(filepath.Join(dirs[leader], "*.json"))
		for _, f := range files {
			var r burst.Report
			if data, err := os.ReadFile(f); err == nil && json.Unmarshal(data, &r) == nil && len(r.Assignment) == 2 {
				shared = r
				return true
			}
		}
		return false
	})
	if shared.Verdict != burst.VerdictPass || shared.Events.Acked != 1000 {
		t.Errorf("shared burst: verdict %s %v, %d events acknowledged, want pass and 1000", shared.Verdict, shared.Reasons, shared.Events.Acked)
	}
	if n, _ := seriesValue(t, other, "slo_canary_burst_events_sent_total"); n < 500 {
		t.Errorf("the other replica sent %v burst events, want its share (500 a burst)", n)
	}
	if files, _ := filepath.Glob(filepath.Join(dirs[1-leader], "*.json")); len(files) != 0 {
		t.Errorf("the replica that does not lead wrote reports: %v", files)
	}
	for _, verdict := range []string{"pass", "fail", "aborted"} {
		if n, _ := seriesValue(t, other, `slo_canary_bursts_total{profile="wide",verdict="`+verdict+`"}`); n != 0 {
			t.Errorf("the replica that does not lead exports %v bursts with verdict %s", n, verdict)
		}
	}
}
