package testbed_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

func get(t *testing.T, url string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitRecords returns the API's records once it holds n: the server records
// a request just after its client has the answer.
func waitRecords(t *testing.T, api *testbed.API, n int) []testbed.APIRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs := api.Records()
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records after 10s, want %d", len(recs), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAPIEndpoints checks the answers, FastAPI's 422s, and the ground truth
// of each request.
func TestAPIEndpoints(t *testing.T) {
	t.Parallel()
	api, err := testbed.NewAPI(testbed.APIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	j := api.JourneyIDs()[0]
	for _, tc := range []struct {
		path   string
		status int
		has    string
	}{
		{"/health", 200, `"status":"healthy"`},
		{"/api/v1/sli?journey_id=" + j, 200, `"slis":[{"sli_id"`},
		{"/api/v1/sli?journey_id=" + j + "&include_evidence=true", 200, `"evidence":[{"capsule_id"`},
		{"/api/v1/sli?journey_id=" + j + "&include_evidence=maybe", 422, "include_evidence"},
		{"/api/v1/sli", 422, "journey_id: field required"},
		{"/api/v1/sli?journey_id=x", 422, "not a valid uuid"},
		{"/api/v1/sli?journey_id=00000000-0000-0000-0000-000000000000", 200, `{"slis":[]}`},
		{"/api/v1/journeys?service_name=" + api.Services()[0] + "&environment=prod", 200, `"total_count":3`},
		{"/api/v1/journeys?service_name=nobody&environment=prod", 200, `{"journeys":[],"total_count":0}`},
		{"/api/v1/journeys?service_name=checkout", 422, "environment: field required"},
		{"/api/v1/journeys?service_name=checkout&environment=qa", 422, "permitted"},
		{"/api/v1/slo", 404, `"detail"`},
	} {
		code, body := get(t, srv.URL+tc.path, map[string]string{"X-Request-Id": tc.path})
		if code != tc.status || !strings.Contains(body, tc.has) {
			t.Errorf("GET %s: %d %s; want %d with %s", tc.path, code, body, tc.status, tc.has)
		}
	}
	recs := waitRecords(t, api, 12)
	if len(recs) != 12 || recs[2].Endpoint != "sli_evidence" || recs[2].ID != "/api/v1/sli?journey_id="+j+"&include_evidence=true" ||
		recs[11].Endpoint != "other" || recs[11].Status != 404 {
		t.Errorf("records %+v", recs)
	}
	if s := api.Stats(); s.Requests != 12 || s.ByEndpoint["sli"] != 5 || s.ByEndpoint["journeys"] != 4 {
		t.Errorf("stats %+v", s)
	}
}

// TestAPIProfileWhileServing changes the profile, stalls and resumes over the
// control API while requests are in flight, and checks each request's
// handling time follows the profile it arrived under. Run with -race.
func TestAPIProfileWhileServing(t *testing.T) {
	t.Parallel()
	api, err := testbed.NewAPI(testbed.APIOptions{TruthCap: 50})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	ctl := httptest.NewServer(api.ControlHandler())
	defer ctl.Close()
	put := func(body string) testbed.APIProfile {
		req, _ := http.NewRequest("PUT", ctl.URL+"/reference-api/profile", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p testbed.APIProfile
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("PUT %s: %d %s", body, resp.StatusCode, b)
		}
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := put(`{"health":{"base":"30ms"}}`)
	if p.Health.Base != 30*time.Millisecond || p.SLI.Base != 0 {
		t.Fatalf("profile %+v", p)
	}
	// Concurrent readers and a writer: the race detector watches.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				get(t, srv.URL+"/health", nil)
			}
		})
	}
	wg.Go(func() { put(`{"error_pct":0}`) })
	wg.Wait()
	for _, r := range waitRecords(t, api, 40) {
		if r.Handling < 30*time.Millisecond {
			t.Errorf("handled in %s under a 30ms profile", r.Handling)
		}
	}
	req, _ := http.NewRequest("PUT", ctl.URL+"/reference-api/profile", strings.NewReader(`{"error_pct":150}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Errorf("invalid profile accepted: %v", err)
	} else {
		resp.Body.Close()
	}

	// A stall holds requests until resume; their handling time includes it.
	api.ResetRecords()
	if _, err := http.Post(ctl.URL+"/reference-api/stall", "", nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() { c, _ := get(t, srv.URL+"/health", nil); done <- c }()
	deadline := time.Now().Add(10 * time.Second)
	for api.Stats().ByEndpoint["health"] < 41 { // until the request is in the handler, held
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the handler")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("answered while stalled")
	case <-time.After(100 * time.Millisecond):
	}
	if !api.Profile().Stalled {
		t.Error("profile does not say stalled")
	}
	if _, err := http.Post(ctl.URL+"/reference-api/resume", "", nil); err != nil {
		t.Fatal(err)
	}
	if c := <-done; c != 200 {
		t.Errorf("after resume: %d", c)
	}
	if recs := waitRecords(t, api, 1); len(recs) != 1 || recs[0].Handling < 130*time.Millisecond {
		t.Errorf("stalled request's truth %+v", recs)
	}

	// The ground truth is bounded: the oldest records go.
	for range 60 {
		get(t, srv.URL+"/health?x", map[string]string{"X-Request-Id": "r"})
	}
	for deadline := time.Now().Add(10 * time.Second); api.Stats().Evicted < 11 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // see waitRecords
	}
	if recs, s := api.Records(), api.Stats(); len(recs) != 50 || s.Evicted != 11 {
		t.Errorf("%d records, %d evicted; want 50 and 11", len(recs), s.Evicted)
	}
}

// TestAPIFaults draws faults from the profile's percentages and counts them.
func TestAPIFaults(t *testing.T) {
	t.Parallel()
	api, err := testbed.NewAPI(testbed.APIOptions{
		Profile: testbed.APIProfile{ErrorPct: 100, ErrorStatus: 503},
		MaxHold: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	if c, body := get(t, srv.URL+"/health", nil); c != 503 || !strings.Contains(body, "injected error") {
		t.Errorf("error_pct 100: %d %s", c, body)
	}
	if err := api.SetProfile(testbed.APIProfile{TimeoutPct: 100}); err != nil {
		t.Fatal(err)
	}
	// Held for MaxHold, then a 504: the client here waits longer than that.
	if c, _ := get(t, srv.URL+"/health", nil); c != 504 {
		t.Errorf("timeout_pct 100 with a patient client: %d", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/health", nil)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Error("timeout fault answered an impatient client")
	}
	if err := api.SetProfile(testbed.APIProfile{MalformedPct: 100}); err != nil {
		t.Fatal(err)
	}
	if c, body := get(t, srv.URL+"/health", nil); c != 200 || json.Valid([]byte(body)) || !strings.HasPrefix(body, `{"s`) {
		t.Errorf("malformed: %d %q", c, body)
	}
	if err := api.SetProfile(testbed.APIProfile{EmptyPct: 100}); err != nil {
		t.Fatal(err)
	}
	if c, body := get(t, srv.URL+"/health", nil); c != 200 || body != "" {
		t.Errorf("empty: %d %q", c, body)
	}
	if s := api.Stats(); s.Faults["error"] != 1 || s.Faults["timeout"] != 2 || s.Faults["malformed"] != 1 || s.Faults["empty"] != 1 {
		t.Errorf("faults %+v", s.Faults)
	}
	for _, bad := range []testbed.APIProfile{{ErrorPct: 60, TimeoutPct: 60}, {ErrorStatus: 200}, {SLI: testbed.Latency{Base: -1}}} {
		if err := api.SetProfile(bad); err == nil {
			t.Errorf("profile %+v accepted", bad)
		}
	}
}

// TestServeWritesQueries: the standalone testbed serves the reference API
// and its written config aims the query probes at it, through config.Load.
func TestServeWritesQueries(t *testing.T) {
	t.Parallel()
	cfgPath := filepath.Join(t.TempDir(), "canary.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan testbed.ServeInfo, 1)
	done := make(chan error, 1)
	go func() {
		done <- testbed.Serve(ctx, testbed.ServeOptions{
			Pipeline:    testbed.PipelineConfig{Partitions: 1},
			NoPostgres:  true,
			WriteConfig: cfgPath,
			APIProfile:  &testbed.APIProfile{Stalled: true},
			Ready:       func(i testbed.ServeInfo) { ready <- i },
		})
	}()
	var info testbed.ServeInfo
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	c, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Without a database sink the written config watches the capsule stage
	// only: a database stage would wait for a server that is not there.
	if got := c.EnabledObservers(); !slices.Equal(got, []string{"capsules"}) {
		t.Errorf("stages %v, want only capsules without PostgreSQL", got)
	}
	q := c.Queries
	// The SLI probes discover the API's journeys from its services.
	if q.BaseURL != info.APIURL || !q.Probes["sli"].DiscoversJourneys() || !q.Probes["sli_evidence"].DiscoversJourneys() ||
		!slices.Equal(q.JourneyDiscovery.Services, info.API.Services()) ||
		!slices.Equal(q.Probes["journeys"].Rotate.Services, info.API.Services()) {
		t.Errorf("queries section %+v, API %s", q, info.APIURL)
	}
	// The API's profile is changed on the control API.
	var p testbed.APIProfile
	call(t, "POST", info.ControlURL+"/reference-api/resume", "", 200, &p)
	if p.Stalled || info.API.Profile().Stalled {
		t.Error("resume over the control API did not resume")
	}
	// Discovery with the written config finds every journey of the API.
	d, err := probes.NewJourneyDiscovery(q.JourneyDiscovery, probes.JourneyDiscoveryOptions{BaseURL: q.BaseURL})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if res, err := d.Refresh(context.Background()); err != nil || !slices.Equal(d.IDs(), info.API.JourneyIDs()) {
		t.Errorf("discovered %q (%s, %v), want %q", d.IDs(), res, err, info.API.JourneyIDs())
	}
	if code, body := get(t, info.APIURL+"/health", nil); code != 200 || !strings.Contains(body, "healthy") {
		t.Errorf("health %d %s", code, body)
	}
	// A held request does not hold the exit.
	info.API.Stall()
	go http.Get(info.APIURL + "/health")
	for deadline := time.Now().Add(10 * time.Second); info.API.Stats().ByEndpoint["health"] < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the held request never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
