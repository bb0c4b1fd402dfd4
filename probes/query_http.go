package probes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slo-scout/slo-canary/config"
)

// maxBodyBytes bounds what a probe reads of an answer: more is bad_body.
// SLI answers with evidence are the largest, well under this.
const maxBodyBytes = 16 << 20

// HTTPQuery times one request to SLO-Scout's HTTP API and checks its status
// and body.
type HTTPQuery struct {
	name      string
	method    string
	base      *url.URL
	path      string
	params    [][2]string // name, value template
	headers   [][2]string
	rot       rotation
	expect    [][2]int // status ranges
	jsonPath  []string
	timeout   time.Duration
	client    *http.Client
	transport *http.Transport
	bearer    func() (string, error)
	seq       atomic.Uint64 // request ids
	staticURL string        // the URL when nothing in it rotates
}

// NewHTTPQuery builds an HTTP query probe. It checks what validation checks,
// so that a Config built in code fails here rather than at the first request.
func NewHTTPQuery(name string, cfg config.QueryProbe, opts QueryOptions) (*HTTPQuery, error) {
	q := &HTTPQuery{
		name:    name,
		method:  cfg.Method,
		path:    cfg.Path,
		timeout: cfg.Timeout,
	}
	fail := func(key string, err error) (*HTTPQuery, error) {
		return nil, fmt.Errorf("query probe %q: %s: %w", name, key, err)
	}
	base, err := url.Parse(opts.BaseURL)
	if err != nil {
		return fail("base_url", err)
	}
	q.base = base
	if !slices.Contains(config.QueryMethods, cfg.Method) {
		return fail("method", fmt.Errorf("unknown method %q", cfg.Method))
	}
	if q.timeout <= 0 {
		return fail("timeout", fmt.Errorf("must be positive, got %s", q.timeout))
	}
	var used []string
	addUsed := func(key, s string) error {
		names, err := config.TemplatePlaceholders(s)
		if err != nil {
			return fmt.Errorf("query probe %q: %s: %w", name, key, err)
		}
		for _, n := range names {
			if !slices.Contains(used, n) {
				used = append(used, n)
			}
		}
		return nil
	}
	if err := addUsed("path", cfg.Path); err != nil {
		return nil, err
	}
	if _, err := config.JoinURL(base, config.FillPlaceholders(cfg.Path, nil)); err != nil {
		return fail("path", err)
	}
	for _, s := range cfg.Params {
		n, v, err := config.ParseParam(s)
		if err != nil {
			return fail("params", err)
		}
		if err := addUsed("params", s); err != nil {
			return nil, err
		}
		q.params = append(q.params, [2]string{url.QueryEscape(n), v})
	}
	for _, s := range cfg.Headers {
		n, v, err := config.ParseHeader(s)
		if err != nil {
			return fail("headers", err)
		}
		if err := addUsed("headers", s); err != nil {
			return nil, err
		}
		q.headers = append(q.headers, [2]string{http.CanonicalHeaderKey(n), v})
	}
	for _, s := range cfg.ExpectStatus {
		lo, hi, err := config.ParseStatus(s)
		if err != nil {
			return fail("expect_status", err)
		}
		q.expect = append(q.expect, [2]int{lo, hi})
	}
	if len(q.expect) == 0 {
		return fail("expect_status", errors.New("empty"))
	}
	if cfg.ExpectJSON != "" {
		q.jsonPath = strings.Split(cfg.ExpectJSON, ".")
	}
	q.rot = newRotation(cfg.Rotate, used, opts.Journeys)
	if len(used) == 0 {
		u, err := q.url(nil)
		if err != nil {
			return fail("path", err)
		}
		q.staticURL = u
	}
	bearer, err := newBearer(opts.Auth, opts.Logger)
	if err != nil {
		return fail("auth", err)
	}
	q.bearer = bearer

	// One idle connection per client: Go's default of two per host would
	// make a 200-client run open and close connections all the time, and
	// time its own handshakes instead of the server.
	q.transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: q.timeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          opts.Clients,
		MaxIdleConnsPerHost:   opts.Clients,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   q.timeout,
		ExpectContinueTimeout: time.Second,
	}
	q.client = &http.Client{
		Transport: q.transport,
		// A redirect is reported as it is, not followed: an API that starts
		// redirecting (to a login page, say) has changed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return q, nil
}

// url builds the request URL with the placeholder values vals. Parameters
// keep their configured order.
func (q *HTTPQuery) url(vals map[string]string) (string, error) {
	u, err := config.JoinURL(q.base, config.FillPlaceholders(q.path, vals))
	if err != nil {
		return "", err
	}
	if len(q.params) > 0 {
		var b strings.Builder
		for i, p := range q.params {
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(p[0])
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(config.FillPlaceholders(p[1], vals)))
		}
		u.RawQuery = b.String()
	}
	return u.String(), nil
}

// Do sends one request. See QueryProbe.
func (q *HTTPQuery) Do(ctx context.Context, seq uint64) QueryResult {
	vals, ok := q.rot.values(seq)
	if !ok {
		now := time.Now()
		return q.fail(ctx, QueryResult{Sent: now, Done: now}, OutcomeNoJourneys, errNoJourneys)
	}
	res := QueryResult{
		RequestID:  q.name + "-" + requestIDPrefix + "-" + strconv.FormatUint(q.seq.Add(1), 10),
		TargetName: q.rot.first,
	}
	if q.rot.first != "" {
		res.TargetValue = vals[q.rot.first]
	}
	u := q.staticURL
	if u == "" {
		var err error
		if u, err = q.url(vals); err != nil {
			// A rotated value made an unparseable URL: the probe's fault, not
			// the server's, but it must still show.
			res.Sent, res.Done = time.Now(), time.Now()
			return q.fail(ctx, res, OutcomeBadBody, fmt.Errorf("build URL: %w", err))
		}
	}
	rctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, q.method, u, nil)
	if err != nil {
		res.Sent, res.Done = time.Now(), time.Now()
		return q.fail(ctx, res, OutcomeBadBody, fmt.Errorf("build request: %w", err))
	}
	for _, h := range q.headers {
		req.Header.Set(h[0], config.FillPlaceholders(h[1], vals))
	}
	req.Header.Set("X-Request-Id", res.RequestID)
	req.Header.Set("User-Agent", "slo-canary")
	if q.bearer != nil {
		tok, err := q.bearer()
		if err != nil {
			res.Sent, res.Done = time.Now(), time.Now()
			return q.fail(ctx, res, OutcomeConnect, fmt.Errorf("authorization: %w", err))
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}

	res.Sent = time.Now()
	resp, err := q.client.Do(req)
	if err != nil {
		res.Done = time.Now()
		return q.fail(ctx, res, transportOutcome(err), err)
	}
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer putBodyBuffer(buf)
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, maxBodyBytes+1))
	res.Done = time.Now()
	resp.Body.Close()
	res.Status = resp.StatusCode
	body := buf.Bytes()
	if err != nil {
		return q.fail(ctx, res, transportOutcome(err), fmt.Errorf("read body: %w", err))
	}
	if !q.expected(resp.StatusCode) {
		switch {
		case resp.StatusCode >= 500:
			return q.fail(ctx, res, OutcomeHTTP5xx, fmt.Errorf("status %d", resp.StatusCode))
		case resp.StatusCode >= 400:
			return q.fail(ctx, res, OutcomeHTTP4xx, fmt.Errorf("status %d", resp.StatusCode))
		default:
			return q.fail(ctx, res, OutcomeBadBody, fmt.Errorf("unexpected status %d", resp.StatusCode))
		}
	}
	if len(body) > maxBodyBytes {
		return q.fail(ctx, res, OutcomeBadBody, fmt.Errorf("body over %d bytes", maxBodyBytes))
	}
	if err := CheckJSON(body, q.jsonPath); err != nil {
		return q.fail(ctx, res, OutcomeBadBody, err)
	}
	res.Outcome = OutcomeSuccess
	return res
}

// bodyBuffers keep answers' buffers between requests, so that a concurrency
// run does not allocate (and collect) one per request.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBodyBuffer returns buf to the pool unless one large answer grew it:
// that memory goes back to the heap.
func putBodyBuffer(buf *bytes.Buffer) {
	if buf.Cap() > 1<<20 {
		return
	}
	buf.Reset()
	bodyBuffers.Put(buf)
}

// fail sets a failed outcome, unless the caller's context ended: then the
// request is canceled, not failed.
func (q *HTTPQuery) fail(ctx context.Context, res QueryResult, outcome string, err error) QueryResult {
	if ctx.Err() != nil {
		outcome = OutcomeCanceled
	}
	res.Outcome, res.Err = outcome, err
	return res
}

func (q *HTTPQuery) expected(code int) bool {
	for _, r := range q.expect {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}

// transportOutcome classifies an error of the client or of reading the body.
func transportOutcome(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return OutcomeTimeout
	}
	return OutcomeConnect
}

// Close releases idle connections.
func (q *HTTPQuery) Close() { q.transport.CloseIdleConnections() }

// CheckJSON checks that body is JSON and that the value at path (object
// fields and array indexes) is present and non-empty: not null, "", [] or
// {}. An empty path checks nothing, not even that body is JSON. Only the
// values along the path are decoded; the rest is validated, not built, so
// memory stays in proportion to the body whatever its shape.
func CheckJSON(body []byte, path []string) error {
	if len(path) == 0 {
		return nil
	}
	raw := json.RawMessage(body)
	for i, seg := range path {
		at := strings.Join(path[:i], ".")
		if at == "" {
			at = "the body"
		}
		v := bytes.TrimLeft(raw, " \t\r\n")
		switch {
		case len(v) > 0 && v[0] == '{':
			var m map[string]json.RawMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				return fmt.Errorf("%s is not JSON: %w", at, err)
			}
			next, ok := m[seg]
			if !ok {
				return fmt.Errorf("%s has no field %q", at, seg)
			}
			raw = next
		case len(v) > 0 && v[0] == '[':
			var a []json.RawMessage
			if err := json.Unmarshal(raw, &a); err != nil {
				return fmt.Errorf("%s is not JSON: %w", at, err)
			}
			idx, err := strconv.Atoi(seg)
			if err != nil {
				return fmt.Errorf("%s is an array, and %q is not an index", at, seg)
			}
			if idx < 0 || idx >= len(a) {
				return fmt.Errorf("%s has %d elements, no index %d", at, len(a), idx)
			}
			raw = a[idx]
		default:
			if i == 0 && !json.Valid(body) {
				if len(bytes.TrimSpace(body)) == 0 {
					return errors.New("the body is empty")
				}
				return errors.New("the body is not JSON")
			}
			return fmt.Errorf("%s is not an object or array, so it has no %q", at, seg)
		}
	}
	if emptyJSON(raw) {
		return fmt.Errorf("%s is empty (%s)", strings.Join(path, "."), bytes.TrimSpace(raw))
	}
	return nil
}

// emptyJSON reports whether a valid JSON value is null, "", [] or {}.
func emptyJSON(v json.RawMessage) bool {
	t := bytes.TrimSpace(v)
	if len(t) == 0 || string(t) == "null" || string(t) == `""` {
		return true
	}
	if t[0] == '[' || t[0] == '{' {
		inner := bytes.TrimSpace(t[1 : len(t)-1])
		return len(inner) == 0
	}
	return false
}
