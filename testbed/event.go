package testbed

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/hamba/avro/v2"
)

// Encoding is the wire encoding of ingest records: "avro" or "json", the same
// strings as canary.Encoding (convert with testbed.Encoding(e)).
type Encoding string

// The encodings the pipeline decodes.
const (
	EncodingAvro Encoding = "avro"
	EncodingJSON Encoding = "json"
)

// telemetryEventSchema is the contract's TelemetryEvent, copied rather than
// imported from package canary on purpose: the reference pipeline stands for
// SLO-Scout, so it decodes with its own copy of the contract. A canary encoder
// bug then shows up as decode errors here instead of being mirrored by a
// shared decoder. (It also keeps testbed free of canary, which imports the
// test helpers that import testbed.)
//
//go:embed telemetry_event.avsc
var telemetryEventSchema string

var telemetrySchema = avro.MustParse(telemetryEventSchema)

// telemetryEvent is com.sloscout.schema.TelemetryEvent as the pipeline reads it.
type telemetryEvent struct {
	EventID      string            `avro:"event_id"`
	ServiceName  string            `avro:"service_name"`
	Environment  string            `avro:"environment"`
	EventType    string            `avro:"event_type"`
	Timestamp    time.Time         `avro:"timestamp"`
	Severity     *string           `avro:"severity"`
	Message      *string           `avro:"message"`
	TraceID      *string           `avro:"trace_id"`
	SpanID       *string           `avro:"span_id"`
	Attributes   map[string]string `avro:"attributes"`
	RawBlobS3Key *string           `avro:"raw_blob_s3_key"`
}

// jsonEvent is the JSON form SLO-Scout's performance tests send: the same field
// names, the timestamp in epoch milliseconds (or an RFC 3339 string).
type jsonEvent struct {
	EventID      string            `json:"event_id"`
	ServiceName  string            `json:"service_name"`
	Environment  string            `json:"environment"`
	EventType    string            `json:"event_type"`
	Timestamp    json.RawMessage   `json:"timestamp"`
	Severity     *string           `json:"severity"`
	Message      *string           `json:"message"`
	TraceID      *string           `json:"trace_id"`
	SpanID       *string           `json:"span_id"`
	Attributes   map[string]string `json:"attributes"`
	RawBlobS3Key *string           `json:"raw_blob_s3_key"`
}

func decodeEvent(enc Encoding, data []byte) (telemetryEvent, error) {
	switch enc {
	case EncodingAvro:
		var ev telemetryEvent
		if err := avro.Unmarshal(telemetrySchema, data, &ev); err != nil {
			return telemetryEvent{}, fmt.Errorf("decode avro TelemetryEvent: %w", err)
		}
		return ev, nil
	case EncodingJSON:
		var je jsonEvent
		if err := json.Unmarshal(data, &je); err != nil {
			return telemetryEvent{}, fmt.Errorf("decode json TelemetryEvent: %w", err)
		}
		ts, err := jsonTime(je.Timestamp)
		if err != nil {
			return telemetryEvent{}, fmt.Errorf("decode json TelemetryEvent: timestamp: %w", err)
		}
		return telemetryEvent{
			EventID: je.EventID, ServiceName: je.ServiceName, Environment: je.Environment,
			EventType: je.EventType, Timestamp: ts, Severity: je.Severity, Message: je.Message,
			TraceID: je.TraceID, SpanID: je.SpanID, Attributes: je.Attributes, RawBlobS3Key: je.RawBlobS3Key,
		}, nil
	default:
		return telemetryEvent{}, fmt.Errorf("unknown encoding %q", enc)
	}
}

func jsonTime(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, fmt.Errorf("missing")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, err
		}
		return time.Parse(time.RFC3339Nano, s)
	}
	ms, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s is neither epoch milliseconds nor RFC 3339", raw)
	}
	return time.UnixMilli(ms).UTC(), nil
}
