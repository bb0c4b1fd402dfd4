package testbed

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// APIProfile is how the reference API behaves: a latency distribution per
// endpoint, and faults. It can be changed while the API serves (SetProfile,
// Stall, Resume); a change applies to requests that arrive after it, except
// Stalled, which also holds requests already waiting.
type APIProfile struct {
	SLI Latency `json:"sli"`
	// Evidence is added to SLI when include_evidence=true: the vector search.
	Evidence Latency `json:"evidence"`
	Journeys Latency `json:"journeys"`
	Health   Latency `json:"health"`
	// Percentages (0-100) of requests, on every endpoint, answered with
	// ErrorStatus (default 500), never answered (held until the client gives
	// up), answered 200 with a body cut short mid-JSON, or 200 with an empty
	// body.
	ErrorPct     float64 `json:"error_pct"`
	ErrorStatus  int     `json:"error_status"`
	TimeoutPct   float64 `json:"timeout_pct"`
	MalformedPct float64 `json:"malformed_pct"`
	EmptyPct     float64 `json:"empty_pct"`
	// Stalled holds every request until Resume, as a stuck backend does.
	Stalled bool `json:"stalled"`
}

// Latency is a uniform distribution over [Base-Jitter, Base+Jitter], clamped
// at zero.
type Latency struct {
	Base   time.Duration `json:"base"`
	Jitter time.Duration `json:"jitter"`
}

// MarshalJSON writes durations as strings ("200ms").
func (l Latency) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"base": l.Base.String(), "jitter": l.Jitter.String()})
}

// UnmarshalJSON reads durations as strings; fields left out keep their value.
func (l *Latency) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("latency: want {\"base\": \"200ms\", \"jitter\": \"20ms\"}: %w", err)
	}
	for k, v := range m {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("latency %s: %w", k, err)
		}
		switch k {
		case "base":
			l.Base = d
		case "jitter":
			l.Jitter = d
		default:
			return fmt.Errorf("latency: unknown field %q", k)
		}
	}
	return nil
}

func (l Latency) draw() time.Duration {
	d := l.Base
	if l.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*l.Jitter)+1)) - l.Jitter
	}
	return max(d, 0)
}

// DefaultAPIProfile is what `slo-canary testbed` and `demo` serve: plausible
// latencies, evidence well within its 1 s budget, no faults.
func DefaultAPIProfile() APIProfile {
	return APIProfile{
		SLI:      Latency{Base: 120 * time.Millisecond, Jitter: 40 * time.Millisecond},
		Evidence: Latency{Base: 250 * time.Millisecond, Jitter: 50 * time.Millisecond},
		Journeys: Latency{Base: 60 * time.Millisecond, Jitter: 20 * time.Millisecond},
		Health:   Latency{Base: 2 * time.Millisecond, Jitter: time.Millisecond},
	}
}

// Validate rejects profiles the API cannot apply.
func (p APIProfile) Validate() error {
	for name, l := range map[string]Latency{"sli": p.SLI, "evidence": p.Evidence, "journeys": p.Journeys, "health": p.Health} {
		if l.Base < 0 || l.Jitter < 0 {
			return fmt.Errorf("api profile: %s latency %+v is negative", name, l)
		}
	}
	sum := 0.0
	for name, pct := range map[string]float64{"error_pct": p.ErrorPct, "timeout_pct": p.TimeoutPct, "malformed_pct": p.MalformedPct, "empty_pct": p.EmptyPct} {
		if !(pct >= 0 && pct <= 100) {
			return fmt.Errorf("api profile: %s %v is not within [0, 100]", name, pct)
		}
		sum += pct
	}
	if sum > 100 {
		return fmt.Errorf("api profile: fault percentages add up to %v, over 100", sum)
	}
	if p.ErrorStatus != 0 && (p.ErrorStatus < 400 || p.ErrorStatus > 599) {
		return fmt.Errorf("api profile: error_status %d is not a 4xx or 5xx", p.ErrorStatus)
	}
	return nil
}

// Fault names, as recorded in APIRecord.Fault and asked for by the
// X-Testbed-Fault request header.
const (
	FaultError     = "error"
	FaultTimeout   = "timeout"
	FaultMalformed = "malformed"
	FaultEmpty     = "empty"
)

// FaultHeader, on a request, forces that request's fault (one of the Fault
// names, or an HTTP status such as 503), whatever the profile says: tests
// and probes can aim a fault at one probe.
const FaultHeader = "X-Testbed-Fault"

// APIOptions configure NewAPI.
type APIOptions struct {
	Profile APIProfile
	// JWTKey, if set, makes every endpoint but /health require
	// "Authorization: Bearer <JWT>": HS256 with this key, iss Issuer, aud
	// Audience, exp in the future; 401 otherwise.
	JWTKey           []byte
	Issuer, Audience string
	TruthCap         int    // records kept, newest; default 200,000
	IDHeader         string // request header recorded as APIRecord.ID; default X-Request-Id
	// MaxHold bounds how long a timeout fault holds a request; default 2m.
	MaxHold time.Duration
}

// APIRecord is the ground truth of one request: what the server saw.
type APIRecord struct {
	ID       string `json:"id"`       // the IDHeader value
	Endpoint string `json:"endpoint"` // sli, sli_evidence, journeys, health, other
	// Start is when the handler was entered; Handling is from then until the
	// last byte of the answer was handed to the connection (written and
	// flushed). A request the client gave up on ends when it did.
	Start    time.Time     `json:"start"`
	Handling time.Duration `json:"handling"`
	Status   int           `json:"status"` // 0: the client went away first
	Fault    string        `json:"fault,omitempty"`
}

// APIStats count requests since NewAPI, exactly (the records are capped).
type APIStats struct {
	Requests     int64            `json:"requests"`
	ByEndpoint   map[string]int64 `json:"by_endpoint"`
	Faults       map[string]int64 `json:"faults"`
	Unauthorized int64            `json:"unauthorized"`
	Evicted      int64            `json:"records_evicted"`
	Stalled      bool             `json:"stalled"`
}

// API is a reference SLO-Scout backend: the endpoints the query probes call,
// with a latency profile, injected faults, an optional JWT check, and the
// server-side handling time of every request as ground truth. Safe for
// concurrent use.
type API struct {
	opts     APIOptions
	profile  atomic.Pointer[APIProfile]
	mu       sync.Mutex
	stallCh  chan struct{} // closed on resume; nil while not stalled
	services []string
	journeys map[string][]journey // service -> journeys
	bodies   map[string][2][]byte // journey id -> SLI answers without, with evidence
	health   []byte

	recMu    sync.Mutex
	records  []APIRecord // ring
	next     int
	full     bool
	evicted  int64
	requests atomic.Int64
	byEP     sync.Map // endpoint -> *atomic.Int64
	faults   sync.Map
	unauth   atomic.Int64
}

type journey struct {
	ID      string `json:"journey_id"`
	Name    string `json:"name"`
	Service string `json:"service_name"`
	Env     string `json:"environment"`
	Conf    int    `json:"confidence_score"`
}

// Services and journey names of the reference API; journey ids derive from
// them, so they are the same in every run.
var (
	apiServices     = []string{"checkout", "search", "payments"}
	apiJourneyNames = []string{"browse", "purchase", "refund"}
	apiNamespace    = uuid.MustParse("6f1c1b9e-1c55-4a5e-9a39-2f1e3b0d7c41")
)

// NewAPI builds the reference API.
func NewAPI(opts APIOptions) (*API, error) {
	if err := opts.Profile.Validate(); err != nil {
		return nil, err
	}
	if opts.TruthCap <= 0 {
		opts.TruthCap = 200000
	}
	if opts.IDHeader == "" {
		opts.IDHeader = "X-Request-Id"
	}
	if opts.MaxHold <= 0 {
		opts.MaxHold = 2 * time.Minute
	}
	if opts.Issuer == "" {
		opts.Issuer = "slo-scout"
	}
	if opts.Audience == "" {
		opts.Audience = "slo-scout-api"
	}
	a := &API{
		opts:     opts,
		services: apiServices,
		journeys: map[string][]journey{},
		bodies:   map[string][2][]byte{},
		records:  make([]APIRecord, 0, min(opts.TruthCap, 4096)),
	}
	p := opts.Profile
	a.profile.Store(&p)
	if p.Stalled {
		a.stallCh = make(chan struct{})
	}
	for _, svc := range apiServices {
		for i, name := range apiJourneyNames {
			j := journey{
				ID:   uuid.NewSHA1(apiNamespace, []byte(svc+"/"+name)).String(),
				Name: name, Service: svc, Env: "prod", Conf: 80 + 5*i,
			}
			a.journeys[svc] = append(a.journeys[svc], j)
			a.bodies[j.ID] = [2][]byte{sliBody(j, false), sliBody(j, true)}
		}
	}
	a.health, _ = json.Marshal(map[string]string{"status": "healthy", "service": "slo-scout-reference-api"})
	return a, nil
}

// sliBody is a plausible GET /api/v1/sli answer for journey j.
func sliBody(j journey, evidence bool) []byte {
	type ev struct {
		CapsuleID  string  `json:"capsule_id"`
		Template   string  `json:"template"`
		Similarity float64 `json:"similarity"`
	}
	type sli struct {
		ID         string  `json:"sli_id"`
		JourneyID  string  `json:"journey_id"`
		Name       string  `json:"name"`
		MetricType string  `json:"metric_type"`
		Query      string  `json:"promql_query"`
		Confidence float64 `json:"confidence_score"`
		Evidence   []ev    `json:"evidence,omitempty"`
	}
	var out struct {
		SLIs []sli `json:"slis"`
	}
	for i, m := range []string{"latency", "availability", "error_rate"} {
		s := sli{
			ID: uuid.NewSHA1(apiNamespace, []byte(j.ID+"/"+m)).String(), JourneyID: j.ID,
			Name: j.Service + " " + j.Name + " " + m, MetricType: m,
			Query:      fmt.Sprintf(`histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket{service=%q}[5m])) by (le))`, j.Service),
			Confidence: 0.9 - 0.1*float64(i),
		}
		if evidence {
			for k := range 5 {
				s.Evidence = append(s.Evidence, ev{
					CapsuleID: uuid.NewSHA1(apiNamespace, []byte(s.ID+"/"+strconv.Itoa(k))).String(),
					Template:  "GET /api/" + j.Name + " completed with status <*> in <*>ms", Similarity: 0.95 - 0.05*float64(k),
				})
			}
		}
		out.SLIs = append(out.SLIs, s)
	}
	b, _ := json.Marshal(out) // plain structs always marshal
	return b
}

// JourneyIDs lists the journeys the API knows, for a probe's rotation.
func (a *API) JourneyIDs() []string {
	var ids []string
	for _, svc := range a.services {
		for _, j := range a.journeys[svc] {
			ids = append(ids, j.ID)
		}
	}
	return ids
}

// Services lists the services the API knows.
func (a *API) Services() []string { return append([]string(nil), a.services...) }

// Profile returns the current profile.
func (a *API) Profile() APIProfile {
	p := *a.profile.Load()
	a.mu.Lock()
	p.Stalled = a.stallCh != nil
	a.mu.Unlock()
	return p
}

// SetProfile replaces the profile; its Stalled stalls or resumes.
func (a *API) SetProfile(p APIProfile) error {
	if err := p.Validate(); err != nil {
		return err
	}
	a.profile.Store(&p)
	if p.Stalled {
		a.Stall()
	} else {
		a.Resume()
	}
	return nil
}

// Stall holds every request, arriving or waiting, until Resume.
func (a *API) Stall() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stallCh == nil {
		a.stallCh = make(chan struct{})
	}
}

// Resume releases the requests a stall held; each then takes its latency.
func (a *API) Resume() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stallCh != nil {
		close(a.stallCh)
		a.stallCh = nil
	}
}

func (a *API) stalled() chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stallCh
}

// Records returns the retained ground truth, oldest first.
func (a *API) Records() []APIRecord {
	a.recMu.Lock()
	defer a.recMu.Unlock()
	if !a.full {
		return append([]APIRecord(nil), a.records...)
	}
	out := make([]APIRecord, 0, len(a.records))
	out = append(out, a.records[a.next:]...)
	return append(out, a.records[:a.next]...)
}

// ResetRecords forgets the retained records (the counters stay).
func (a *API) ResetRecords() {
	a.recMu.Lock()
	defer a.recMu.Unlock()
	a.records, a.next, a.full = a.records[:0], 0, false
}

func (a *API) record(r APIRecord) {
	a.recMu.Lock()
	defer a.recMu.Unlock()
	if len(a.records) < a.opts.TruthCap {
		a.records = append(a.records, r)
		return
	}
	a.records[a.next] = r
	a.next = (a.next + 1) % a.opts.TruthCap
	a.full = true
	a.evicted++
}

// Stats returns the counters.
func (a *API) Stats() APIStats {
	s := APIStats{Requests: a.requests.Load(), ByEndpoint: map[string]int64{}, Faults: map[string]int64{},
		Unauthorized: a.unauth.Load(), Stalled: a.stalled() != nil}
	a.byEP.Range(func(k, v any) bool { s.ByEndpoint[k.(string)] = v.(*atomic.Int64).Load(); return true })
	a.faults.Range(func(k, v any) bool { s.Faults[k.(string)] = v.(*atomic.Int64).Load(); return true })
	a.recMu.Lock()
	s.Evicted = a.evicted
	a.recMu.Unlock()
	return s
}

func count(m *sync.Map, key string) {
	v, _ := m.LoadOrStore(key, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Handler serves the SLO-Scout endpoints the query probes use:
//
//	GET /health
//	GET /api/v1/sli?journey_id=<uuid>&include_evidence=<bool>
//	GET /api/v1/journeys?service_name=<s>&environment=<prod|staging|dev>
//
// Errors are FastAPI's shape, {"detail": ...}; a missing or malformed
// required parameter is 422.
func (a *API) Handler() http.Handler {
	return http.HandlerFunc(a.serve)
}

// answer is what a handler decided before the profile's delay.
type answer struct {
	status int
	body   []byte
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	a.requests.Add(1)
	rec := APIRecord{ID: r.Header.Get(a.opts.IDHeader), Start: start}
	p := a.profile.Load()

	var ans answer
	var lat time.Duration
	switch {
	case r.Method != http.MethodGet:
		rec.Endpoint, ans = "other", detail(http.StatusMethodNotAllowed, "method not allowed")
	case r.URL.Path == "/health":
		rec.Endpoint, ans, lat = "health", answer{200, a.health}, p.Health.draw()
	case r.URL.Path == "/api/v1/sli":
		rec.Endpoint, lat = "sli", p.SLI.draw()
		ans = a.sli(r)
		if ev, _ := strconv.ParseBool(r.URL.Query().Get("include_evidence")); ev {
			rec.Endpoint = "sli_evidence"
			lat += p.Evidence.draw()
		}
	case r.URL.Path == "/api/v1/journeys":
		rec.Endpoint, lat = "journeys", p.Journeys.draw()
		ans = a.journeysAnswer(r)
	default:
		rec.Endpoint, ans = "other", detail(http.StatusNotFound, "not found")
	}
	count(&a.byEP, rec.Endpoint)
	if rec.Endpoint != "health" && rec.Endpoint != "other" && len(a.opts.JWTKey) > 0 {
		if err := a.checkJWT(r.Header.Get("Authorization"), start); err != nil {
			a.unauth.Add(1)
			ans, lat = detail(http.StatusUnauthorized, err.Error()), 0
		}
	}
	if rec.Endpoint != "other" && ans.status != http.StatusUnauthorized {
		rec.Fault = a.fault(p, r)
	}
	if rec.Fault != "" {
		count(&a.faults, rec.Fault)
	}

	ctx := r.Context()
	if ch := a.stalled(); ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			a.finish(rec, 0)
			return
		}
	}
	if !wait(ctx, lat) {
		a.finish(rec, 0)
		return
	}
	switch rec.Fault {
	case "":
	case FaultTimeout:
		wait(ctx, a.opts.MaxHold)
		if ctx.Err() != nil {
			a.finish(rec, 0)
			return
		}
		ans = detail(http.StatusGatewayTimeout, "held for "+a.opts.MaxHold.String())
	case FaultMalformed:
		ans.status, ans.body = 200, ans.body[:len(ans.body)/2]
	case FaultEmpty:
		ans.status, ans.body = 200, nil
	case FaultError:
		code := p.ErrorStatus
		if code == 0 {
			code = http.StatusInternalServerError
		}
		ans = detail(code, "injected error")
	default: // a status forced by the header
		code, _ := strconv.Atoi(rec.Fault)
		ans = detail(code, "injected error")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(ans.body)))
	if rec.ID != "" {
		w.Header().Set(a.opts.IDHeader, rec.ID)
	}
	w.WriteHeader(ans.status)
	w.Write(ans.body)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	a.finish(rec, ans.status)
}

func (a *API) finish(rec APIRecord, status int) {
	rec.Status = status
	rec.Handling = time.Since(rec.Start)
	a.record(rec)
}

// wait sleeps d, or until ctx ends; it reports whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// fault picks this request's fault: the header's, or one drawn from p.
func (a *API) fault(p *APIProfile, r *http.Request) string {
	if h := r.Header.Get(FaultHeader); h != "" {
		switch h {
		case FaultError, FaultTimeout, FaultMalformed, FaultEmpty:
			return h
		}
		if code, err := strconv.Atoi(h); err == nil && code >= 100 && code <= 599 {
			return h
		}
	}
	x := rand.Float64() * 100
	for _, f := range []struct {
		name string
		pct  float64
	}{{FaultError, p.ErrorPct}, {FaultTimeout, p.TimeoutPct}, {FaultMalformed, p.MalformedPct}, {FaultEmpty, p.EmptyPct}} {
		if x < f.pct {
			return f.name
		}
		x -= f.pct
	}
	return ""
}

func detail(code int, msg string) answer {
	b, _ := json.Marshal(map[string]any{"detail": map[string]string{"message": msg}})
	return answer{code, b}
}

func (a *API) sli(r *http.Request) answer {
	q := r.URL.Query()
	id := q.Get("journey_id")
	if id == "" {
		return detail(http.StatusUnprocessableEntity, "journey_id: field required")
	}
	if _, err := uuid.Parse(id); err != nil {
		return detail(http.StatusUnprocessableEntity, "journey_id: value is not a valid uuid")
	}
	if ev := q.Get("include_evidence"); ev != "" {
		if _, err := strconv.ParseBool(ev); err != nil {
			return detail(http.StatusUnprocessableEntity, "include_evidence: value could not be parsed to a boolean")
		}
	}
	b, ok := a.bodies[id]
	if !ok {
		return answer{200, []byte(`{"slis":[]}`)}
	}
	if ev, _ := strconv.ParseBool(q.Get("include_evidence")); ev {
		return answer{200, b[1]}
	}
	return answer{200, b[0]}
}

func (a *API) journeysAnswer(r *http.Request) answer {
	q := r.URL.Query()
	env := q.Get("environment")
	switch env {
	case "prod", "staging", "dev":
	case "":
		return detail(http.StatusUnprocessableEntity, "environment: field required")
	default:
		return detail(http.StatusUnprocessableEntity, "environment: value is not a valid enumeration member; permitted: 'prod', 'staging', 'dev'")
	}
	var js []journey
	if env == "prod" {
		js = a.journeys[q.Get("service_name")]
	}
	b, _ := json.Marshal(struct {
		Journeys   []journey `json:"journeys"`
		TotalCount int       `json:"total_count"`
	}{Journeys: append([]journey{}, js...), TotalCount: len(js)})
	return answer{200, b}
}

// checkJWT verifies an HS256 bearer token as SLO-Scout's backend does.
func (a *API) checkJWT(header string, now time.Time) error {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return errors.New("not authenticated: missing bearer token")
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return errors.New("invalid token: not a JWS")
	}
	enc := base64.RawURLEncoding
	mac := hmac.New(sha256.New, a.opts.JWTKey)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := enc.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return errors.New("invalid token: bad signature")
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if b, err := enc.DecodeString(parts[0]); err != nil || json.Unmarshal(b, &hdr) != nil || hdr.Alg != "HS256" {
		return errors.New("invalid token: header")
	}
	var c struct {
		Iss string `json:"iss"`
		Aud string `json:"aud"`
		Sub string `json:"sub"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}
	b, err := enc.DecodeString(parts[1])
	if err != nil || json.Unmarshal(b, &c) != nil {
		return errors.New("invalid token: claims")
	}
	switch {
	case c.Iss != a.opts.Issuer:
		return fmt.Errorf("invalid token: iss %q", c.Iss)
	case c.Aud != a.opts.Audience:
		return fmt.Errorf("invalid token: aud %q", c.Aud)
	case c.Sub == "":
		return errors.New("invalid token: no sub")
	case c.Exp <= now.Unix():
		return errors.New("invalid token: expired")
	case c.Iat > now.Unix()+60:
		return errors.New("invalid token: issued in the future")
	}
	return nil
}

// ControlHandler changes the API while it runs, beside the pipeline's
// control API:
//
//	GET  /reference-api/profile   the profile (durations as strings)
//	PUT  /reference-api/profile   change it; fields left out keep their value
//	POST /reference-api/stall     hold every request
//	POST /reference-api/resume    release them
//	GET  /reference-api/stats     counters (APIStats)
func (a *API) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /reference-api/profile", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, a.Profile())
	})
	mux.HandleFunc("PUT /reference-api/profile", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("read body: %w", err))
			return
		}
		p := a.Profile()
		if err := decodeStrict(body, &p); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if err := a.SetProfile(p); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusOK, a.Profile())
	})
	mux.HandleFunc("POST /reference-api/stall", func(w http.ResponseWriter, _ *http.Request) {
		a.Stall()
		writeJSON(w, http.StatusOK, a.Profile())
	})
	mux.HandleFunc("POST /reference-api/resume", func(w http.ResponseWriter, _ *http.Request) {
		a.Resume()
		writeJSON(w, http.StatusOK, a.Profile())
	})
	mux.HandleFunc("GET /reference-api/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, a.Stats())
	})
	return mux
}

// QueriesConfig is the queries section of a canary config aimed at this API
// at baseURL: the default SLI probes discover the API's journeys, as they
// discover a real SLO-Scout's, from its services, which the journeys probe
// rotates through. Strings are quoted with strconv.Quote, valid YAML for
// these ASCII values.
func (a *API) QueriesConfig(baseURL string) string {
	q := strconv.Quote
	list := func(vals []string) string {
		quoted := make([]string, len(vals))
		for i, v := range vals {
			quoted[i] = q(v)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	services := list(a.Services())
	var b strings.Builder
	fmt.Fprintf(&b, "queries:\n  base_url: %s\n", q(baseURL))
	fmt.Fprintf(&b, "  journey_discovery:\n    services: %s\n", services)
	fmt.Fprintf(&b, "  probes:\n    journeys:\n      rotate:\n        services: %s\n", services)
	return b.String()
}

// startAPI builds the reference API for Serve and listens for it; the caller
// serves it.
func startAPI(opts *ServeOptions, info *ServeInfo) (*http.Server, net.Listener, error) {
	listen := opts.APIListen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	profile := DefaultAPIProfile()
	if opts.APIProfile != nil {
		profile = *opts.APIProfile
	}
	api, err := NewAPI(APIOptions{Profile: profile})
	if err != nil {
		return nil, nil, fmt.Errorf("testbed: reference API: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, nil, fmt.Errorf("testbed: reference API listen %s: %w", listen, err)
	}
	info.API, info.APIURL = api, "http://"+ln.Addr().String()
	return &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second}, ln, nil
}
