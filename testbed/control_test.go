package testbed_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// TestControlAPIUnknownField: a PUT with a field the profile does not have (a
// typo) is a 400 naming the field, and changes nothing; bad JSON is a 400 too.
func TestControlAPIUnknownField(t *testing.T) {
	t.Parallel()
	p := testenv.Pipeline(t, testbed.PipelineConfig{Partitions: 1})
	pipeline := httptest.NewServer(p.Handler())
	defer pipeline.Close()
	api, err := testbed.NewAPI(testbed.APIOptions{TruthCap: 10})
	if err != nil {
		t.Fatal(err)
	}
	ref := httptest.NewServer(api.ControlHandler())
	defer ref.Close()

	for _, tc := range []struct{ name, url, body, want string }{
		{"faults typo", pipeline.URL + "/faults", `{"dleay":"1s"}`, `unknown field "dleay" (fields: delay, jitter,`},
		{"faults typo beside a field", pipeline.URL + "/faults", `{"delay":"1s","drop_pc":5}`, `unknown field "drop_pc"`},
		{"faults trailing data", pipeline.URL + "/faults", `{"delay":"1s"} {}`, `invalid`},
		{"profile typo", ref.URL + "/reference-api/profile", `{"eror_pct":5}`, `unknown field "eror_pct" (fields: sli, evidence,`},
		{"profile trailing data", ref.URL + "/reference-api/profile", `{"error_pct":5}]`, `invalid`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("PUT", tc.url, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var answer struct{ Error string }
			if err := json.Unmarshal(b, &answer); err != nil {
				t.Fatalf("PUT %s: %d %s: %v", tc.body, resp.StatusCode, b, err)
			}
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(answer.Error, tc.want) {
				t.Errorf("PUT %s: %d %s, want 400 containing %q", tc.body, resp.StatusCode, b, tc.want)
			}
		})
	}
	if f := p.Faults(); f != (testbed.Faults{}) {
		t.Errorf("faults changed by refused PUTs: %+v", f)
	}
	if got, want := api.Profile(), testbed.DefaultAPIProfile(); got.ErrorPct != want.ErrorPct {
		t.Errorf("profile changed by refused PUTs: %+v", got)
	}

	// Known fields still work, and a partial PUT keeps the rest.
	req, _ := http.NewRequest("PUT", pipeline.URL+"/faults", strings.NewReader(`{"delay":"1s"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || p.Faults().Delay != time.Second {
		t.Errorf("PUT delay: %d, faults %+v", resp.StatusCode, p.Faults())
	}
}
