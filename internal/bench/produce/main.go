// Command produce measures how fast the burst runner produces to a Kafka
// broker in another process, side by side with peers sending records of the
// same size to the same broker: a bare franz-go produce loop (the ceiling for
// any franz-go producer), kcat (librdkafka) and kafka-python. It prints one
// table: records per second, the ratio to the bare loop, the producer's CPU
// time and heap allocations per record.
//
//	go run ./internal/bench/produce            (or scripts/bench-produce.sh)
//
// The broker is kfake, started as a child process of this program (the same
// binary with -serve), so broker and producer do not share a Go runtime. By
// default it acknowledges without storing (kfake.BlackholeProduce): kfake's
// in-memory log copies every batch, and on a 2-core machine that copying
// would be what is measured; -broker-storage keeps it.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/canary/burst"
	"github.com/slo-scout/slo-canary/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		serve      = flag.Bool("serve", false, "internal: run the kfake broker and print its address")
		n          = flag.Int("n", 2_000_000, "records per Go and kcat peer")
		nPython    = flag.Int("n-python", 100_000, "records for kafka-python (it is slow)")
		partitions = flag.Int("partitions", 10, "partitions of each topic")
		python     = flag.String("python", "/usr/bin/python3", "python interpreter with the kafka module (Debian python3-kafka)")
		peers      = flag.String("peers", "runner,bare,fixed,kcat,python", "peers to run, in order")
		cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of this process (the producers) here")
		repeat     = flag.Int("repeat", 3, "rounds; the table shows each peer's median")
		codec      = flag.String("compression", "snappy", "compression for every peer: none, snappy (SLO-Scout's collectors), lz4 or zstd")
		brokerProf = flag.String("broker-cpuprofile", "", "write a CPU profile of the broker process here")
		storage    = flag.Bool("broker-storage", false, "the broker stores what it is sent in its in-memory log; by default it acknowledges without storing (kfake.BlackholeProduce), keeping the broker's copying off the producer's two cores")
		buffered   = flag.Int("max-buffered", 1<<17, "kgo.MaxBufferedRecords for the Go peers")
		pace       = flag.Float64("runner-rate", 0, "pace the burst runner at this many events/s, as a burst does (0: as fast as the client takes them)")
		linger     = flag.Duration("linger", 10*time.Millisecond, "kgo.ProducerLinger for the Go peers")
	)
	flag.Parse()
	compression = *codec
	maxBuffered, lingerFor = *buffered, *linger
	if *serve {
		return serveBroker(int32(*partitions), *brokerProf, !*storage)
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	broker, stop, err := startBroker(*partitions, *brokerProf, !*storage)
	if err != nil {
		return err
	}
	defer stop()
	stores := "acknowledges without storing (kfake.BlackholeProduce)"
	if *storage {
		stores = "stores every batch in its in-memory log"
	}
	fmt.Printf("broker: kfake in another process at %s, %s; %d partitions per topic\nproducers: acks=all, linger %s, compression %s, up to %d records buffered\n\n",
		broker, stores, *partitions, lingerFor, compression, maxBuffered)

	// Every peer sends the same bytes: load events built in advance by the
	// runner's own generator (the runner builds its own on the fly). They
	// are built when a peer first needs them.
	var events [][]byte
	need := func() [][]byte {
		if events == nil {
			events = prebuilt(*n)
		}
		return events
	}
	// Each peer runs -repeat times, the order rotating between rounds, and
	// the table shows medians: a shared machine's noise hits every peer.
	names := strings.Split(*peers, ",")
	runs := map[string][]row{}
	for round := range *repeat {
		for i := range names {
			p := names[(i+round)%len(names)]
			var r row
			var err error
			topic := fmt.Sprintf("bench-%s-%d", p, round)
			if err := createTopic(broker, topic, int32(*partitions)); err != nil {
				return err
			}
			switch p {
			case "fixed":
				fixed := make([][]byte, *n)
				one := bytes.Repeat([]byte("x"), 300)
				for i := range fixed {
					fixed[i] = one
				}
				r, err = bareLoop(broker, topic, int32(*partitions), fixed)
				r.name = "bare franz-go loop (one 300-byte value)"
			case "bare":
				r, err = bareLoop(broker, topic, int32(*partitions), need())
			case "runner":
				r, err = burstRunner(broker, topic, int32(*partitions), *n, *pace)
			case "kcat":
				r, err = kcat(broker, topic, need())
			case "python":
				r, err = kafkaPython(*python, broker, topic, need()[:min(*nPython, *n)])
			default:
				return fmt.Errorf("unknown peer %q", p)
			}
			if err != nil {
				fmt.Printf("%-44s  error: %v\n", p, err)
				continue
			}
			runs[p] = append(runs[p], r)
			fmt.Printf("round %d  %-44s  %9d records  %7.2fs  %10.0f records/s\n", round+1, r.name, r.records, r.elapsed.Seconds(), r.rate())
		}
	}
	var rows []row
	for _, p := range names {
		if rs := runs[p]; len(rs) > 0 {
			rows = append(rows, median(rs))
		}
	}
	printTable(rows)
	return nil
}

// median returns the run of median rate, with the median CPU per record.
func median(rs []row) row {
	slices.SortFunc(rs, func(a, b row) int { return cmp.Compare(a.rate(), b.rate()) })
	m := rs[len(rs)/2]
	cpus := make([]float64, len(rs))
	for i, r := range rs {
		cpus[i] = float64(r.cpu) / float64(r.records)
	}
	slices.Sort(cpus)
	m.cpu = time.Duration(cpus[len(cpus)/2] * float64(m.records))
	if m.allocs >= 0 {
		allocs := make([]float64, len(rs))
		for i, r := range rs {
			allocs[i] = r.allocs
		}
		slices.Sort(allocs)
		m.allocs = allocs[len(allocs)/2]
	}
	return m
}

type row struct {
	name    string
	records int
	bytes   float64 // mean value size
	elapsed time.Duration
	cpu     time.Duration // the producer's user+system time
	allocs  float64       // heap allocations per record in this process (Go peers), -1 if not known
}

func (r row) rate() float64 { return float64(r.records) / r.elapsed.Seconds() }

func printTable(rows []row) {
	var bare float64
	for _, r := range rows {
		if strings.HasPrefix(r.name, "bare franz-go loop (events") {
			bare = r.rate()
		}
	}
	fmt.Printf("\nmedians:\n| %-44s | %9s | %7s | %12s | %8s | %14s | %14s |\n", "producer", "records", "bytes", "records/s", "vs bare*", "CPU µs/record", "allocs/record")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 46), strings.Repeat("-", 11), strings.Repeat("-", 9), strings.Repeat("-", 14), strings.Repeat("-", 10), strings.Repeat("-", 16), strings.Repeat("-", 16))
	for _, r := range rows {
		ratio := "-"
		if bare > 0 {
			ratio = fmt.Sprintf("%.2f", r.rate()/bare)
		}
		allocs := "-"
		if r.allocs >= 0 {
			allocs = fmt.Sprintf("%.3f", r.allocs)
		}
		fmt.Printf("| %-44s | %9d | %7.0f | %12.0f | %8s | %14.2f | %14s |\n", r.name, r.records, r.bytes, r.rate(), ratio,
			float64(r.cpu.Microseconds())/float64(r.records), allocs)
	}
	fmt.Println("\n* vs the bare loop sending the same events built in advance. The one-value loop's batches")
	fmt.Println("  compress to almost nothing, so it measures the broker's ceiling, not a realistic load.")
}

// serveBroker is the child process: a kfake cluster until stdin closes or a
// signal comes.
func serveBroker(partitions int32, profile string, blackhole bool) error {
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.DefaultNumPartitions(int(partitions))}
	if blackhole {
		opts = append(opts, kfake.BlackholeProduce())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println(c.ListenAddrs()[0])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n') // the parent went away
		stop()
	}()
	<-ctx.Done()
	return nil
}

func startBroker(partitions int, profile string, blackhole bool) (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self, "-serve", fmt.Sprintf("-partitions=%d", partitions), "-broker-cpuprofile="+profile, fmt.Sprintf("-broker-storage=%t", !blackhole))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		return "", nil, fmt.Errorf("broker did not start: %w", err)
	}
	return strings.TrimSpace(line), func() { stdin.Close(); cmd.Wait() }, nil
}

func createTopic(broker, topic string, partitions int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic)
	return err
}

// producerOpts are the burst runner's producer settings (canary/burst.go),
// given to the bare loop too so that the two differ only in what they do
// per record.
var (
	compression = "none"
	maxBuffered = 1 << 17
	lingerFor   = 10 * time.Millisecond
)

func producerOpts(broker, topic string) []kgo.Opt {
	codec := map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}[compression]
	return []kgo.Opt{
		kgo.SeedBrokers(broker),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(lingerFor),
		kgo.MaxBufferedRecords(maxBuffered),
		kgo.MaxBufferedBytes(128 << 20),
		kgo.ProducerBatchCompression(codec),
	}
}

func newGen(seed uint64) (*burst.LoadGen, error) {
	sev, _ := config.ParseSeverities(config.BurstsDefaults().Load.Severities)
	return burst.NewLoadGen(burst.LoadOptions{
		Instance: "bench", Run: "bench-1", Encoding: canary.EncodingAvro, Environment: "prod", EventType: "log",
		ServiceNames: []string{"slo-canary-load"}, Templates: benchTemplates, Severities: sev, TraceShare: 0.3, Seed: seed,
	})
}

// prebuilt returns n encoded load events.
func prebuilt(n int) [][]byte {
	gen, err := newGen(2)
	if err != nil {
		panic(err) // fixed, valid options
	}
	out := make([][]byte, n)
	var buf []byte
	now := time.Now()
	for i := range out {
		buf, _ = gen.Event(buf[:0], now)
		out[i] = bytes.Clone(buf)
	}
	return out
}

func meanSize(events [][]byte) float64 {
	var sum int
	for _, e := range events {
		sum += len(e)
	}
	return float64(sum) / float64(len(events))
}

// mallocs counts this process's heap allocations so far.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bareLoop is the plainest franz-go producer: values built in advance, a
// new Record per send, round-robin partitions, one shared promise.
func bareLoop(broker, topic string, partitions int32, events [][]byte) (row, error) {
	cl, err := kgo.NewClient(producerOpts(broker, topic)...)
	if err != nil {
		return row{}, err
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.Ping(ctx); err != nil {
		return row{}, err
	}
	var failed error
	done := func(_ *kgo.Record, err error) {
		if err != nil && failed == nil {
			failed = err
		}
	}
	m0, c0, t0 := mallocs(), cpuTime(), time.Now()
	for i, v := range events {
		cl.Produce(ctx, &kgo.Record{Value: v, Partition: int32(i) % partitions}, done)
	}
	if err := cl.Flush(ctx); err != nil {
		return row{}, err
	}
	el, cpu, allocs := time.Since(t0), cpuTime()-c0, mallocs()-m0
	if failed != nil {
		return row{}, failed
	}
	return row{name: "bare franz-go loop (events built in advance)", records: len(events), bytes: meanSize(events), elapsed: el, cpu: cpu,
		allocs: float64(allocs) / float64(len(events))}, nil
}

// benchTemplates make load events of about 300 bytes (the record size the
// issue's reference figures were measured with), in sizes from about 200 to
// 420 bytes.
var benchTemplates = []string{
	"GET {path} completed with status 200 in {ms}ms for user {email} from {ip}",
	"order {uuid} placed with {int} items for {int} cents by {email}",
	"cache miss for key {hex}, fetching from origin {ip} after {ms}ms",
	"payment {uuid} declined by issuer: {word} (attempt {int}) {text}",
}

// burstRunner is the burst runner's produce path, as a burst runs it: the
// pacer building real TelemetryEvents (Avro) into pooled records, with 0.2%
// markers tracked by a tracker, at a rate no producer reaches, so it goes
// as fast as the client takes records.
func burstRunner(broker, topic string, partitions int32, n int, rate float64) (row, error) {
	cl, err := kgo.NewClient(producerOpts(broker, topic)...)
	if err != nil {
		return row{}, err
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.Ping(ctx); err != nil {
		return row{}, err
	}
	gen, err := newGen(1)
	if err != nil {
		return row{}, err
	}
	var sizeSum int
	var buf []byte
	for range 10000 {
		buf, _ = gen.Event(buf[:0], time.Now())
		sizeSum += len(buf)
	}
	tracker, err := canary.NewTracker(canary.TrackerConfig{Stages: []canary.StageConfig{{Name: "bench", Deadline: time.Hour}},
		Budget: time.Minute, MaxTracked: 1 << 20})
	if err != nil {
		return row{}, err
	}
	var seqs [1 << 10]uint64
	marker := func(part int32, now time.Time) (*kgo.Record, func(*kgo.Record, error)) {
		seqs[part]++
		m := canary.Marker{ID: newID(), Instance: "bench", Run: "bench-1", Partition: part, Seq: seqs[part], SentAt: now}
		ev := m.Event(canary.EventOptions{ServiceName: "slo-canary", Environment: "prod", EventType: "log", Severity: "INFO"})
		v, err := canary.Encode(canary.EncodingAvro, &ev)
		if err != nil || !tracker.Track(m, false) {
			return nil, nil
		}
		return &kgo.Record{Topic: topic, Partition: part, Value: v, Timestamp: now}, func(*kgo.Record, error) {}
	}
	parts := make([]int32, partitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	var failed error
	p := &burst.Pacer{Client: cl, Topic: topic, Partitions: parts, Gen: gen, MarkerShare: 0.002, Marker: marker,
		Failed: func(err error) {
			if failed == nil {
				failed = err
			}
		}}
	if rate <= 0 {
		rate = 1e9 // events/s: every event is due at once
	}
	steps := []config.Step{{Rate: rate, Duration: time.Duration(float64(n) / rate * 1e9)}}
	m0, c0, t0 := mallocs(), cpuTime(), time.Now()
	res := p.Run(ctx, t0, steps)
	if err := cl.Flush(ctx); err != nil {
		return row{}, err
	}
	el, cpu, allocs := time.Since(t0), cpuTime()-c0, mallocs()-m0
	if failed != nil {
		return row{}, failed
	}
	if len(res) != 1 || res[0].Handed != int64(n) {
		return row{}, fmt.Errorf("runner handed %d of %d events", p.Handed(), n)
	}
	name := "burst runner (TelemetryEvents, 0.2% markers)"
	if rate < 1e9 {
		name = fmt.Sprintf("burst runner paced at %.0fk/s, late ≤ %s", rate/1e3, res[0].MaxBehind.Round(time.Millisecond))
		if ps := p.PerSecond(); len(ps) > 2 {
			// Whole seconds only: the last one is cut short by the end.
			lo, hi := slices.Min(ps[:len(ps)-1]), slices.Max(ps[:len(ps)-1])
			name += fmt.Sprintf(", seconds %.1fk–%.1fk", float64(lo)/1e3, float64(hi)/1e3)
		}
	}
	return row{name: name, records: n, bytes: float64(sizeSum) / 10000, elapsed: el, cpu: cpu,
		allocs: float64(allocs) / float64(n)}, nil
}

func newID() [16]byte {
	var id [16]byte
	a, b := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		id[i], id[8+i] = byte(a>>(8*i)), byte(b>>(8*i))
	}
	return id
}

// delim separates the events in the file kcat and kafka-python read: Avro
// binary may hold a newline; not this (eventFile checks), and as plain ASCII
// it passes through argv unharmed.
const delim = "--slo-canary-bench-delimiter--"

func eventFile(events [][]byte) (string, error) {
	f, err := os.CreateTemp("", "bench-events-*.bin")
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, e := range events {
		if bytes.Contains(e, []byte(delim)) {
			return "", errors.New("an event holds the delimiter")
		}
		w.Write(e)
		w.WriteString(delim)
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}

// kcat sends the events from a file, with settings matching ours: acks=all,
// idempotence, linger 10ms, a deep queue.
func kcat(broker, topic string, events [][]byte) (row, error) {
	path, err := exec.LookPath("kcat")
	if err != nil {
		return row{}, err
	}
	file, err := eventFile(events)
	if err != nil {
		return row{}, err
	}
	defer os.Remove(file)
	cmd := exec.Command(path, "-P", "-b", broker, "-t", topic, "-D", delim, "-l",
		"-X", "acks=all", "-X", "enable.idempotence=true", "-X", "linger.ms=10",
		"-X", "queue.buffering.max.messages=1000000", "-X", "compression.codec="+compression, file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return row{}, fmt.Errorf("kcat: %v: %s", err, stderr.String())
	}
	el := time.Since(t0)
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return row{name: "kcat -P (librdkafka)", records: len(events), bytes: meanSize(events), elapsed: el, cpu: cpu, allocs: -1}, nil
}

const pythonProducer = `
import sys, time
from kafka import KafkaProducer
broker, topic, path, delim, codec = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].encode(), sys.argv[5]
events = open(path, "rb").read().split(delim)[:-1]
p = KafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=10, compression_type=None if codec == "none" else codec)
p.partitions_for(topic)
t = time.time()
for e in events:
    p.send(topic, e)
p.flush()
print(time.time() - t)
`

func kafkaPython(python, broker, topic string, events [][]byte) (row, error) {
	dir, err := os.MkdirTemp("", "bench-python")
	if err != nil {
		return row{}, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "produce.py")
	if err := os.WriteFile(script, []byte(pythonProducer), 0o644); err != nil {
		return row{}, err
	}
	file, err := eventFile(events)
	if err != nil {
		return row{}, err
	}
	defer os.Remove(file)
	cmd := exec.Command(python, script, broker, topic, file, delim, compression)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return row{}, fmt.Errorf("kafka-python: %v: %s", err, stderr.String())
	}
	var secs float64
	if _, err := fmt.Sscan(string(out), &secs); err != nil || secs <= 0 {
		return row{}, errors.New("kafka-python: no timing in its output")
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return row{name: "kafka-python", records: len(events), bytes: meanSize(events), elapsed: time.Duration(secs * float64(time.Second)), cpu: cpu, allocs: -1}, nil
}
