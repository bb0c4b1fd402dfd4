package canary

import (
	"encoding/binary"
	"encoding/gob"
	"io"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/slo-scout/slo-canary/probes"
)

// Run with: go test -run '^$' -bench Tracker -benchmem ./canary/
//
// The BenchmarkTrackerNaiveMap* baselines are named under Tracker so that the
// same run measures them: the tracker's cost reads as a multiple of a bare
// map of pointers, the obvious implementation.

// benchChunk markers are tracked per tracker: enough to pay for map growth as
// a real tracker does, few enough that a long run does not hold gigabytes.
const benchChunk = 1 << 20

// benchID makes distinct ids cheaply (uuid.New reads crypto/rand, which would
// dominate what is measured).
func benchID(n uint64) uuid.UUID {
	id := uuid.UUID{0: 0x6b, 1: 0x2f, 6: 0x40}
	binary.LittleEndian.PutUint64(id[8:], n)
	return id
}

func benchMarker(n uint64) Marker {
	return Marker{
		ID: benchID(n), Instance: "bench", Run: "run-1",
		Partition: int32(n % 12), Seq: n/12 + 1, SentAt: t0.Add(time.Duration(n) * time.Millisecond),
	}
}

func benchTracker(b *testing.B, maxTracked int) *Tracker {
	b.Helper()
	cfg := testTrackerConfig()
	cfg.MaxTracked = maxTracked
	return newTestTracker(b, cfg)
}

func BenchmarkTrackerTrack(b *testing.B) {
	b.ReportAllocs()
	tr := benchTracker(b, benchChunk)
	n := uint64(0)
	for b.Loop() {
		if n%benchChunk == 0 && n > 0 {
			b.StopTimer()
			tr = benchTracker(b, benchChunk)
			b.StartTimer()
		}
		if !tr.Track(benchMarker(n), false) {
			b.Fatal("Track refused")
		}
		n++
	}
}

// BenchmarkTrackerSeen measures first sightings, the common case, of markers
// tracked in the untimed part.
func BenchmarkTrackerSeen(b *testing.B) {
	b.ReportAllocs()
	const chunk = 1 << 16
	var tr *Tracker
	n := uint64(0)
	for b.Loop() {
		if n%chunk == 0 {
			b.StopTimer()
			tr = benchTracker(b, chunk)
			for i := n; i < n+chunk; i++ {
				tr.Track(benchMarker(i), false)
			}
			b.StartTimer()
		}
		r := tr.Seen(0, probes.Sighting{ID: benchID(n), At: t0.Add(time.Duration(n)*time.Millisecond + time.Second), Copies: 1})
		if r.Outcome != OutcomeObserved {
			b.Fatalf("Seen: %v", r.Outcome)
		}
		n++
	}
}

// BenchmarkTrackerLifecycle is the steady state: per op one marker is
// tracked and seen at both stages, and every 1000 ops both stages expire, which
// evicts what is past retention (about 50,000 markers stay held).
func BenchmarkTrackerLifecycle(b *testing.B) {
	b.ReportAllocs()
	tr := benchTracker(b, benchChunk)
	n := uint64(0)
	lost := func(Marker) { b.Fatal("a marker seen in time was declared lost") }
	for b.Loop() {
		m := benchMarker(n)
		if !tr.Track(m, false) {
			b.Fatal("Track refused")
		}
		sg := probes.Sighting{ID: m.ID, At: m.SentAt.Add(time.Second), Copies: 1}
		tr.Seen(0, sg)
		tr.Seen(1, sg)
		if n%1000 == 999 {
			tr.Expire(0, m.SentAt, lost)
			tr.Expire(1, m.SentAt, lost)
		}
		n++
	}
}

type naiveMarker struct {
	Marker
	seen uint16
}

func BenchmarkTrackerNaiveMapTrack(b *testing.B) {
	b.ReportAllocs()
	m := map[uuid.UUID]*naiveMarker{}
	n := uint64(0)
	for b.Loop() {
		if n%benchChunk == 0 && n > 0 {
			b.StopTimer()
			m = map[uuid.UUID]*naiveMarker{}
			b.StartTimer()
		}
		mk := benchMarker(n)
		if _, ok := m[mk.ID]; !ok {
			m[mk.ID] = &naiveMarker{Marker: mk}
		}
		n++
	}
}

func BenchmarkTrackerNaiveMapSeen(b *testing.B) {
	b.ReportAllocs()
	const chunk = 1 << 16
	var m map[uuid.UUID]*naiveMarker
	n := uint64(0)
	for b.Loop() {
		if n%chunk == 0 {
			b.StopTimer()
			m = map[uuid.UUID]*naiveMarker{}
			for i := n; i < n+chunk; i++ {
				mk := benchMarker(i)
				m[mk.ID] = &naiveMarker{Marker: mk}
			}
			b.StartTimer()
		}
		if e, ok := m[benchID(n)]; ok {
			e.seen |= 1
		}
		n++
	}
}

// BenchmarkTracker1MPending reports the heap held by a tracker with a million
// markers pending at two stages (the budget is 200 MB).
func BenchmarkTracker1MPending(b *testing.B) {
	const n = 1_000_000
	var mb float64
	for b.Loop() {
		b.StopTimer()
		before := heapInUse()
		b.StartTimer()
		tr := benchTracker(b, n)
		for i := range uint64(n) {
			if !tr.Track(benchMarker(i), false) {
				b.Fatal("Track refused")
			}
		}
		b.StopTimer()
		mb = float64(heapInUse()-before) / 1e6
		runtime.KeepAlive(tr)
		b.StartTimer()
	}
	b.ReportMetric(mb, "MB")
	b.ReportMetric(mb*1e6/n, "B/marker")
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// BenchmarkTrackerCheckpoint measures one checkpoint (Checkpoint and WriteCheckpoint) of
// 120,000 markers, what 10 partitions at 10 markers/s hold
// over the default 20 minutes of retention, half of them seen at both
// stages. The peer, measured in the same run, is the gob encoding alone,
// to nowhere, of the markers exported in advance (Export, MarkerStates):
// what checkpoints cost before they were written as compact chunks.
func BenchmarkTrackerCheckpoint(b *testing.B) {
	const n = 120_000
	tr := benchTracker(b, n)
	for i := range uint64(n) {
		m := benchMarker(i)
		if !tr.Track(m, false) {
			b.Fatal("Track refused")
		}
		if i%2 == 0 {
			sg := probes.Sighting{ID: m.ID, At: m.SentAt.Add(time.Second), Copies: 1}
			tr.Seen(0, sg)
			tr.Seen(1, sg)
		}
	}
	path := filepath.Join(b.TempDir(), "state")
	b.Run("save", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := WriteCheckpoint(path, tr.Checkpoint("bench", t0)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("peer-gob-only", func(b *testing.B) {
		b.ReportAllocs()
		states := tr.Export()
		for b.Loop() {
			if err := gob.NewEncoder(io.Discard).Encode(states); err != nil {
				b.Fatal(err)
			}
		}
	})
}
