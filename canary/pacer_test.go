package canary

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/config"
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
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Millisecond),
		kgo.MaxBufferedRecords(600))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	o := testLoadOptions(EncodingAvro)
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
		ev, err := Decode(EncodingAvro, buf)
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
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
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
			ev, err := Decode(EncodingAvro, r.Value)
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
