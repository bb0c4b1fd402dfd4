package queries

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/probes"
	"github.com/slo-scout/slo-canary/testbed"
)

// overheadProfile answers in 50 ms +/- 5 ms: at 2,000 requests/s that is
// about 100 requests in flight, so that 200 clients carry the rate with room
// to spare (at 100 ms they would be exactly saturated, and requests would
// queue for a client: then the wait counts, by design, and is not overhead).
var overheadProfile = testbed.APIProfile{SLI: testbed.Latency{Base: 50 * time.Millisecond, Jitter: 5 * time.Millisecond}}

const (
	benchClients = 200
	benchRate    = 2000
)

// benchDuration gives 10,000 requests per tool and iteration.
var benchDuration = 5 * time.Second

// BenchmarkQueryOverhead measures the client-side overhead slo-canary adds to
// the latency it reports, against vegeta (its library, v12.13.0) as a peer at
// the same rate, clients and server, and against the floor of this machine (a
// bare TCP client, see floorOverhead): 200 concurrent clients, 2,000
// requests/s, the reference API answering in 50 ms +/- 5 ms, in a process of
// its own. Overhead is, per request, the measured latency minus the server's
// handling time (its ground truth), matched by request id. It includes what
// no client can avoid (loopback, scheduling, the server's HTTP stack); the
// floor measures that, and canary_over_floor_p99_us is what slo-canary adds
// to it. Each iteration runs slo-canary, vegeta, then the floor, so that all
// see the same machine; -count repeats the set.
//
// Run it alone, without -race:
//
//	go test -run '^$' -bench QueryOverhead -benchtime 1x -count 5 ./queries/
//
// Reported in microseconds: canary_p50/p99/max_us, slo-canary's open-loop
// latency (what it reports: from when each request was due, or from when its
// waiting client woke); canary_send_p50/p99_us, from the moment the request
// was handed to the HTTP client (vegeta's own starting point);
// vegeta_p50/p99/max_us; floor_p50/p99/max_us; canary_over_floor_p99_us;
// p99_ratio, canary_p99_us over vegeta_p99_us;
// canary_cpu_us/req and vegeta_cpu_us/req, the client process's CPU time per
// request while each tool ran.
// canary_late counts requests that waited for a free client (0 expected),
// failed counts requests of any tool that failed or went unmatched.
func BenchmarkQueryOverhead(b *testing.B) {
	for range b.N {
		cpu0 := cpuTime(b)
		canary, send, late, failed := canaryOverhead(b)
		cpu1 := cpuTime(b)
		peer, peerFailed := vegetaOverhead(b)
		cpu2 := cpuTime(b)
		floor, floorFailed := floorOverhead(b)
		// The server runs in another process: this is the client's CPU.
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(len(canary)), "canary_cpu_us/req")
		b.ReportMetric(float64((cpu2-cpu1).Microseconds())/float64(len(peer)), "vegeta_cpu_us/req")
		report(b, "canary_", canary)
		report(b, "canary_send_", send)
		report(b, "vegeta_", peer)
		report(b, "floor_", floor)
		b.ReportMetric(quantile(canary, 0.99)/quantile(peer, 0.99), "p99_ratio")
		// What slo-canary adds beyond the machine's own floor.
		b.ReportMetric(1e6*(quantile(canary, 0.99)-quantile(floor, 0.99)), "canary_over_floor_p99_us")
		b.ReportMetric(float64(late), "canary_late")
		b.ReportMetric(float64(failed+peerFailed+floorFailed), "failed")
	}
}

// canaryOverhead runs slo-canary's open-loop load and returns the per-request
// overheads (sorted, seconds): open-loop and from send.
func canaryOverhead(b *testing.B) (open, sent []float64, late, failed int) {
	truthOf, url, journeys := benchAPI(b, "X-Request-Id")
	c := config.Defaults()
	c.Queries.BaseURL = url
	p := c.Queries.Probes["sli"]
	p.Rotate.JourneyIDs = journeys
	c.Queries.Probes["sli"] = p
	probe := newProbe(b, &c, "sli", benchClients)
	var log sampleLog
	log.samples = make([]Sample, 0, benchRate*int(benchDuration/time.Second))
	l := Load{Clients: benchClients, Rate: benchRate, Duration: benchDuration, MaxWait: 10 * time.Second, WarmUp: true}
	if err := RunLoad(context.Background(), probe, l, log.observe); err != nil {
		b.Fatal(err)
	}
	var ids []string
	for _, s := range log.samples {
		if s.Result.Outcome == probes.OutcomeSuccess {
			ids = append(ids, s.Result.RequestID)
		}
	}
	truth := truthFrom(b, truthOf, ids)
	for _, s := range log.samples {
		rec, ok := truth[s.Result.RequestID]
		if s.Result.Outcome != probes.OutcomeSuccess || !ok {
			failed++
			continue
		}
		if s.Start.Equal(s.Due) && s.Result.Sent.Sub(s.Due) > time.Millisecond {
			late++
		}
		open = append(open, (s.Latency() - rec.Handling).Seconds())
		sent = append(sent, (s.ServiceTime() - rec.Handling).Seconds())
	}
	slices.Sort(open)
	slices.Sort(sent)
	return open, sent, late, failed
}

// floorOverhead is the floor any HTTP client meets on this machine: the
// same open-loop schedule, clients and server, sent by the least a client
// can do: one kept-alive TCP connection per client, a request written
// from a prepared buffer, the answer's status line, headers and
// Content-Length body read off a bufio.Reader, no net/http. What remains
// is the kernel's loopback, the scheduler and the server's own HTTP stack.
func floorOverhead(b *testing.B) (over []float64, failed int) {
	truthOf, base, journeys := benchAPI(b, "X-Request-Id")
	host := strings.TrimPrefix(base, "http://")
	total := benchRate * int(benchDuration/time.Second)
	type sample struct {
		id      string
		latency time.Duration
		ok      bool
	}
	samples := make([]sample, total)
	conns := make([]net.Conn, benchClients)
	for i := range conns {
		c, err := net.Dial("tcp", host)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	do := func(c net.Conn, r *bufio.Reader, buf []byte, k int) ([]byte, bool) {
		buf = fmt.Appendf(buf[:0], "GET /api/v1/sli?journey_id=%s&include_evidence=false HTTP/1.1\r\nHost: %s\r\nX-Request-Id: floor-%d\r\n\r\n",
			journeys[k%len(journeys)], host, k)
		if _, err := c.Write(buf); err != nil {
			return buf, false
		}
		status, err := r.ReadSlice('\n')
		if err != nil || !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
			return buf, false
		}
		n := 0
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return buf, false
			}
			if len(line) <= 2 {
				break
			}
			if v, ok := bytes.CutPrefix(bytes.ToLower(line), []byte("content-length:")); ok {
				n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		_, err = r.Discard(n)
		return buf, err == nil
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			r := bufio.NewReaderSize(c, 64<<10)
			buf := make([]byte, 0, 512)
			for {
				k := int(next.Add(1) - 1)
				if k >= total {
					return
				}
				due := start.Add(time.Duration(float64(k) / benchRate * float64(time.Second)))
				from := due
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
					from = time.Now()
				}
				var ok bool
				buf, ok = do(c, r, buf, k)
				samples[k] = sample{id: "floor-" + strconv.Itoa(k), latency: time.Since(from), ok: ok}
			}
		})
	}
	wg.Wait()
	var ids []string
	for _, s := range samples {
		if s.ok {
			ids = append(ids, s.id)
		}
	}
	truth := truthFrom(b, truthOf, ids)
	for _, s := range samples {
		rec, ok := truth[s.id]
		if !s.ok || !ok {
			failed++
			continue
		}
		over = append(over, (s.latency - rec.Handling).Seconds())
	}
	slices.Sort(over)
	return over, failed
}

// vegetaOverhead runs vegeta at the same rate, clients and server.
func vegetaOverhead(b *testing.B) (over []float64, failed int) {
	truthOf, url, journeys := benchAPI(b, "X-Vegeta-Seq")
	seq := 0
	targeter := func(t *vegeta.Target) error {
		t.Method = http.MethodGet
		t.URL = url + "/api/v1/sli?journey_id=" + journeys[seq%len(journeys)] + "&include_evidence=false"
		seq++
		return nil
	}
	atk := vegeta.NewAttacker(
		vegeta.Workers(benchClients), vegeta.MaxWorkers(benchClients),
		vegeta.Connections(benchClients), vegeta.KeepAlive(true), vegeta.Timeout(10*time.Second),
	)
	var results []*vegeta.Result
	for r := range atk.Attack(targeter, vegeta.Rate{Freq: benchRate, Per: time.Second}, benchDuration, "overhead") {
		results = append(results, r)
	}
	var ids []string
	for _, r := range results {
		if r.Code == 200 {
			ids = append(ids, strconv.FormatUint(r.Seq, 10))
		}
	}
	truth := truthFrom(b, truthOf, ids)
	for _, r := range results {
		rec, ok := truth[strconv.FormatUint(r.Seq, 10)]
		if r.Code != 200 || !ok {
			failed++
			continue
		}
		over = append(over, (r.Latency - rec.Handling).Seconds())
	}
	slices.Sort(over)
	return over, failed
}

// benchAPI starts the reference API in a process of its own (this test
// binary, re-executed), as SLO-Scout's API is never in the canary's process:
// the server's work and garbage collection then do not land in the client's
// measurements or in its CPU time. It returns the server's URL and a reader
// of its ground truth.
func benchAPI(b *testing.B, idHeader string) (truth func() []testbed.APIRecord, url string, journeys []string) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchAPIEnv+"="+idHeader)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	var hello struct {
		URL      string   `json:"url"`
		Journeys []string `json:"journeys"`
	}
	if err := json.NewDecoder(stdout).Decode(&hello); err != nil {
		b.Fatalf("reference API process: %v", err)
	}
	url = hello.URL
	truth = func() []testbed.APIRecord {
		resp, err := http.Get(url + "/bench/truth")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var recs []testbed.APIRecord
		if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
			b.Fatal(err)
		}
		return recs
	}
	return truth, url, hello.Journeys
}

// benchAPIEnv, set to the id header's name, makes this test binary the
// benchmark's reference API: see TestMain.
const benchAPIEnv = "SLO_CANARY_BENCH_API_ID_HEADER"

func TestMain(m *testing.M) {
	if h := os.Getenv(benchAPIEnv); h != "" {
		os.Exit(serveBenchAPI(h))
	}
	os.Exit(m.Run())
}

// serveBenchAPI serves the reference API with the overhead profile and its
// ground truth at /bench/truth, prints its URL, and stops when stdin closes.
func serveBenchAPI(idHeader string) int {
	api, err := testbed.NewAPI(testbed.APIOptions{Profile: overheadProfile, IDHeader: idHeader, TruthCap: 100000})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mux := http.NewServeMux()
	mux.Handle("/", api.Handler())
	mux.HandleFunc("GET /bench/truth", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(api.Records())
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go http.Serve(ln, mux)
	json.NewEncoder(os.Stdout).Encode(map[string]any{"url": "http://" + ln.Addr().String(), "journeys": api.JourneyIDs()})
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds the p50, p99 and max of sorted overheads, in microseconds.
func report(b *testing.B, prefix string, sorted []float64) {
	b.ReportMetric(1e6*quantile(sorted, 0.5), prefix+"p50_us")
	b.ReportMetric(1e6*quantile(sorted, 0.99), prefix+"p99_us")
	b.ReportMetric(1e6*quantile(sorted, 1), prefix+"max_us")
}
