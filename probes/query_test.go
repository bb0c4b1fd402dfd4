package probes_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

// refAPI serves the reference SLO-Scout API for the test.
func refAPI(t *testing.T, opts testbed.APIOptions) (*testbed.API, string) {
	t.Helper()
	api, err := testbed.NewAPI(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return api, srv.URL
}

func httpProbe(mod func(p *config.QueryProbe)) config.QueryProbe {
	p := config.Defaults().Queries.Probes["sli_evidence"]
	// {journey_id} filled with "x", as an empty list filled it before
	// journeys were discovered.
	p.Rotate.JourneyIDs = []string{"x"}
	p.Timeout = 5 * time.Second
	if mod != nil {
		mod(&p)
	}
	return p
}

func do(t *testing.T, base string, auth config.QueryAuth, p config.QueryProbe) probes.QueryResult {
	t.Helper()
	q, err := probes.NewQuery(context.Background(), "test", p, probes.QueryOptions{BaseURL: base, Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	return q.Do(context.Background(), 0)
}

// TestHTTPQueryOutcomes drives every outcome class through real servers: the
// reference API with a forced fault, and small servers for what it does not
// do. A 200 with a malformed or empty body is never a success.
func TestHTTPQueryOutcomes(t *testing.T) {
	t.Parallel()
	api, base := refAPI(t, testbed.APIOptions{MaxHold: 5 * time.Second})
	journey := api.JourneyIDs()[0]

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String()
	closed.Close()

	redirect := httptest.NewServer(http.RedirectHandler("/login", http.StatusFound))
	t.Cleanup(redirect.Close)
	// A server that promises more body than it sends, then hangs up.
	short := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"slis\":")
		buf.Flush()
		conn.Close()
	}))
	t.Cleanup(short.Close)

	withFault := func(f string) func(p *config.QueryProbe) {
		return func(p *config.QueryProbe) {
			p.Params = []string{"journey_id=" + journey, "include_evidence=true"}
			p.Headers = []string{testbed.FaultHeader + ": " + f}
		}
	}
	for _, tc := range []struct {
		name    string
		base    string
		mod     func(p *config.QueryProbe)
		outcome string
		status  int
		errHas  string
	}{
		{"success", base, func(p *config.QueryProbe) { p.Params = []string{"journey_id=" + journey, "include_evidence=true"} },
			probes.OutcomeSuccess, 200, ""},
		{"no slis", base, func(p *config.QueryProbe) { p.Params = []string{"journey_id=" + config.PlaceholderJourneyID} },
			probes.OutcomeBadBody, 200, `slis is empty ([])`},
		{"500", base, withFault(testbed.FaultError), probes.OutcomeHTTP5xx, 500, "status 500"},
		{"503", base, withFault("503"), probes.OutcomeHTTP5xx, 503, "status 503"},
		{"404", base, func(p *config.QueryProbe) { p.Path = "/api/v1/nope" }, probes.OutcomeHTTP4xx, 404, "status 404"},
		{"422 without journey", base, func(p *config.QueryProbe) { p.Params = nil }, probes.OutcomeHTTP4xx, 422, "status 422"},
		{"404 expected", base, func(p *config.QueryProbe) {
			p.Path, p.ExpectStatus, p.ExpectJSON = "/api/v1/nope", []string{"4xx"}, "detail"
		}, probes.OutcomeSuccess, 404, ""},
		{"timeout", base, func(p *config.QueryProbe) { withFault(testbed.FaultTimeout)(p); p.Timeout = 200 * time.Millisecond },
			probes.OutcomeTimeout, 0, "deadline exceeded"},
		{"malformed", base, withFault(testbed.FaultMalformed), probes.OutcomeBadBody, 200, "not JSON"},
		{"empty", base, withFault(testbed.FaultEmpty), probes.OutcomeBadBody, 200, "the body is empty"},
		{"empty without check", base, func(p *config.QueryProbe) { withFault(testbed.FaultEmpty)(p); p.ExpectJSON = "" },
			probes.OutcomeSuccess, 200, ""},
		{"refused", closedURL, nil, probes.OutcomeConnect, 0, "refused"},
		{"redirect not followed", redirect.URL, nil, probes.OutcomeBadBody, 302, "unexpected status 302"},
		{"cut short", short.URL, nil, probes.OutcomeConnect, 200, "unexpected EOF"},
		{"health", base, func(p *config.QueryProbe) { *p = config.Defaults().Queries.Probes["health"] }, probes.OutcomeSuccess, 200, ""},
		{"journeys", base, func(p *config.QueryProbe) {
			*p = config.Defaults().Queries.Probes["journeys"]
			p.Rotate.Services = api.Services()
		}, probes.OutcomeSuccess, 200, ""},
		// A service without journeys is an answer (total_count 0), not a
		// failure of the default probe; a probe that asks for journeys still
		// fails on an empty list.
		{"journeys of nobody", base, func(p *config.QueryProbe) { *p = config.Defaults().Queries.Probes["journeys"] },
			probes.OutcomeSuccess, 200, ""},
		{"journeys of nobody, journeys expected", base, func(p *config.QueryProbe) {
			*p = config.Defaults().Queries.Probes["journeys"]
			p.ExpectJSON = "journeys"
		}, probes.OutcomeBadBody, 200, "journeys is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, tc.base, config.QueryAuth{}, httpProbe(tc.mod))
			if r.Outcome != tc.outcome || r.Status != tc.status {
				t.Fatalf("outcome %s status %d err %v; want %s %d", r.Outcome, r.Status, r.Err, tc.outcome, tc.status)
			}
			if tc.errHas == "" && r.Err != nil || tc.errHas != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), tc.errHas)) {
				t.Errorf("err %v, want one containing %q", r.Err, tc.errHas)
			}
			if r.Sent.IsZero() || r.Done.Before(r.Sent) {
				t.Errorf("sent %v done %v", r.Sent, r.Done)
			}
		})
	}
}

// TestHTTPQueryRotation: consecutive requests walk each rotation list, the
// rotated value is reported for exemplars, and every request carries its
// own X-Request-Id.
func TestHTTPQueryRotation(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen, ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.RequestURI())
		ids = append(ids, r.Header.Get("X-Request-Id")+" "+r.Header.Get("X-Service"))
		mu.Unlock()
		fmt.Fprint(w, `{"items":[1]}`)
	}))
	defer srv.Close()
	p := httpProbe(func(p *config.QueryProbe) {
		p.Path = "/j/{journey_id}"
		p.Params = []string{"service_name={service}", "q=a b&c"}
		p.Headers = []string{"X-Service: {service}"}
		p.Rotate = config.QueryRotate{JourneyIDs: []string{"j1", "j2", "j3"}, Services: []string{"s1", "s2"}}
		p.ExpectJSON = "items.0"
	})
	q, err := probes.NewQuery(context.Background(), "rot", p, probes.QueryOptions{BaseURL: srv.URL + "/prefix/"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var targets []string
	for seq := range uint64(4) {
		r := q.Do(context.Background(), seq)
		if r.Outcome != probes.OutcomeSuccess {
			t.Fatalf("seq %d: %s %v", seq, r.Outcome, r.Err)
		}
		targets = append(targets, r.TargetName+"="+r.TargetValue)
	}
	want := []string{
		"/prefix/j/j1?service_name=s1&q=a+b%26c", "/prefix/j/j2?service_name=s2&q=a+b%26c",
		"/prefix/j/j3?service_name=s1&q=a+b%26c", "/prefix/j/j1?service_name=s2&q=a+b%26c",
	}
	if !slices.Equal(seen, want) {
		t.Errorf("requests %q\nwant %q", seen, want)
	}
	if !slices.Equal(targets, []string{"journey_id=j1", "journey_id=j2", "journey_id=j3", "journey_id=j1"}) {
		t.Errorf("targets %q", targets)
	}
	for i, id := range ids {
		if !strings.HasPrefix(id, "rot-") || !strings.HasSuffix(id, []string{" s1", " s2"}[i%2]) || slices.Index(ids, id) != i {
			t.Errorf("request %d: X-Request-Id and X-Service %q", i, id)
		}
	}
}

// TestHTTPQueryJWT: minted tokens pass the reference API's check (HS256,
// iss, aud, exp); a wrong key, wrong audience or no token gets 401.
func TestHTTPQueryJWT(t *testing.T) {
	t.Parallel()
	api, base := refAPI(t, testbed.APIOptions{JWTKey: []byte("k3y"), Issuer: "slo-scout", Audience: "slo-scout-api"})
	auth := config.Defaults().Queries.Auth
	p := httpProbe(func(p *config.QueryProbe) { p.Params = []string{"journey_id=" + api.JourneyIDs()[1]} })
	for _, tc := range []struct {
		name    string
		mod     func(a *config.QueryAuth)
		outcome string
	}{
		{"signed", func(a *config.QueryAuth) { a.JWTSigningKey = "k3y" }, probes.OutcomeSuccess},
		{"wrong key", func(a *config.QueryAuth) { a.JWTSigningKey = "nope" }, probes.OutcomeHTTP4xx},
		{"wrong audience", func(a *config.QueryAuth) { a.JWTSigningKey, a.JWTAudience = "k3y", "other" }, probes.OutcomeHTTP4xx},
		{"static token", func(a *config.QueryAuth) { a.Token = "not-a-jwt" }, probes.OutcomeHTTP4xx},
		{"none", func(*config.QueryAuth) {}, probes.OutcomeHTTP4xx},
	} {
		a := auth
		tc.mod(&a)
		if r := do(t, base, a, p); r.Outcome != tc.outcome {
			t.Errorf("%s: outcome %s (status %d, %v), want %s", tc.name, r.Outcome, r.Status, r.Err, tc.outcome)
		}
	}
	if got := api.Stats().Unauthorized; got != 4 {
		t.Errorf("API counted %d unauthorized requests, want 4", got)
	}
	// /health is exempt from auth, as in SLO-Scout.
	if r := do(t, base, config.QueryAuth{}, config.Defaults().Queries.Probes["health"]); r.Outcome != probes.OutcomeSuccess {
		t.Errorf("health without a token: %s %v", r.Outcome, r.Err)
	}
}

func TestCheckJSON(t *testing.T) {
	for _, tc := range []struct {
		body, path, err string
	}{
		{`{"slis":[{"id":1}]}`, "slis", ""},
		{`{"slis":[{"id":1}]}`, "slis.0.id", ""},
		{` {"status":"healthy"} `, "status", ""},
		{`{"total_count":0}`, "total_count", ""},
		{`{"ok":false}`, "ok", ""},
		{`{"slis":[]}`, "slis", "slis is empty ([])"},
		{`{"slis":[ ]}`, "slis", "slis is empty"},
		{`{"slis":{}}`, "slis", "slis is empty"},
		{`{"slis":null}`, "slis", "slis is empty (null)"},
		{`{"status":""}`, "status", "status is empty"},
		{`{"other":1}`, "slis", `the body has no field "slis"`},
		{`{"slis":[1]}`, "slis.3", "slis has 1 elements, no index 3"},
		{`{"slis":[1]}`, "slis.x", `slis is an array, and "x" is not an index`},
		{`{"slis":1}`, "slis.x", `slis is not an object or array`},
		{`{"slis":[{"id":1}`, "slis", "the body is not JSON"},
		{`{"slis":[]} trailing`, "slis", "the body is not JSON"},
		{``, "slis", "the body is empty"},
		{`<html>`, "slis", "the body is not JSON"},
		{`[{"id":1}]`, "0.id", ""},
	} {
		err := probes.CheckJSON([]byte(tc.body), strings.Split(tc.path, "."))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("CheckJSON(%q, %q) = %v, want %q", tc.body, tc.path, err, tc.err)
		}
	}
}

// FuzzCheckJSON: a body from the server is outside input; whatever it is,
// the check must not panic, and must reject what is not JSON.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{"slis":[{"id":1}]}`, `{"a":{"b":[1,2]}}`, `[]`, `{`, `null`, `{"slis":""}`} {
		f.Add([]byte(s), "slis")
	}
	f.Add([]byte(`{"a":{"b":[1,2]}}`), "a.b.1")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		segs := strings.Split(path, ".")
		err := probes.CheckJSON(body, segs)
		if err == nil && path != "" && !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q at %q", body, path)
		}
	})
}

// TestSQLQuery times read-only queries against a real PostgreSQL and
// classifies their failures.
func TestSQLQuery(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDSN(t)
	base := config.Defaults().Queries.Probes["timescaledb"]
	base.SQL.DSN = dsn
	base.Timeout = 5 * time.Second
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedDSN := fmt.Sprintf("postgres://nobody@%s/x?sslmode=disable&connect_timeout=5", closed.Addr())
	closed.Close()
	for _, tc := range []struct {
		name, query, outcome string
		mod                  func(p *config.QueryProbe)
	}{
		{"rows", "SELECT generate_series(1, 1000)", probes.OutcomeSuccess, nil},
		{"syntax", "SELEC 1", probes.OutcomeBadBody, nil},
		{"write refused", "CREATE TABLE t (x int)", probes.OutcomeBadBody, nil},
		{"statement timeout", "SELECT pg_sleep(5)", probes.OutcomeTimeout, func(p *config.QueryProbe) { p.SQL.StatementTimeout = 100 * time.Millisecond }},
		{"client timeout", "SELECT pg_sleep(5)", probes.OutcomeTimeout, func(p *config.QueryProbe) { p.Timeout = 100 * time.Millisecond }},
		{"refused", "SELECT 1", probes.OutcomeConnect, func(p *config.QueryProbe) { p.SQL.DSN = closedDSN }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			p.SQL.Query = tc.query
			if tc.mod != nil {
				tc.mod(&p)
			}
			r := do(t, "", config.QueryAuth{}, p)
			if r.Outcome != tc.outcome {
				t.Fatalf("outcome %s err %v, want %s", r.Outcome, r.Err, tc.outcome)
			}
			if tc.outcome == probes.OutcomeSuccess && r.Err != nil || tc.outcome != probes.OutcomeSuccess && r.Err == nil {
				t.Errorf("err %v", r.Err)
			}
		})
	}
}

// TestReferenceAPIBodies checks the answers the probes' defaults expect, and
// that a probe's request id comes back and lands in the ground truth.
func TestReferenceAPIBodies(t *testing.T) {
	t.Parallel()
	api, base := refAPI(t, testbed.APIOptions{})
	resp, err := http.Get(base + "/api/v1/journeys?service_name=" + api.Services()[0])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := bufio.NewReader(resp.Body).ReadString(0)
	resp.Body.Close()
	if resp.StatusCode != 422 || !strings.Contains(body, "environment: field required") {
		t.Errorf("journeys without environment: %d %s", resp.StatusCode, body)
	}
	p := config.Defaults().Queries.Probes["sli_evidence"]
	p.Rotate.JourneyIDs = api.JourneyIDs()
	r := do(t, base, config.QueryAuth{}, p)
	if r.Outcome != probes.OutcomeSuccess {
		t.Fatalf("%s %v", r.Outcome, r.Err)
	}
	recs := api.Records()
	for deadline := time.Now().Add(10 * time.Second); len(recs) < 2 && time.Now().Before(deadline); recs = api.Records() {
		time.Sleep(time.Millisecond) // the server records just after the client has its answer
	}
	// Each request is recorded once its answer is flushed, so the two may be
	// recorded in either order.
	var probe []testbed.APIRecord
	for _, rec := range recs {
		if rec.ID == r.RequestID {
			probe = append(probe, rec)
		}
	}
	if len(recs) != 2 || len(probe) != 1 || probe[0].Endpoint != "sli_evidence" || probe[0].Status != 200 {
		t.Errorf("records %+v, want the probe's request %s once, as sli_evidence 200", recs, r.RequestID)
	}
}
