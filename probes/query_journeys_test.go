package probes_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

func discoveryConfig(services ...string) config.JourneyDiscovery {
	d := config.Defaults().Queries.JourneyDiscovery
	d.Services = services
	d.Timeout = 5 * time.Second
	return d
}

// TestJourneyDiscovery asks the reference API for the journeys of its
// services (with minted JWTs, as the probes send) and of a service it does
// not know.
func TestJourneyDiscovery(t *testing.T) {
	t.Parallel()
	api, base := refAPI(t, testbed.APIOptions{JWTKey: []byte("k3y"), Issuer: "slo-scout", Audience: "slo-scout-api"})
	auth := config.Defaults().Queries.Auth
	auth.JWTSigningKey = "k3y"

	for _, tc := range []struct {
		name     string
		services []string
		result   string
		want     []string
	}{
		{"every service", api.Services(), probes.DiscoveryFound, api.JourneyIDs()},
		{"unknown and known", []string{"nobody", api.Services()[1], api.Services()[1]}, probes.DiscoveryFound, api.JourneyIDs()[3:6]},
		{"unknown", []string{"nobody"}, probes.DiscoveryNone, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var observed []string
			d, err := probes.NewJourneyDiscovery(discoveryConfig(tc.services...), probes.JourneyDiscoveryOptions{
				BaseURL: base, Auth: auth, Observe: func(r string, n int) { observed = append(observed, r) },
			})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			result, err := d.Refresh(context.Background())
			if err != nil || result != tc.result {
				t.Fatalf("Refresh = %s, %v; want %s", result, err, tc.result)
			}
			if got := d.IDs(); !slices.Equal(got, tc.want) {
				t.Errorf("ids %q, want %q", got, tc.want)
			}
			if !slices.Equal(observed, []string{tc.result}) {
				t.Errorf("observed %q", observed)
			}
			select {
			case <-d.First():
			default:
				t.Error("First not closed after a refresh")
			}
		})
	}
	if s := api.Stats(); s.Unauthorized != 0 {
		t.Errorf("%d requests refused by the API's JWT check", s.Unauthorized)
	}
}

// TestJourneyDiscoveryKeepsOnError: a failed refresh keeps the journeys
// found before; an answer with none clears them.
func TestJourneyDiscoveryKeepsOnError(t *testing.T) {
	t.Parallel()
	var mode atomic.Value // "found", "error", "garbage", "none"
	mode.Store("found")
	var asked []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.RequestURI())
		mu.Unlock()
		switch mode.Load() {
		case "found":
			w.Write([]byte(`{"journeys":[{"journey_id":"j1","name":"a"},{"journey_id":"j2"},{"journey_id":""}],"total_count":3}`))
		case "error":
			http.Error(w, `{"detail":"down"}`, http.StatusServiceUnavailable)
		case "garbage":
			w.Write([]byte(`{"items":[]}`))
		case "none":
			w.Write([]byte(`{"journeys":[],"total_count":0}`))
		}
	}))
	defer srv.Close()
	cfg := discoveryConfig("checkout")
	cfg.Environment = "staging"
	d, err := probes.NewJourneyDiscovery(cfg, probes.JourneyDiscoveryOptions{BaseURL: srv.URL + "/prefix"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, step := range []struct {
		mode, result string
		errHas       string
		want         []string
	}{
		{"found", probes.DiscoveryFound, "", []string{"j1", "j2"}},
		{"error", probes.DiscoveryError, "status 503", []string{"j1", "j2"}},
		{"garbage", probes.DiscoveryError, `no "journeys" field`, []string{"j1", "j2"}},
		{"none", probes.DiscoveryNone, "", nil},
		{"error", probes.DiscoveryError, "status 503", nil},
	} {
		mode.Store(step.mode)
		result, err := d.Refresh(context.Background())
		if result != step.result || (step.errHas == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), step.errHas) {
			t.Errorf("%s: Refresh = %s, %v; want %s with an error containing %q", step.mode, result, err, step.result, step.errHas)
		}
		if got := d.IDs(); !slices.Equal(got, step.want) {
			t.Errorf("%s: ids %q, want %q", step.mode, got, step.want)
		}
	}
	if want := "/prefix/api/v1/journeys?environment=staging&service_name=checkout"; asked[0] != want {
		t.Errorf("asked %s, want %s", asked[0], want)
	}

	// A closed port is an error too, and Run stops with its context.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	d2, err := probes.NewJourneyDiscovery(cfg, probes.JourneyDiscoveryOptions{BaseURL: closed})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d2.Run(ctx) }()
	<-d2.First()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if len(d2.IDs()) != 0 {
		t.Errorf("ids from a closed port: %q", d2.IDs())
	}
}

// TestHTTPQueryDiscoveredJourneys: a probe that uses {journey_id} and lists
// none rotates through the ids it is given, and sends nothing while there
// are none (no_journeys).
func TestHTTPQueryDiscoveredJourneys(t *testing.T) {
	t.Parallel()
	api, base := refAPI(t, testbed.APIOptions{})
	var ids atomic.Pointer[[]string]
	ids.Store(&[]string{})
	p := httpProbe(func(p *config.QueryProbe) { p.Rotate.JourneyIDs = nil })
	if !p.DiscoversJourneys() {
		t.Fatal("the probe does not discover its journeys")
	}
	q, err := probes.NewQuery(context.Background(), "sli", p, probes.QueryOptions{BaseURL: base, Journeys: func() []string { return *ids.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()

	r := q.Do(context.Background(), 0)
	if r.Outcome != probes.OutcomeNoJourneys || r.Err == nil || r.Status != 0 {
		t.Fatalf("without journeys: %+v", r)
	}
	if n := api.Stats().Requests; n != 0 {
		t.Fatalf("%d requests sent without a journey", n)
	}

	known := api.JourneyIDs()[:2]
	ids.Store(&known)
	var used []string
	for seq := range uint64(4) {
		r := q.Do(context.Background(), seq)
		if r.Outcome != probes.OutcomeSuccess || r.TargetName != "journey_id" {
			t.Fatalf("seq %d: %+v", seq, r)
		}
		used = append(used, r.TargetValue)
	}
	if want := []string{known[0], known[1], known[0], known[1]}; !slices.Equal(used, want) {
		t.Errorf("journeys %q, want %q", used, want)
	}

	// Without a source at all, the same: nothing sent.
	q2, err := probes.NewQuery(context.Background(), "sli", p, probes.QueryOptions{BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if r := q2.Do(context.Background(), 0); r.Outcome != probes.OutcomeNoJourneys {
		t.Errorf("without a source: %+v", r)
	}
	if n := api.Stats().Requests; n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
}
