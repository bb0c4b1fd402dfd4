package burst

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/slo-scout/slo-canary/canary"
	"github.com/slo-scout/slo-canary/config"
)

// LoadOptions shape the load events of a burst.
type LoadOptions struct {
	Instance string
	Run      string // the burst's id, in attribute slo_canary.run
	Encoding canary.Encoding
	// Environment and EventType as canary.environment and canary.event_type;
	// trace events use "trace" in EventType's case.
	Environment string
	EventType   string
	// ServiceNames, Templates and Severities as in config.BurstLoad.
	ServiceNames []string
	Templates    []string
	Severities   []config.Severity
	TraceShare   float64
	Seed         uint64
}

// LoadGen builds load events straight into their wire encoding: a valid
// TelemetryEvent (Avro binary or JSON) with attributes synthetic=true,
// slo_canary.kind=load, slo_canary.instance and slo_canary.run. It reuses
// the caller's buffer and allocates nothing per event, so a burst at a
// million events a second spends its time in Kafka, not in the garbage
// collector. It is not safe for concurrent use.
type LoadGen struct {
	enc        canary.Encoding
	rng        *rand.Rand
	templates  [][]segment
	severity   []int8 // weighted table: index into severitySymbols, -1 null
	services   [][]byte
	envIdx     int64
	env        []byte
	logType    []byte
	traceType  []byte
	logIdx     int64
	traceIdx   int64
	traceShare uint64 // out of 1<<32
	attrs      []byte // the attributes map, pre-encoded: the same for every event
	msg        []byte // scratch for the message
}

// segment is a template piece: a literal, or a placeholder to fill.
type segment struct {
	lit  string
	kind placeholder
}

type placeholder uint8

const (
	phNone placeholder = iota
	phInt
	phMS
	phIP
	phEmail
	phUUID
	phHex
	phWord
	phPath
	phText
)

var placeholderKinds = map[string]placeholder{
	"int": phInt, "ms": phMS, "ip": phIP, "email": phEmail, "uuid": phUUID,
	"hex": phHex, "word": phWord, "path": phPath, "text": phText,
}

var (
	severitySymbols = []string{"DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	envSymbols      = []string{"prod", "staging", "dev"}
	typeSymbols     = []string{"log", "trace", "metric"}
	loadWords       = []string{"timeout", "accounts", "sessions", "invoices", "insufficient_funds", "orders",
		"do_not_honor", "inventory", "expired_card", "shipments", "users", "carts", "refunds", "catalog"}
	emailDomains = []string{"example.com", "example.org", "mail.example.net"}
)

// filler is the source of {text}: lower-case prose, cut at a random length,
// so messages vary in size the way real logs do.
const filler = "while handling the request the upstream service returned an unexpected " +
	"response and the client will retry with exponential backoff until the deadline " +
	"passes or the circuit breaker opens after too many consecutive failures here"

const maxFiller = 200

// NewLoadGen checks o and prepares the generator.
func NewLoadGen(o LoadOptions) (*LoadGen, error) {
	if !o.Encoding.Valid() {
		return nil, fmt.Errorf("load: unknown encoding %q", o.Encoding)
	}
	if len(o.ServiceNames) == 0 || len(o.Templates) == 0 {
		return nil, errors.New("load: at least one service name and one template are required")
	}
	g := &LoadGen{
		enc:        o.Encoding,
		rng:        rand.New(rand.NewPCG(o.Seed, o.Seed^0x6a09e667f3bcc909)),
		traceShare: uint64(o.TraceShare * (1 << 32)),
		env:        []byte(o.Environment),
		logType:    []byte(o.EventType),
		msg:        make([]byte, 0, 512),
	}
	trace := "trace"
	if o.EventType != "" && o.EventType == strings.ToUpper(o.EventType) {
		trace = "TRACE"
	}
	g.traceType = []byte(trace)
	for _, s := range o.ServiceNames {
		g.services = append(g.services, []byte(s))
	}
	for _, t := range o.Templates {
		segs, err := parseTemplate(t)
		if err != nil {
			return nil, err
		}
		g.templates = append(g.templates, segs)
	}
	if o.Encoding == canary.EncodingAvro {
		var ok bool
		if g.envIdx, ok = symbolIndex(envSymbols, o.Environment); !ok {
			return nil, fmt.Errorf("load: environment %q is not in the Avro enum %v", o.Environment, envSymbols)
		}
		if g.logIdx, ok = symbolIndex(typeSymbols, o.EventType); !ok {
			return nil, fmt.Errorf("load: event type %q is not in the Avro enum %v", o.EventType, typeSymbols)
		}
		g.traceIdx, _ = symbolIndex(typeSymbols, "trace")
	}
	for _, s := range o.Severities {
		idx, ok := symbolIndex(severitySymbols, s.Level)
		if !ok || s.Weight < 1 {
			return nil, fmt.Errorf("load: bad severity %+v", s)
		}
		for range s.Weight {
			g.severity = append(g.severity, int8(idx))
		}
	}
	if len(g.severity) == 0 {
		g.severity = []int8{-1}
	}
	attrs := [][2]string{
		{canary.AttrSynthetic, "true"},
		{canary.AttrKind, "load"},
		{canary.AttrInstance, o.Instance},
		{canary.AttrRun, o.Run},
	}
	if o.Encoding == canary.EncodingAvro {
		g.attrs = appendLong(g.attrs, int64(len(attrs)))
		for _, kv := range attrs {
			g.attrs = appendAvroString(g.attrs, kv[0])
			g.attrs = appendAvroString(g.attrs, kv[1])
		}
		g.attrs = append(g.attrs, 0)
	} else {
		g.attrs = append(g.attrs, '{')
		for i, kv := range attrs {
			if i > 0 {
				g.attrs = append(g.attrs, ',')
			}
			g.attrs = appendJSONString(g.attrs, kv[0])
			g.attrs = append(g.attrs, ':')
			g.attrs = appendJSONString(g.attrs, kv[1])
		}
		g.attrs = append(g.attrs, '}')
	}
	return g, nil
}

func symbolIndex(symbols []string, s string) (int64, bool) {
	for i, v := range symbols {
		if v == s {
			return int64(i), true
		}
	}
	return 0, false
}

func parseTemplate(t string) ([]segment, error) {
	var segs []segment
	for rest := t; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			segs = append(segs, segment{lit: rest})
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("load: unclosed placeholder in template %q", t)
		}
		kind, ok := placeholderKinds[rest[i+1:i+j]]
		if !ok {
			return nil, fmt.Errorf("load: unknown placeholder %s in template %q", rest[i:i+j+1], t)
		}
		if i > 0 {
			segs = append(segs, segment{lit: rest[:i]})
		}
		segs = append(segs, segment{kind: kind})
		rest = rest[i+j+1:]
	}
	return segs, nil
}

// Event appends one encoded load event produced at now to dst. It returns
// the extended buffer and the record key (the service name, as SLO-Scout's
// collectors key records); the key is shared and must not be modified.
func (g *LoadGen) Event(dst []byte, now time.Time) ([]byte, []byte) {
	r := g.rng
	svc := g.services[r.IntN(len(g.services))]
	sev := g.severity[r.IntN(len(g.severity))]
	isTrace := r.Uint64()&(1<<32-1) < g.traceShare
	g.msg = g.message(g.msg[:0], g.templates[r.IntN(len(g.templates))])
	hi, lo := r.Uint64(), r.Uint64()
	ms := now.UnixMilli()
	var tr1, tr2, sp uint64
	if isTrace {
		tr1, tr2, sp = r.Uint64(), r.Uint64(), r.Uint64()
	}
	if g.enc == canary.EncodingAvro {
		dst = appendLong(dst, 36)
		dst = appendUUID(dst, hi, lo)
		dst = appendLong(dst, int64(len(svc)))
		dst = append(dst, svc...)
		dst = appendLong(dst, g.envIdx)
		if isTrace {
			dst = appendLong(dst, g.traceIdx)
		} else {
			dst = appendLong(dst, g.logIdx)
		}
		dst = appendLong(dst, ms)
		if sev < 0 {
			dst = append(dst, 0) // union branch 0: null
		} else {
			dst = append(dst, 2) // branch 1, zigzag
			dst = appendLong(dst, int64(sev))
		}
		dst = append(dst, 2)
		dst = appendLong(dst, int64(len(g.msg)))
		dst = append(dst, g.msg...)
		if isTrace {
			dst = append(dst, 2, 64) // branch 1, 32 bytes
			dst = appendHex64(appendHex64(dst, tr1), tr2)
			dst = append(dst, 2, 32) // branch 1, 16 bytes
			dst = appendHex64(dst, sp)
		} else {
			dst = append(dst, 0, 0)
		}
		dst = append(dst, g.attrs...)
		dst = append(dst, 0) // raw_blob_s3_key: null
		return dst, svc
	}
	dst = append(dst, `{"event_id":"`...)
	dst = appendUUID(dst, hi, lo)
	dst = append(dst, `","service_name":`...)
	dst = appendJSONBytes(dst, svc)
	dst = append(dst, `,"environment":`...)
	dst = appendJSONBytes(dst, g.env)
	dst = append(dst, `,"event_type":`...)
	if isTrace {
		dst = appendJSONBytes(dst, g.traceType)
	} else {
		dst = appendJSONBytes(dst, g.logType)
	}
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, ms, 10)
	dst = append(dst, `,"severity":`...)
	if sev < 0 {
		dst = append(dst, "null"...)
	} else {
		dst = appendJSONString(dst, severitySymbols[sev])
	}
	dst = append(dst, `,"message":`...)
	dst = appendJSONBytes(dst, g.msg)
	if isTrace {
		dst = append(dst, `,"trace_id":"`...)
		dst = appendHex64(appendHex64(dst, tr1), tr2)
		dst = append(dst, `","span_id":"`...)
		dst = appendHex64(dst, sp)
		dst = append(dst, '"')
	} else {
		dst = append(dst, `,"trace_id":null,"span_id":null`...)
	}
	dst = append(dst, `,"attributes":`...)
	dst = append(dst, g.attrs...)
	dst = append(dst, `,"raw_blob_s3_key":null}`...)
	return dst, svc
}

// message fills a template.
func (g *LoadGen) message(dst []byte, segs []segment) []byte {
	r := g.rng
	for _, s := range segs {
		switch s.kind {
		case phNone:
			dst = append(dst, s.lit...)
		case phInt:
			dst = strconv.AppendInt(dst, r.Int64N(100000), 10)
		case phMS:
			dst = strconv.AppendInt(dst, 1+r.Int64N(5000), 10)
		case phIP:
			v := r.Uint32()
			for i := range 4 {
				if i > 0 {
					dst = append(dst, '.')
				}
				dst = strconv.AppendUint(dst, uint64(v>>(8*i)&0xff), 10)
			}
		case phEmail:
			dst = append(dst, "user"...)
			dst = strconv.AppendInt(dst, r.Int64N(1000000), 10)
			dst = append(dst, '@')
			dst = append(dst, emailDomains[r.IntN(len(emailDomains))]...)
		case phUUID:
			dst = appendUUID(dst, r.Uint64(), r.Uint64())
		case phHex:
			dst = appendHex64(dst, r.Uint64())
		case phWord:
			dst = append(dst, loadWords[r.IntN(len(loadWords))]...)
		case phPath:
			dst = append(dst, "/api/v1/"...)
			dst = append(dst, loadWords[r.IntN(len(loadWords))]...)
			dst = append(dst, '/')
			dst = strconv.AppendInt(dst, r.Int64N(100000), 10)
		case phText:
			dst = append(dst, filler[:r.IntN(maxFiller+1)]...)
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendUUID writes a version 4 UUID made of hi and lo in its canonical form.
func appendUUID(dst []byte, hi, lo uint64) []byte {
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // variant 10
	var b [36]byte
	putHex(b[0:8], hi>>32)
	b[8] = '-'
	putHex(b[9:13], hi>>16)
	b[13] = '-'
	putHex(b[14:18], hi)
	b[18] = '-'
	putHex(b[19:23], lo>>48)
	b[23] = '-'
	putHex(b[24:36], lo)
	return append(dst, b[:]...)
}

// putHex fills b with the low len(b) hex digits of v.
func putHex(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func appendHex64(dst []byte, v uint64) []byte {
	var b [16]byte
	putHex(b[:], v)
	return append(dst, b[:]...)
}

// appendLong writes an Avro long: zigzag, then a base-128 varint.
func appendLong(dst []byte, n int64) []byte {
	u := uint64(n<<1) ^ uint64(n>>63)
	for u >= 0x80 {
		dst = append(dst, byte(u)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}

func appendAvroString(dst []byte, s string) []byte {
	return append(appendLong(dst, int64(len(s))), s...)
}

// appendJSONString writes s as a JSON string. Only '"', '\\' and control
// characters need escaping; other bytes, UTF-8 included, go as they are.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		dst = appendJSONByte(dst, s[i])
	}
	return append(dst, '"')
}

func appendJSONBytes(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	for _, c := range s {
		dst = appendJSONByte(dst, c)
	}
	return append(dst, '"')
}

func appendJSONByte(dst []byte, c byte) []byte {
	switch {
	case c == '"' || c == '\\':
		return append(dst, '\\', c)
	case c < 0x20:
		return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
	default:
		return append(dst, c)
	}
}
