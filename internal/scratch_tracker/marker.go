// Package canary holds the heart of slo-canary: the marker wire format, the
// injector that produces markers, the tracker that accounts for every marker at
// every stage, and the service that wires them to the observers in probes.
package canary

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"
)

// TelemetryEventSchema is SLO-Scout's ingest event, exactly as the contract gives
// it: plain Avro binary, no schema registry, no magic byte.
//
//go:embed telemetry_event.avsc
var TelemetryEventSchema string

var telemetrySchema = avro.MustParse(TelemetryEventSchema)

// Attribute keys that identify a marker inside a TelemetryEvent. They let the
// pipeline and its users recognise (and filter) synthetic events, and let the
// canary rebuild a marker from the event alone after a restart.
const (
	AttrSynthetic = "synthetic"
	AttrInstance  = "slo_canary.instance"
	AttrRun       = "slo_canary.run"
	AttrPartition = "slo_canary.partition"
	AttrSeq       = "slo_canary.seq"
	AttrSentAt    = "slo_canary.sent_at_ns"
	AttrKind      = "slo_canary.kind"
)

// HeaderInstance is a Kafka record header carried by every canary record. It lets
// a restarted canary find its own markers in the ingest topic without decoding
// every other producer's events.
const HeaderInstance = "slo-canary-instance"

// Encoding is the wire encoding of TelemetryEvents.
type Encoding string

const (
	EncodingAvro Encoding = "avro"
	EncodingJSON Encoding = "json"
)

// Valid reports whether e is a known encoding.
func (e Encoding) Valid() bool { return e == EncodingAvro || e == EncodingJSON }

// Marker identifies one synthetic event the canary sent and must find again.
type Marker struct {
	ID        uuid.UUID
	Instance  string
	Run       string // changes on every start of the process; sequences are per run
	Partition int32
	Seq       uint64 // per run and partition, starting at 1
	SentAt    time.Time
}

// TelemetryEvent is SLO-Scout's com.sloscout.schema.TelemetryEvent. Field order
// and names follow the contract; nullable fields are pointers.
type TelemetryEvent struct {
	EventID      string            `avro:"event_id" json:"event_id"`
	ServiceName  string            `avro:"service_name" json:"service_name"`
	Environment  string            `avro:"environment" json:"environment"`
	EventType    string            `avro:"event_type" json:"event_type"`
	Timestamp    time.Time         `avro:"timestamp" json:"-"`
	Severity     *string           `avro:"severity" json:"severity"`
	Message      *string           `avro:"message" json:"message"`
	TraceID      *string           `avro:"trace_id" json:"trace_id"`
	SpanID       *string           `avro:"span_id" json:"span_id"`
	Attributes   map[string]string `avro:"attributes" json:"attributes"`
	RawBlobS3Key *string           `avro:"raw_blob_s3_key" json:"raw_blob_s3_key"`
}

// jsonEvent is the JSON form: the same field names, the timestamp in epoch
// milliseconds as the Avro logical type has it.
type jsonEvent struct {
	TelemetryEvent
	TimestampMillis int64 `json:"timestamp"`
}

// EventOptions are the parts of a marker event that come from configuration.
type EventOptions struct {
	ServiceName string
	Environment string // prod, staging or dev for Avro; free text in JSON
	EventType   string // log, trace or metric for Avro
	Severity    string
}

// Event builds the TelemetryEvent that carries m.
func (m Marker) Event(o EventOptions) TelemetryEvent {
	msg := MarkerMessage(m.ID)
	sev := o.Severity
	ev := TelemetryEvent{
		EventID:     m.ID.String(),
		ServiceName: o.ServiceName,
		Environment: o.Environment,
		EventType:   o.EventType,
		Timestamp:   m.SentAt.Truncate(time.Millisecond),
		Message:     &msg,
		Attributes: map[string]string{
			AttrSynthetic: "true",
			AttrKind:      "marker",
			AttrInstance:  m.Instance,
			AttrRun:       m.Run,
			AttrPartition: strconv.FormatInt(int64(m.Partition), 10),
			AttrSeq:       strconv.FormatUint(m.Seq, 10),
			AttrSentAt:    strconv.FormatInt(m.SentAt.UnixNano(), 10),
		},
	}
	if sev != "" {
		ev.Severity = &sev
	}
	return ev
}

// MarkerMessage is the marker's log message. SLO-Scout's fingerprinting masks
// UUIDs and runs of four or more digits, so the id is spelled in letters: every
// marker then has a template of its own, forms its own capsule, and stays
// traceable through aggregation.
func MarkerMessage(id uuid.UUID) string {
	const prefix = "slo-canary marker "
	b := make([]byte, len(prefix)+32)
	copy(b, prefix)
	for i, c := range id {
		b[len(prefix)+2*i] = 'a' + c>>4
		b[len(prefix)+2*i+1] = 'a' + c&0x0f
	}
	return string(b)
}

// Encode serialises ev in the given encoding.
func Encode(enc Encoding, ev *TelemetryEvent) ([]byte, error) {
	switch enc {
	case EncodingAvro:
		return avro.Marshal(telemetrySchema, ev)
	case EncodingJSON:
		return json.Marshal(jsonEvent{TelemetryEvent: *ev, TimestampMillis: ev.Timestamp.UnixMilli()})
	default:
		return nil, fmt.Errorf("unknown encoding %q", enc)
	}
}

// Decode parses a TelemetryEvent in the given encoding.
func Decode(enc Encoding, data []byte) (TelemetryEvent, error) {
	switch enc {
	case EncodingAvro:
		var ev TelemetryEvent
		if err := avro.Unmarshal(telemetrySchema, data, &ev); err != nil {
			return TelemetryEvent{}, fmt.Errorf("decode avro TelemetryEvent: %w", err)
		}
		return ev, nil
	case EncodingJSON:
		var je jsonEvent
		if err := json.Unmarshal(data, &je); err != nil {
			return TelemetryEvent{}, fmt.Errorf("decode json TelemetryEvent: %w", err)
		}
		je.TelemetryEvent.Timestamp = time.UnixMilli(je.TimestampMillis).UTC()
		return je.TelemetryEvent, nil
	default:
		return TelemetryEvent{}, fmt.Errorf("unknown encoding %q", enc)
	}
}

// ErrNotMarker is returned by MarkerFromEvent for events that are not canary markers.
var ErrNotMarker = errors.New("not a slo-canary marker")

// MarkerFromEvent rebuilds the marker an event carries. It returns ErrNotMarker
// for ordinary events, and a descriptive error for a marker whose attributes are
// damaged.
func MarkerFromEvent(ev *TelemetryEvent) (Marker, error) {
	a := ev.Attributes
	if a[AttrKind] != "marker" || a[AttrInstance] == "" {
		return Marker{}, ErrNotMarker
	}
	id, err := uuid.Parse(ev.EventID)
	if err != nil {
		return Marker{}, fmt.Errorf("marker event_id %q: %w", ev.EventID, err)
	}
	part, err := strconv.ParseInt(a[AttrPartition], 10, 32)
	if err != nil {
		return Marker{}, fmt.Errorf("marker %s attribute %s=%q: %w", id, AttrPartition, a[AttrPartition], err)
	}
	seq, err := strconv.ParseUint(a[AttrSeq], 10, 64)
	if err != nil {
		return Marker{}, fmt.Errorf("marker %s attribute %s=%q: %w", id, AttrSeq, a[AttrSeq], err)
	}
	sent, err := strconv.ParseInt(a[AttrSentAt], 10, 64)
	if err != nil {
		return Marker{}, fmt.Errorf("marker %s attribute %s=%q: %w", id, AttrSentAt, a[AttrSentAt], err)
	}
	return Marker{
		ID:        id,
		Instance:  a[AttrInstance],
		Run:       a[AttrRun],
		Partition: int32(part),
		Seq:       seq,
		SentAt:    time.Unix(0, sent),
	}, nil
}
