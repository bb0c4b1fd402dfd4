package burst

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
)

// TestPacerSlabs: the pacer builds load events into slabs that it reuses
// once Kafka has answered for every record in them. Through a real broker,
// with a client buffer far smaller than the burst so that slabs go round
// many times, every event arrives exactly once and intact (a slab reused
// while a record in it was still in flight would overwrite its value:
// event ids would repeat and others go missing), and once the client is
// flushed every slab is back on the free list.
func TestPacerSlabs(t *testing.T) {
	const (
		topic = "load"
		parts = 4
		n     = 30000
	)
	_, addrs := testenv.Kafka(t, kfake.NumBrokers(1), kfake.SeedTopics(parts, topic))
	cl := testenv.KafkaClient(t, addrs, kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Millisecond),
		kgo.MaxBufferedRecords(600))

	o := testLoadOptions(canary.EncodingAvro)
	gen, err := NewLoadGen(o)
	if err != nil {
		t.Fatal(err)
	}
	// A twin generator with the same seed draws the same events: the ids
	// to expect, in order.
	twin, _ := NewLoadGen(o)
	want := make(map[string]int, n)
	var buf []byte
	for range n {
		buf, _ = twin.Event(buf[:0], time.Now())
		ev, err := canary.Decode(canary.EncodingAvro, buf)
		if err != nil {
			t.Fatal(err)
		}
		want[ev.EventID]++
	}

	var failed int
	p := &Pacer{Client: cl, Topic: topic, Partitions: []int32{0, 1, 2, 3}, Gen: gen,
		Failed: func(error) { failed++ }}
	ctx := context.Background()
	res := p.Run(ctx, time.Now(), []config.Step{{Rate: 1e6, Duration: n * time.Microsecond}})
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || !res[0].Done || res[0].Handed != n {
		t.Fatalf("pacer: %+v", res)
	}
	if p.Acked() != n || failed != 0 {
		t.Fatalf("acked %d, failed %d of %d", p.Acked(), failed, n)
	}
	if least := (n + slabRecords - 1) / slabRecords; p.slabsTaken < least {
		t.Errorf("%d slabs taken for %d events, want at least %d", p.slabsTaken, n, least)
	}
	if p.slabsMade >= p.slabsTaken/4 {
		t.Errorf("%d slabs made for %d taken: slabs are not reused", p.slabsMade, p.slabsTaken)
	}
	p.freeMu.Lock()
	released, kept := p.slabsReleased, len(p.free)
	p.freeMu.Unlock()
	if released != p.slabsTaken {
		t.Errorf("after the flush %d of %d slabs were released: one was never answered for, or twice", released, p.slabsTaken)
	}
	if kept != 0 {
		t.Errorf("%d slabs kept after the load ended", kept)
	}

	// Read everything back.
	cons := testenv.KafkaClient(t, addrs, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for got < n {
		fs := cons.PollFetches(rctx)
		if err := rctx.Err(); err != nil {
			t.Fatalf("read %d of %d events: %v", got, n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
		fs.EachRecord(func(r *kgo.Record) {
			got++
			ev, err := canary.Decode(canary.EncodingAvro, r.Value)
			if err != nil {
				t.Fatalf("partition %d offset %d: %v", r.Partition, r.Offset, err)
			}
			if want[ev.EventID] != 1 {
				t.Fatalf("event %s read again or never sent (partition %d offset %d)", ev.EventID, r.Partition, r.Offset)
			}
			want[ev.EventID] = 0
			if string(r.Key) != ev.ServiceName {
				t.Fatalf("key %q for service %q", r.Key, ev.ServiceName)
			}
		})
	}
	if got != n {
		t.Fatalf("read %d events, sent %d", got, n)
	}
}

// TestPacerSlabRefcount drives the slabs directly, without a broker: records
// handed out on four partitions, values of varied sizes (slabs also roll
// over on bytes), promises answered in random subsets from several
// goroutines, some before their slab is retired. No slab is ever on the free
// list while a record of it is unanswered, every slab taken is released
// exactly once, and a partition whose records are never answered holds only
// its own slabs.
func TestPacerSlabRefcount(t *testing.T) {
	p := &Pacer{Partitions: []int32{0, 1, 2, 3}}
	rng := rand.New(rand.NewPCG(1, 2))
	type handed struct {
		s *slab
		r *kgo.Record
	}
	var mu sync.Mutex
	unanswered := map[*slab]int{} // records handed from the slab's current round
	var pending []handed
	answer := func(batch []handed) {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < len(batch); i += 4 {
					h := batch[i]
					mu.Lock()
					unanswered[h.s]--
					mu.Unlock()
					h.s.done(h.r, nil)
				}
			})
		}
		wg.Wait()
	}
	check := func(round int) {
		p.freeMu.Lock()
		defer p.freeMu.Unlock()
		mu.Lock()
		defer mu.Unlock()
		for _, s := range p.free {
			if n := unanswered[s]; n != 0 {
				t.Fatalf("round %d: a slab is free with %d records unanswered", round, n)
			}
		}
	}
	hand := func(i int, answerable bool) {
		part := i % len(p.Partitions)
		r, s := p.record(part)
		if room := cap(s.buf) - len(s.buf); room >= i%700 {
			s.buf = s.buf[:len(s.buf)+i%700]
		}
		mu.Lock()
		unanswered[s]++
		mu.Unlock()
		if answerable || part != 0 {
			pending = append(pending, handed{s, r})
		}
	}

	// Every partition answered, out of order.
	i := 0
	for round := range 100 {
		for range 1000 {
			hand(i, true)
			i++
		}
		rng.Shuffle(len(pending), func(a, b int) { pending[a], pending[b] = pending[b], pending[a] })
		k := rng.IntN(len(pending) + 1)
		answer(pending[:k])
		pending = append(pending[:0], pending[k:]...)
		check(round)
	}
	answer(pending)
	pending = pending[:0]
	check(100)

	// Partition 0 stalls: its records are never answered. The slabs held
	// are those its records fill, plus one partly filled per partition.
	before := p.slabsMade
	const stalled = 40000
	for range stalled {
		hand(i, false)
		i++
		if len(pending) >= 3000 {
			answer(pending)
			pending = pending[:0]
		}
	}
	answer(pending)
	pending = pending[:0]
	p.freeMu.Lock()
	held := p.slabsMade - len(p.free)
	p.freeMu.Unlock()
	// A slab takes at least this many of the stalled partition's records
	// before it rolls over (on records or on bytes, values up to 699 bytes).
	perSlab := min(slabRecords, (slabBytes-slabHeadroom)/700)
	if most := stalled/len(p.Partitions)/perSlab + 1 + len(p.Partitions); held > most {
		t.Errorf("a stalled partition holds %d slabs (%d made since the stall), want at most %d", held, p.slabsMade-before, most)
	}

	p.drop()
	p.freeMu.Lock()
	kept := len(p.free)
	p.freeMu.Unlock()
	if kept != 0 {
		t.Errorf("%d slabs kept after drop", kept)
	}
	if p.slabsReleased >= p.slabsTaken {
		t.Fatalf("%d of %d slabs released with partition 0 unanswered", p.slabsReleased, p.slabsTaken)
	}
	// Partition 0 answers at last.
	var rest []handed
	mu.Lock()
	for s, n := range unanswered {
		for j := len(s.recs) - n; j < len(s.recs); j++ {
			rest = append(rest, handed{s, &s.recs[j]})
		}
	}
	mu.Unlock()
	answer(rest)
	p.freeMu.Lock()
	defer p.freeMu.Unlock()
	if p.slabsReleased != p.slabsTaken {
		t.Errorf("%d of %d slabs released", p.slabsReleased, p.slabsTaken)
	}
	if p.Acked() != int64(i) {
		t.Errorf("%d promises answered, %d records handed", p.Acked(), i)
	}
}
