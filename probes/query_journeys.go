package probes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/slo-scout/slo-canary/config"
)

// errNoJourneys is the error of an OutcomeNoJourneys result.
var errNoJourneys = errors.New("no journey id to query: journey discovery has found none (see queries.journey_discovery)")

// Journey discovery results, the result label of the discovery counter.
const (
	DiscoveryFound = "found" // every service answered; at least one journey
	DiscoveryNone  = "none"  // every service answered; no journey at all
	DiscoveryError = "error" // a request failed; the ids found before are kept
)

// DiscoveryResults are the result label values, each initialised at zero.
var DiscoveryResults = []string{DiscoveryFound, DiscoveryNone, DiscoveryError}

// discoveryRetry is how often discovery asks again while it knows no
// journey, unless the configured refresh is shorter.
const discoveryRetry = 30 * time.Second

// JourneyDiscoveryOptions are what journey discovery needs beyond its own
// configuration.
type JourneyDiscoveryOptions struct {
	BaseURL string
	Auth    config.QueryAuth
	Logger  *slog.Logger
	// Observe, if set, is called after every refresh with its result (one of
	// DiscoveryResults) and how many journey ids are known after it.
	Observe func(result string, known int)
}

// JourneyDiscovery asks SLO-Scout's journeys endpoint which journeys exist,
// for each configured service, and keeps the union of their ids for the
// probes that rotate through discovered journeys. A failed refresh keeps
// the ids found before: journeys change seldom, and an SLI probe that still
// queries a real journey still measures. An answer with no journeys clears
// them.
type JourneyDiscovery struct {
	cfg       config.JourneyDiscovery
	urls      []string // one per service
	client    *http.Client
	transport *http.Transport
	bearer    func() (string, error)
	log       *slog.Logger
	observe   func(string, int)
	ids       atomic.Pointer[[]string]
	first     chan struct{} // closed once the first refresh is done
	firstDone atomic.Bool
}

// NewJourneyDiscovery builds journey discovery; nothing is sent until
// Refresh or Run.
func NewJourneyDiscovery(cfg config.JourneyDiscovery, opts JourneyDiscoveryOptions) (*JourneyDiscovery, error) {
	fail := func(key string, err error) (*JourneyDiscovery, error) {
		return nil, fmt.Errorf("queries.journey_discovery.%s: %w", key, err)
	}
	if cfg.Timeout <= 0 {
		return fail("timeout", fmt.Errorf("must be positive, got %s", cfg.Timeout))
	}
	if cfg.Refresh <= 0 {
		return fail("refresh", fmt.Errorf("must be positive, got %s", cfg.Refresh))
	}
	if len(cfg.Services) == 0 {
		return fail("services", errors.New("empty"))
	}
	base, err := url.Parse(opts.BaseURL)
	if err != nil {
		return fail("base_url", err)
	}
	u, err := config.JoinURL(base, cfg.Path)
	if err != nil {
		return fail("path", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &JourneyDiscovery{cfg: cfg, log: opts.Logger, observe: opts.Observe, first: make(chan struct{})}
	for _, svc := range cfg.Services {
		q := url.Values{"service_name": {svc}, "environment": {cfg.Environment}}
		u.RawQuery = q.Encode()
		d.urls = append(d.urls, u.String())
	}
	if d.bearer, err = newBearer(opts.Auth, opts.Logger); err != nil {
		return fail("auth", err)
	}
	d.transport = &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 1, IdleConnTimeout: 90 * time.Second}
	d.client = &http.Client{
		Transport:     d.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	d.ids.Store(&[]string{})
	return d, nil
}

// IDs returns the journey ids known now, in the order found; the caller must
// not change the slice. Safe for concurrent use.
func (d *JourneyDiscovery) IDs() []string { return *d.ids.Load() }

// First is closed once the first refresh is done, whatever its result.
func (d *JourneyDiscovery) First() <-chan struct{} { return d.first }

// Refresh asks for every service's journeys once, bounded by the configured
// timeout, and keeps what they hold (see JourneyDiscovery). It returns the
// result and, for DiscoveryError, why.
func (d *JourneyDiscovery) Refresh(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	var ids []string
	var errs []error
	for i, u := range d.urls {
		got, err := d.fetch(ctx, u)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", d.cfg.Services[i], err))
			continue
		}
		for _, id := range got {
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	result, err := DiscoveryNone, errors.Join(errs...)
	switch {
	case err != nil:
		result = DiscoveryError
	case len(ids) > 0:
		result = DiscoveryFound
	}
	if err == nil {
		d.ids.Store(&ids)
	}
	if d.observe != nil {
		d.observe(result, len(d.IDs()))
	}
	if d.firstDone.CompareAndSwap(false, true) {
		close(d.first)
	}
	return result, err
}

// fetch returns the journey ids of one journeys answer.
func (d *JourneyDiscovery) fetch(ctx context.Context, u string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "slo-canary")
	if d.bearer != nil {
		tok, err := d.bearer()
		if err != nil {
			return nil, fmt.Errorf("authorization: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, truncate(string(bytes.TrimSpace(body)), 200))
	}
	if len(body) > maxBodyBytes {
		return nil, fmt.Errorf("body over %d bytes", maxBodyBytes)
	}
	var ans struct {
		Journeys *[]struct {
			ID string `json:"journey_id"`
		} `json:"journeys"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("not a journeys answer: %w", err)
	}
	if ans.Journeys == nil {
		return nil, errors.New(`not a journeys answer: no "journeys" field`)
	}
	var ids []string
	for _, j := range *ans.Journeys {
		if id := strings.TrimSpace(j.ID); id != "" {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Run refreshes at once, then every refresh interval (every 30 s while no
// journey is known), until ctx is cancelled. It logs what changes: the
// number of journeys found, and failures (once until the next success).
func (d *JourneyDiscovery) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	failing := false
	known := -1
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		result, err := d.Refresh(ctx)
		if ctx.Err() != nil {
			return nil
		}
		n := len(d.IDs())
		switch {
		case err != nil && !failing:
			d.log.Warn("journey discovery failed; keeping the journeys found before", "services", d.cfg.Services,
				"environment", d.cfg.Environment, "journeys", n, "err", err)
		case err == nil && n != known:
			attrs := []any{"services", d.cfg.Services, "environment", d.cfg.Environment, "journeys", n}
			if result == DiscoveryNone {
				d.log.Warn("journey discovery found no journeys: the probes that use them are not measuring", attrs...)
			} else {
				d.log.Info("journeys discovered", attrs...)
			}
			known = n
		}
		failing = err != nil
		next := d.cfg.Refresh
		if n == 0 {
			next = min(next, discoveryRetry)
		}
		t.Reset(next)
	}
}

// Close releases idle connections; Run and Refresh must have returned.
func (d *JourneyDiscovery) Close() { d.transport.CloseIdleConnections() }

// String names what is asked, for logs and errors.
func (d *JourneyDiscovery) String() string {
	return d.cfg.Path + " for " + strconv.Quote(strings.Join(d.cfg.Services, ",")) + " in " + d.cfg.Environment
}
