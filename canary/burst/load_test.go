package burst

import (
	"encoding/json"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
	"github.com/linkedin/goavro/v2"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
)

func testLoadOptions(enc canary.Encoding) LoadOptions {
	d := config.BurstsDefaults().Load
	sev, err := config.ParseSeverities(d.Severities)
	if err != nil {
		panic(err)
	}
	return LoadOptions{
		Instance: "canary-a", Run: "burst-1", Encoding: enc, Environment: "prod", EventType: "log",
		ServiceNames: []string{"svc-a", "svc-b"},
		Templates:    append(d.Templates, `quote " backslash \ tab	newline`+"\n"+` unicode é {word}`),
		Severities:   sev, TraceShare: 0.3, Seed: 7,
	}
}

// TestLoadEventsDecode: every load event is a valid canary.TelemetryEvent for the
// canary's own decoder and for goavro reading the contract's schema, carries
// the synthetic attributes, and varies as configured.
func TestLoadEventsDecode(t *testing.T) {
	schema, err := os.ReadFile("../testdata/contract_telemetry_event.avsc") // the contract's, as canary's marker tests read it
	if err != nil {
		t.Fatal(err)
	}
	codec, err := goavro.NewCodec(string(schema))
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []canary.Encoding{canary.EncodingAvro, canary.EncodingJSON} {
		t.Run(string(enc), func(t *testing.T) {
			g, err := NewLoadGen(testLoadOptions(enc))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 11, 27, 8, 0, 0, 123456789, time.UTC)
			const n = 5000
			sev := map[string]int{}
			var traces, minLen, maxLen int
			minLen = math.MaxInt
			ids := map[string]bool{}
			var buf []byte
			for i := range n {
				var key []byte
				buf, key = g.Event(buf[:0], now)
				ev, err := canary.Decode(enc, buf)
				if err != nil {
					t.Fatalf("event %d does not decode: %v\n%q", i, err, buf)
				}
				if enc == canary.EncodingAvro {
					native, rest, err := codec.NativeFromBinary(buf)
					if err != nil || len(rest) != 0 {
						t.Fatalf("goavro: %v, %d bytes left", err, len(rest))
					}
					if native.(map[string]any)["event_id"] != ev.EventID {
						t.Fatalf("goavro reads another event id")
					}
				} else if !json.Valid(buf) {
					t.Fatalf("invalid JSON %q", buf)
				}
				id, err := uuid.Parse(ev.EventID)
				if err != nil || id.Version() != 4 || id.Variant() != uuid.RFC4122 {
					t.Fatalf("event_id %q: %v", ev.EventID, err)
				}
				if ids[ev.EventID] {
					t.Fatalf("event_id %s twice", ev.EventID)
				}
				ids[ev.EventID] = true
				if string(key) != ev.ServiceName || (ev.ServiceName != "svc-a" && ev.ServiceName != "svc-b") {
					t.Fatalf("key %q, service %q", key, ev.ServiceName)
				}
				if !ev.Timestamp.Equal(now.Truncate(time.Millisecond)) || ev.Environment != "prod" {
					t.Fatalf("event %+v", ev)
				}
				want := map[string]string{canary.AttrSynthetic: "true", canary.AttrKind: "load", canary.AttrInstance: "canary-a", canary.AttrRun: "burst-1"}
				if len(ev.Attributes) != len(want) {
					t.Fatalf("attributes %v", ev.Attributes)
				}
				for k, v := range want {
					if ev.Attributes[k] != v {
						t.Fatalf("attributes %v", ev.Attributes)
					}
				}
				if _, err := canary.MarkerFromEvent(&ev); err != canary.ErrNotMarker {
					t.Fatalf("a load event reads as a marker: %v", err)
				}
				switch ev.EventType {
				case "trace":
					traces++
					if ev.TraceID == nil || len(*ev.TraceID) != 32 || ev.SpanID == nil || len(*ev.SpanID) != 16 {
						t.Fatalf("trace without ids: %+v", ev)
					}
				case "log":
					if ev.TraceID != nil || ev.SpanID != nil {
						t.Fatalf("log with trace ids: %+v", ev)
					}
				default:
					t.Fatalf("event_type %q", ev.EventType)
				}
				if ev.Severity == nil || ev.Message == nil || ev.RawBlobS3Key != nil {
					t.Fatalf("event %+v", ev)
				}
				if strings.Contains(*ev.Message, "{") {
					t.Fatalf("unfilled placeholder: %q", *ev.Message)
				}
				sev[*ev.Severity]++
				minLen, maxLen = min(minLen, len(buf)), max(maxLen, len(buf))
			}
			near := func(what string, got int, share float64) {
				t.Helper()
				if want := share * n; math.Abs(float64(got)-want) > 5*math.Sqrt(want) {
					t.Errorf("%s: %d of %d, want about %.0f", what, got, n, want)
				}
			}
			near("traces", traces, 0.3)
			near("INFO", sev["INFO"], 0.7)
			near("ERROR", sev["ERROR"], 0.05)
			if maxLen-minLen < 150 {
				t.Errorf("sizes %d to %d bytes: too little variety", minLen, maxLen)
			}
		})
	}
}

// TestLoadEventsMatchHamba: what hamba/avro decodes from the hand-written
// encoding, it encodes back (in its own block layout) to the same event.
func TestLoadEventsMatchHamba(t *testing.T) {
	telemetrySchema := avro.MustParse(canary.TelemetryEventSchema)
	g, err := NewLoadGen(testLoadOptions(canary.EncodingAvro))
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	for range 2000 {
		buf, _ = g.Event(buf[:0], time.Now())
		var ev, back canary.TelemetryEvent
		if err := avro.Unmarshal(telemetrySchema, buf, &ev); err != nil {
			t.Fatal(err)
		}
		again, err := avro.Marshal(telemetrySchema, &ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := avro.Unmarshal(telemetrySchema, again, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ev, back) {
			t.Fatalf("round trip differs:\n%+v\n%+v", ev, back)
		}
	}
}

func TestLoadEventAllocations(t *testing.T) {
	for _, enc := range []canary.Encoding{canary.EncodingAvro, canary.EncodingJSON} {
		g, err := NewLoadGen(testLoadOptions(enc))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 0, 4096)
		now := time.Now()
		if a := testing.AllocsPerRun(1000, func() { buf, _ = g.Event(buf[:0], now) }); a != 0 {
			t.Errorf("%s: %v allocations per event, want 0", enc, a)
		}
	}
}

func TestLoadGenRejects(t *testing.T) {
	for name, mod := range map[string]func(*LoadOptions){
		"environment":  func(o *LoadOptions) { o.Environment = "performance-test" },
		"event type":   func(o *LoadOptions) { o.EventType = "LOG" },
		"placeholder":  func(o *LoadOptions) { o.Templates = []string{"{nope}"} },
		"unclosed":     func(o *LoadOptions) { o.Templates = []string{"a {int"} },
		"no templates": func(o *LoadOptions) { o.Templates = nil },
	} {
		o := testLoadOptions(canary.EncodingAvro)
		mod(&o)
		if _, err := NewLoadGen(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// JSON takes free text, as the performance tests send it.
	o := testLoadOptions(canary.EncodingJSON)
	o.Environment, o.EventType = "performance-test", "LOG"
	g, err := NewLoadGen(o)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		b, _ := g.Event(nil, time.Now())
		ev, err := canary.Decode(canary.EncodingJSON, b)
		if err != nil || (ev.EventType != "LOG" && ev.EventType != "TRACE") {
			t.Fatalf("%v %q", err, ev.EventType)
		}
	}
}

// BenchmarkLoadEvent is the cost of building and encoding one load event;
// BenchmarkLoadEventHamba does the same through a canary.TelemetryEvent and
// hamba/avro, the way markers are encoded, as the peer.
//
//	go test -run '^$' -bench LoadEvent -benchmem ./canary/
func BenchmarkLoadEvent(b *testing.B) {
	for _, enc := range []canary.Encoding{canary.EncodingAvro, canary.EncodingJSON} {
		b.Run(string(enc), func(b *testing.B) {
			g, err := NewLoadGen(testLoadOptions(enc))
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, 4096)
			now := time.Now()
			b.ReportAllocs()
			var size int
			for b.Loop() {
				buf, _ = g.Event(buf[:0], now)
				size += len(buf)
			}
			b.ReportMetric(float64(size)/float64(b.N), "bytes/event")
		})
	}
}

func BenchmarkLoadEventHamba(b *testing.B) {
	g, err := NewLoadGen(testLoadOptions(canary.EncodingAvro))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		// The same variety, built as a struct and marshalled.
		g.msg = g.message(g.msg[:0], g.templates[g.rng.IntN(len(g.templates))])
		msg, sev := string(g.msg), "INFO"
		ev := canary.TelemetryEvent{
			EventID: uuid.New().String(), ServiceName: "svc-a", Environment: "prod", EventType: "log",
			Timestamp: now, Severity: &sev, Message: &msg,
			Attributes: map[string]string{canary.AttrSynthetic: "true", canary.AttrKind: "load", canary.AttrInstance: "canary-a", canary.AttrRun: "burst-1"},
		}
		if _, err := canary.Encode(canary.EncodingAvro, &ev); err != nil {
			b.Fatal(err)
		}
	}
}
