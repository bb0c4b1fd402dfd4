package canary_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestE2ERestartAccountsForEveryMarker stops the canary while markers are in
// flight (the pipeline holds each for 3 s and drops 10%), leaves it down while
// some of them arrive, and starts it again. Across the two runs, every marker
// acknowledged by Kafka resolves exactly once per stage: observed with its lag,
// unmeasured (it arrived while the canary was down), or lost exactly when the
// pipeline dropped it.
func TestE2ERestartAccountsForEveryMarker(t *testing.T) {
	for _, mode := range []string{"checkpoint", "ingest_topic"} {
		t.Run(mode, func(t *testing.T) {
			e := newE2E(t, testbed.PipelineConfig{Faults: testbed.Faults{Delay: 3 * time.Second, DropPct: 10}, Seed: 3})
			cfg := e.config(func(c *config.Config) {
				c.Canary.Rate = 1
				c.Canary.Deadline = 8 * time.Second
				if mode == "checkpoint" {
					c.Canary.StateFile = filepath.Join(t.TempDir(), "state")
					c.Canary.CheckpointInterval = time.Second
				}
			})
			a := e.start(cfg, 0)
			testenv.WaitFor(t, 30*time.Second, "40 markers sent by the first run", func() bool {
				e.mu.Lock()
				defer e.mu.Unlock()
				return len(e.sent) >= 40
			})
			a.stop()
			e.mu.Lock()
			sentA := len(e.sent)
			pendingA := 0
			for _, st := range a.svc.Summary().Stages {
				pendingA += st.Pending
			}
			e.mu.Unlock()
			if pendingA == 0 {
				t.Fatal("nothing was in flight when the first run stopped; the test proves nothing")
			}
			// Down for 2 s: markers in flight reach the stages meanwhile.
			downSince := time.Now()
			testenv.WaitFor(t, 10*time.Second, "downtime", func() bool { return time.Since(downSince) > 2*time.Second })

			b := e.start(cfg, 20)
			e.waitSettled(b, sentA+20, 90*time.Second)
			b.stop()

			e.mu.Lock()
			defer e.mu.Unlock()
			if len(e.failed) != 0 {
				t.Fatalf("%d markers failed to produce", len(e.failed))
			}
			dropped := map[uuid.UUID]bool{}
			for _, id := range e.pipe.DroppedIDs() {
				dropped[id] = true
			}
			recovered := testenv.MetricValue(t, b.reg, "slo_canary_markers_recovered_total", map[string]string{"source": mode})
			if recovered == 0 {
				t.Errorf("second run recovered nothing from the %s", mode)
			}
			for _, stage := range []string{"database", "capsules"} {
				resolved := map[uuid.UUID]string{}
				resolve := func(id uuid.UUID, how string) {
					if prev, ok := resolved[id]; ok {
						if mode == "checkpoint" || how != "unmeasured" {
							t.Errorf("%s: marker %s resolved twice: %s, then %s", stage, id, prev, how)
						}
						return
					}
					resolved[id] = how
				}
				unmeasured := 0
				for _, sr := range e.results[stage] {
					switch sr.r.Outcome {
					case canary.OutcomeObserved:
						resolve(sr.r.Marker.ID, "observed")
					case canary.OutcomeUnmeasured:
						unmeasured++
						resolve(sr.r.Marker.ID, "unmeasured")
					case canary.OutcomeLate, canary.OutcomeDuplicate, canary.OutcomeUnknown:
						t.Errorf("%s: marker %s outcome %v", stage, sr.r.Marker.ID, sr.r.Outcome)
					}
				}
				for _, m := range e.lost[stage] {
					resolve(m.ID, "lost")
					if !dropped[m.ID] {
						t.Errorf("%s: marker %s lost but the pipeline did not drop it", stage, m.ID)
					}
				}
				for id := range e.sent {
					how, ok := resolved[id]
					if !ok {
						t.Errorf("%s: marker %s sent but never resolved", stage, id)
					}
					if dropped[id] && how != "lost" {
						t.Errorf("%s: dropped marker %s resolved as %s", stage, id, how)
					}
				}
				if unmeasured == 0 {
					t.Errorf("%s: no marker arrived while the canary was down; the downtime proved nothing", stage)
				}
				t.Logf("%s: %d sent, %d resolved, %d unmeasured, %d lost", stage, len(e.sent), len(resolved), unmeasured, len(e.lost[stage]))
			}
		})
	}
}
