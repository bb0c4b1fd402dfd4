package canary

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/linkedin/goavro/v2"
)

// contractSchema is TelemetryEvent written out from the contract's table, by
// hand and independently of telemetry_event.avsc, for an independent reader.
// The burst package's load events are read with it too.
var contractSchema = func() string {
	b, err := os.ReadFile("testdata/contract_telemetry_event.avsc")
	if err != nil {
		panic(err) // a test file of the repository
	}
	return string(b)
}()

func testMarker() Marker {
	return Marker{ID: uuid.New(), Instance: "canary-a", Run: "r1", Partition: 7, Seq: 42,
		SentAt: time.Date(2026, 11, 27, 8, 0, 0, 123456789, time.UTC)}
}

// TestMarkerDecodesWithIndependentAvroReader: goavro (another implementation)
// given only the contract's schema reads a marker the canary encoded.
func TestMarkerDecodesWithIndependentAvroReader(t *testing.T) {
	codec, err := goavro.NewCodec(contractSchema)
	if err != nil {
		t.Fatal(err)
	}
	m := testMarker()
	ev := m.Event(EventOptions{ServiceName: "slo-canary", Environment: "prod", EventType: "log", Severity: "INFO"})
	data, err := Encode(EncodingAvro, &ev)
	if err != nil {
		t.Fatal(err)
	}
	native, rest, err := codec.NativeFromBinary(data)
	if err != nil {
		t.Fatalf("goavro cannot read the marker: %v", err)
	}
	if len(rest) != 0 {
		t.Fatalf("%d trailing bytes: not plain Avro binary of the record", len(rest))
	}
	rec := native.(map[string]any)
	if rec["event_id"] != m.ID.String() || rec["service_name"] != "slo-canary" || rec["environment"] != "prod" || rec["event_type"] != "log" {
		t.Errorf("fields: %v", rec)
	}
	if ts := rec["timestamp"].(time.Time); !ts.Equal(m.SentAt.Truncate(time.Millisecond)) {
		t.Errorf("timestamp %v, want %v", ts, m.SentAt.Truncate(time.Millisecond))
	}
	if sev := rec["severity"].(map[string]any)["com.sloscout.schema.Severity"]; sev != "INFO" {
		t.Errorf("severity %v", rec["severity"])
	}
	if msg := rec["message"].(map[string]any)["string"].(string); msg != MarkerMessage(m.ID) {
		t.Errorf("message %q", msg)
	}
	attrs := rec["attributes"].(map[string]any)
	for k, want := range map[string]string{AttrSynthetic: "true", AttrInstance: "canary-a", AttrRun: "r1", AttrPartition: "7", AttrSeq: "42", AttrSentAt: "1795766400123456789"} {
		if attrs[k] != want {
			t.Errorf("attribute %s = %v, want %s", k, attrs[k], want)
		}
	}
	for _, f := range []string{"trace_id", "span_id", "raw_blob_s3_key"} {
		if rec[f] != nil {
			t.Errorf("%s = %v, want null", f, rec[f])
		}
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	for _, enc := range []Encoding{EncodingAvro, EncodingJSON} {
		t.Run(string(enc), func(t *testing.T) {
			m := testMarker()
			ev := m.Event(EventOptions{ServiceName: "svc", Environment: "prod", EventType: "log"})
			data, err := Encode(enc, &ev)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Decode(enc, data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := MarkerFromEvent(&back)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != m.ID || got.Instance != m.Instance || got.Run != m.Run || got.Partition != m.Partition ||
				got.Seq != m.Seq || !got.SentAt.Equal(m.SentAt) {
				t.Errorf("round trip: got %+v, want %+v", got, m)
			}
			if back.Severity != nil {
				t.Errorf("empty severity must encode as null, got %q", *back.Severity)
			}
		})
	}
}

// TestMarkerMessageSurvivesFingerprinting: the message has no token that
// SLO-Scout's fingerprinting masks (UUIDs, runs of 4+ digits), so every
// marker forms a capsule of its own.
func TestMarkerMessageSurvivesFingerprinting(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		msg := MarkerMessage(uuid.New())
		if strings.ContainsAny(msg, "0123456789") {
			t.Fatalf("message %q contains digits", msg)
		}
		if seen[msg] {
			t.Fatalf("two markers share the message %q", msg)
		}
		seen[msg] = true
	}
}

func TestMarkerFromEventErrors(t *testing.T) {
	base := func() TelemetryEvent {
		return testMarker().Event(EventOptions{ServiceName: "s", Environment: "prod", EventType: "log"})
	}
	cases := []struct {
		name string
		mod  func(*TelemetryEvent)
		want string
	}{
		{"ordinary event", func(e *TelemetryEvent) { e.Attributes = map[string]string{"k": "v"} }, ErrNotMarker.Error()},
		{"bad id", func(e *TelemetryEvent) { e.EventID = "nope" }, `marker event_id "nope"`},
		{"bad partition", func(e *TelemetryEvent) { e.Attributes[AttrPartition] = "x" }, `attribute slo_canary.partition="x"`},
		{"bad seq", func(e *TelemetryEvent) { e.Attributes[AttrSeq] = "-1" }, `attribute slo_canary.seq="-1"`},
		{"bad sent_at", func(e *TelemetryEvent) { delete(e.Attributes, AttrSentAt) }, `attribute slo_canary.sent_at_ns=""`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := base()
			c.mod(&ev)
			_, err := MarkerFromEvent(&ev)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// FuzzDecodeMarker: no input makes the decoders or MarkerFromEvent panic,
// and the wire format round-trips both ways. An event decoded from any input
// encodes again and decodes to the same event, hence the same marker (or the
// same refusal); a marker, with strings as configuration gives them (valid
// UTF-8), encodes and decodes to the same event and the same marker.
func FuzzDecodeMarker(f *testing.F) {
	m := testMarker()
	ev := m.Event(EventOptions{ServiceName: "s", Environment: "prod", EventType: "log", Severity: "WARN"})
	for _, enc := range []Encoding{EncodingAvro, EncodingJSON} {
		data, _ := Encode(enc, &ev)
		f.Add(data, enc == EncodingJSON, m.Instance, m.Run, m.Partition, m.Seq, m.SentAt.UnixNano())
	}
	f.Add([]byte{}, false, "", "", int32(0), uint64(0), int64(0))
	f.Add([]byte(`{"event_id":1}`), true, "i\xff", "r", int32(math.MinInt32), uint64(math.MaxUint64), int64(math.MinInt64))
	f.Fuzz(func(t *testing.T, data []byte, js bool, instance, run string, partition int32, seq uint64, sentAt int64) {
		enc := EncodingAvro
		if js {
			enc = EncodingJSON
		}

		// Decoded, encoded, decoded.
		if ev, err := Decode(enc, data); err == nil {
			m, merr := MarkerFromEvent(&ev)
			again, err := Encode(enc, &ev)
			if err != nil {
				t.Fatalf("a decoded event does not encode again: %v\n%+v", err, ev)
			}
			back, err := Decode(enc, again)
			if err != nil {
				t.Fatalf("a re-encoded event does not decode: %v\n%q", err, again)
			}
			if !sameEvent(ev, back) {
				t.Fatalf("decoded %+v\nre-encoded and decoded %+v", ev, back)
			}
			m2, merr2 := MarkerFromEvent(&back)
			if !sameMarker(m, m2) || fmt.Sprint(merr) != fmt.Sprint(merr2) {
				t.Fatalf("marker %+v (%v), after the round trip %+v (%v)", m, merr, m2, merr2)
			}
		}

		// Encoded, decoded.
		var id uuid.UUID
		copy(id[:], data)
		want := Marker{ID: id, Instance: strings.ToValidUTF8(instance, "?"), Run: strings.ToValidUTF8(run, "?"),
			Partition: partition, Seq: seq, SentAt: time.Unix(0, sentAt)}
		o := EventOptions{ServiceName: "s", Environment: "staging", EventType: "trace"}
		if seq%2 == 1 {
			o.Severity = "ERROR"
		}
		ev := want.Event(o)
		data, err := Encode(enc, &ev)
		if err != nil {
			t.Fatalf("encode %+v: %v", want, err)
		}
		back, err := Decode(enc, data)
		if err != nil {
			t.Fatalf("decode what was encoded: %v", err)
		}
		if !sameEvent(ev, back) {
			t.Fatalf("encoded %+v\ndecoded %+v", ev, back)
		}
		got, err := MarkerFromEvent(&back)
		if want.Instance == "" {
			if !errors.Is(err, ErrNotMarker) {
				t.Fatalf("a marker without instance: %+v, %v; want ErrNotMarker", got, err)
			}
			return
		}
		if err != nil || !sameMarker(got, want) {
			t.Fatalf("encoded %+v, decoded %+v (%v)", want, got, err)
		}
	})
}

// sameEvent compares events field by field, timestamps as instants.
func sameEvent(a, b TelemetryEvent) bool {
	if !a.Timestamp.Equal(b.Timestamp) {
		return false
	}
	a.Timestamp, b.Timestamp = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// sameMarker compares markers field by field, send times as instants.
func sameMarker(a, b Marker) bool {
	return a.ID == b.ID && a.Instance == b.Instance && a.Run == b.Run && a.Partition == b.Partition &&
		a.Seq == b.Seq && a.SentAt.Equal(b.SentAt)
}
