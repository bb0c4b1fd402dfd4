package canary_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestKcatReadsMarkers: an independent client (kcat, librdkafka) reads the
// markers from the reference pipeline's Kafka, in both encodings: Avro records
// carry the instance header, JSON records carry the marker fields.
func TestKcatReadsMarkers(t *testing.T) {
	kcat := testenv.Binary(t, "kcat")
	for _, enc := range []string{"avro", "json"} {
		t.Run(enc, func(t *testing.T) {
			e := newE2E(t, testbed.PipelineConfig{Partitions: 3, Encoding: testbed.Encoding(enc)})
			cfg := e.config(func(c *config.Config) {
				c.Canary.Encoding = enc
				c.Canary.Rate = 10
			})
			const n = 30
			cr := e.start(cfg, n)
			e.waitSettled(cr, n, 60*time.Second)
			cr.stop()

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, kcat, "-C", "-b", strings.Join(e.pipe.Brokers(), ","), "-t", "raw-telemetry",
				"-o", "beginning", "-e", "-q", "-f", "%p|%h|%s\n").Output()
			if err != nil {
				t.Fatalf("kcat: %v", err)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			seen := map[uuid.UUID]bool{}
			sc := bufio.NewScanner(bytes.NewReader(out))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			lines := 0
			for sc.Scan() {
				parts := strings.SplitN(sc.Text(), "|", 3)
				if len(parts) != 3 {
					continue // an Avro value may contain a newline
				}
				lines++
				if !strings.Contains(parts[1], canary.HeaderInstance+"=slo-canary") {
					t.Errorf("record on partition %s lacks the instance header: %q", parts[0], parts[1])
				}
				if enc == "json" {
					var ev struct {
						EventID    string            `json:"event_id"`
						Attributes map[string]string `json:"attributes"`
					}
					if err := json.Unmarshal([]byte(parts[2]), &ev); err != nil {
						t.Fatalf("kcat value is not JSON: %v: %q", err, parts[2])
					}
					id := uuid.MustParse(ev.EventID)
					if _, ok := e.sent[id]; !ok {
						t.Errorf("kcat read %s, which the canary did not send", id)
					}
					if ev.Attributes[canary.AttrPartition] != parts[0] {
						t.Errorf("marker %s on partition %s says partition %s", id, parts[0], ev.Attributes[canary.AttrPartition])
					}
					seen[id] = true
				}
			}
			if lines < n {
				t.Errorf("kcat read %d records, the canary sent %d", lines, n)
			}
			if enc == "json" && len(seen) != n {
				t.Errorf("kcat read %d distinct markers, want %d", len(seen), n)
			}
		})
	}
}
