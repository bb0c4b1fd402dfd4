package probes_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

// BenchmarkHTTPQuery measures what one HTTP probe request costs the client
// (CPU and allocations), against a peer in the same run: a bare net/http GET
// of the same URL whose body is read and dropped. The server is the
// reference API answering at once, with the evidence body (the largest).
//
//	go test -run '^$' -bench HTTPQuery -benchmem ./probes/
func BenchmarkHTTPQuery(b *testing.B) {
	api, err := testbed.NewAPI(testbed.APIOptions{Profile: testbed.APIProfile{}, TruthCap: 1})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	p := config.Defaults().Queries.Probes["sli_evidence"]
	p.Rotate.JourneyIDs = api.JourneyIDs()[:1]
	p.Timeout = 5 * time.Second
	q, err := probes.NewQuery(context.Background(), "bench", p, probes.QueryOptions{BaseURL: srv.URL, Clients: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	url := srv.URL + "/api/v1/sli?journey_id=" + api.JourneyIDs()[0] + "&include_evidence=true"

	b.Run("probe", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if r := q.Do(context.Background(), uint64(i)); r.Outcome != probes.OutcomeSuccess {
				b.Fatalf("%s: %v", r.Outcome, r.Err)
			}
		}
	})
	b.Run("peer-net-http-get", func(b *testing.B) {
		b.ReportAllocs()
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer c.CloseIdleConnections()
		for range b.N {
			resp, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
