package deploy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/internal/testenv"
)

// TestReplicasPageOnce: two replicas see one Kafka outage, and each fires
// its own ingest-availability page (the SLI is split by canary instance, to
// tell a broken canary apart). Through the example route, a real
// Alertmanager sends one page, with both alerts in it, not one per replica.
func TestReplicasPageOnce(t *testing.T) {
	t.Parallel()
	amBin := testenv.Binary(t, "prometheus-alertmanager")
	hook := newWebhook(t)
	addr := startAlertmanager(t, amBin, t.TempDir(), hook.URL)

	var alerts []map[string]any
	for _, instance := range []string{"slo-canary-0", "slo-canary-1"} {
		alerts = append(alerts, map[string]any{
			"labels": map[string]string{
				"alertname": "SLOScoutIngestAvailabilityBudgetBurnFast", "severity": "page",
				"namespace": "slo-scout", "job": "slo-canary", "instance": instance,
			},
			"annotations": map[string]string{"summary": "markers from canary " + instance + " were not acknowledged by Kafka"},
			"startsAt":    time.Now().UTC().Format(time.RFC3339),
		})
	}
	body, err := json.Marshal(alerts)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v2/alerts: %s", resp.Status)
	}
	hook.wait(t, time.Minute, "/page", "SLOScoutIngestAvailabilityBudgetBurnFast", "firing")
	var messages int
	testenv.WaitFor(t, time.Minute, "both replicas' alerts delivered", func() bool {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		messages = hook.messages
		return len(hook.received) >= 2
	})
	if messages != 1 {
		t.Errorf("the two replicas' alerts came in %d notifications, want one page carrying both", messages)
	}
}
