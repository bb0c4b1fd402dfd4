package probes

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/slo-scout/slo-canary/config"
)

// Bounds applied when the configuration leaves them unset, and the fetch
// sizes. Memory held by the client is about brokers x kafkaFetchMaxBytes,
// decompressed: reading back 2M capsules (a restart after bursts, the
// lookback window) peaked at 211 MB of RSS with 16 MiB fetches and 105 MB
// with 4 MiB, in the same time.
const (
	defaultBufferSize         = 100_000
	defaultMaxRecordBytes     = 1 << 20
	kafkaFetchMaxBytes        = 4 << 20
	kafkaFetchMaxPartBytes    = 1 << 20
	kafkaListRetryMin         = 500 * time.Millisecond
	kafkaListRetryMax         = 10 * time.Second
	kafkaLogEvery             = time.Minute
	maxDecodeErrorDescription = 200
)

// Kafka finds markers by consuming a topic: a downstream topic of the
// pipeline, or the ingest topic itself for a pure Kafka round trip. It uses
// no consumer group: it observes the topic and commits nothing, so it never
// takes partitions from, or shows up as lag of, the pipeline's own consumers.
//
// Run consumes in the background and buffers sightings; Observe drains them.
type Kafka struct {
	name    string
	topic   string
	extract extractor
	maxRec  int
	bufSize int
	keep    func(uuid.UUID) bool // nil: every id is a sighting
	client  *kgo.Client
	logger  *slog.Logger

	fetchLog, decodeLog, dropLog logLimiter

	running  atomic.Bool
	ready    atomic.Bool
	caughtUp atomic.Bool // every partition read up to its end offset at start
	from     time.Time
	readyCh  chan struct{} // closed when ready

	mu      sync.Mutex
	buf     []Sighting
	lastErr error // the last fetch or listing error since the last drain
	listErr error // the last listing error, kept until ready

	records, matched, decodeErrs, oversized, dropped, fetchErrs atomic.Uint64
}

// NewKafka builds an observer of cfg.Topic. deps.KafkaOpts connect it to the
// cluster; it starts reading at the first record stamped at or after
// deps.Start-deps.Lookback, so markers sent shortly before a restart are
// still found. It does not wait for the cluster: Ready tells when it has
// reached it.
//
// It reads with read_committed isolation, as the pipeline's own consumers
// should: a record of an aborted transaction never reached them, and counting
// it would report a duplicate that no one downstream saw.
func NewKafka(name string, cfg config.KafkaObserver, deps Deps) (*Kafka, error) {
	if cfg.Topic == "" {
		return nil, fmt.Errorf("kafka observer %q: no topic", name)
	}
	ex, err := newExtractor(cfg.Extract, cfg.Field)
	if err != nil {
		return nil, fmt.Errorf("kafka observer %q: %w", name, err)
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	start := deps.Start
	if start.IsZero() {
		start = time.Now()
	}
	from := start.Add(-max(deps.Lookback, 0))
	opts := append(slices.Clip(deps.KafkaOpts),
		kgo.ConsumeTopics(cfg.Topic),
		// The start offset only: on a detected data loss the client keeps
		// its default short rewind rather than re-reading the whole lookback.
		kgo.ConsumeStartOffset(kgo.NewOffset().AfterMilli(from.UnixMilli())),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(kafkaFetchMaxBytes),
		kgo.FetchMaxPartitionBytes(kafkaFetchMaxPartBytes),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka observer %q: client: %w", name, err)
	}
	k := &Kafka{
		name:      name,
		topic:     cfg.Topic,
		extract:   ex,
		maxRec:    cfg.MaxRecordBytes,
		bufSize:   cfg.BufferSize,
		keep:      deps.Keep,
		client:    cl,
		readyCh:   make(chan struct{}),
		from:      from,
		logger:    logger.With("observer", name, "type", "kafka", "topic", cfg.Topic),
		fetchLog:  logLimiter{every: kafkaLogEvery},
		decodeLog: logLimiter{every: kafkaLogEvery},
		dropLog:   logLimiter{every: kafkaLogEvery},
	}
	if k.maxRec <= 0 {
		k.maxRec = defaultMaxRecordBytes
	}
	if k.bufSize <= 0 {
		k.bufSize = defaultBufferSize
	}
	return k, nil
}

// Stage names the stage this observer watches.
func (k *Kafka) Stage() string { return k.name }

// Ready reports whether the observer has reached the cluster and learnt the
// topic's end offsets, i.e. whether it is consuming.
func (k *Kafka) Ready() bool { return k.ready.Load() }

// Run consumes until ctx is cancelled or Close is called, and returns nil
// then. It never blocks on the buffer: a full buffer drops (and counts)
// sightings. Fetch errors are counted, logged at most once a minute, and left
// to the client, which retries by itself. Run may be called once.
//
// Before consuming, Run lists the topic's end offsets (retrying until it
// can). A record below them was in the topic before the observer could read
// it, and its sighting is Backlog: its lag cannot be measured. Offsets, not
// record timestamps, decide this: a timestamp comes from another clock, and on
// a topic written by a windowed aggregation it is event time, often older
// than the moment the record was written.
func (k *Kafka) Run(ctx context.Context) error {
	if !k.running.CompareAndSwap(false, true) {
		return fmt.Errorf("kafka observer %q: Run called twice", k.name)
	}
	ends, ok := k.listEnds(ctx)
	if !ok {
		return nil
	}
	behind := k.backlog(ctx, ends)
	k.ready.Store(true)
	close(k.readyCh)
	k.logger.Info("kafka observer consuming", "partitions_at_start", len(ends), "partitions_with_backlog", len(behind))
	catchUpBy := time.Now().Add(maxCatchUp)
	var ids []uuid.UUID
	for {
		if len(behind) == 0 {
			k.caughtUp.Store(true)
		} else if time.Now().After(catchUpBy) {
			k.logger.Warn("kafka observer still reading its backlog; treating it as caught up", "partitions_behind", len(behind), "after", maxCatchUp)
			behind = nil
			continue
		}
		fetches := k.client.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		now := time.Now()
		fetches.EachError(func(_ string, p int32, err error) {
			k.fetchErrs.Add(1)
			k.noteErr(err)
			if ok, n := k.fetchLog.allow(now); ok {
				k.logger.Warn("kafka fetch error", "partition", p, "err", err, "suppressed", n)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			ids = k.handle(r, now, ends, ids[:0])
			if end, ok := behind[r.Partition]; ok && r.Offset+1 >= end {
				delete(behind, r.Partition)
			}
		})
	}
}

// maxCatchUp bounds the wait for the backlog: a partition whose last backlog
// offset is never delivered (a transaction marker under read_committed) must
// not keep the stage from ever declaring a marker lost.
const maxCatchUp = 5 * time.Minute

// CatchingUp reports whether the observer is still reading the records that
// were in the topic when it started.
func (k *Kafka) CatchingUp() bool { return !k.caughtUp.Load() }

// backlog returns the partitions that hold records to read between the start
// offset and the end offset listed at start. On a listing error it assumes
// every partition does: catching up then ends with the first records read.
func (k *Kafka) backlog(ctx context.Context, ends map[int32]int64) map[int32]int64 {
	behind := map[int32]int64{}
	for p, end := range ends {
		if end > 0 {
			behind[p] = end
		}
	}
	starts, err := kadm.NewClient(k.client).ListOffsetsAfterMilli(ctx, k.from.UnixMilli(), k.topic)
	if err != nil {
		return behind
	}
	starts.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset >= ends[o.Partition] {
			delete(behind, o.Partition)
		}
	})
	return behind
}

// listEnds returns each partition's end offset, retrying with backoff until it
// succeeds or ctx is done (ok false). A topic that does not exist yet has no
// backlog: everything it will ever hold is new.
func (k *Kafka) listEnds(ctx context.Context) (map[int32]int64, bool) {
	adm := kadm.NewClient(k.client)
	wait := kafkaListRetryMin
	for {
		listed, err := adm.ListEndOffsets(ctx, k.topic)
		if err == nil {
			err = listed.Error()
		}
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return map[int32]int64{}, true
		}
		if err == nil {
			ends := map[int32]int64{}
			listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
			return ends, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		k.noteErr(err)
		k.mu.Lock()
		k.listErr = err
		k.mu.Unlock()
		if ok, n := k.fetchLog.allow(time.Now()); ok {
			k.logger.Warn("kafka observer cannot list end offsets; retrying", "err", err, "retry_in", wait, "suppressed", n)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		}
		wait = min(2*wait, kafkaListRetryMax)
	}
}

// handle turns one record into sightings. ids is scratch space, returned for
// reuse.
func (k *Kafka) handle(r *kgo.Record, now time.Time, ends map[int32]int64, ids []uuid.UUID) []uuid.UUID {
	k.records.Add(1)
	size := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		size += len(h.Key) + len(h.Value)
	}
	if size > k.maxRec {
		k.oversized.Add(1)
		return ids
	}
	ids, err := k.extract(r, ids)
	if err != nil {
		k.decodeErrs.Add(1)
		if ok, n := k.decodeLog.allow(now); ok {
			k.logger.Warn("kafka record not decodable", "partition", r.Partition, "offset", r.Offset,
				"err", truncate(err.Error(), maxDecodeErrorDescription), "suppressed", n)
		}
	}
	if len(ids) == 0 {
		return ids
	}
	k.matched.Add(uint64(len(ids)))
	wanted := ids
	if k.keep != nil { // outside k.mu: keep takes the tracker's lock
		wanted = ids[:0] // ids is scratch: filtered in place
		for _, id := range ids {
			if k.keep(id) { // else not a marker of this canary: no sighting
				wanted = append(wanted, id)
			}
		}
	}
	backlog := r.Offset < ends[r.Partition]
	var dropped int
	k.mu.Lock()
	for _, id := range wanted {
		if len(k.buf) >= k.bufSize {
			dropped++
			continue
		}
		k.buf = append(k.buf, Sighting{ID: id, At: now, Copies: 1, Backlog: backlog, SourceTime: r.Timestamp})
	}
	k.mu.Unlock()
	if dropped > 0 {
		k.dropped.Add(uint64(dropped))
		if ok, n := k.dropLog.allow(now); ok {
			k.logger.Warn("kafka observer buffer full; sightings dropped", "buffer_size", k.bufSize, "dropped", dropped, "suppressed", n)
		}
	}
	return ids
}

func (k *Kafka) noteErr(err error) {
	k.mu.Lock()
	k.lastErr = err
	k.mu.Unlock()
}

// Observe returns every sighting consumed since the last call; q is ignored,
// since a stream cannot be asked for particular ids. If the client reported
// an error since the last call, Observe returns it too, with the sightings:
// the caller must use both.
//
// Until Run is consuming, Observe waits for it, at most until ctx is done, and
// then fails: an observer that cannot read the topic has not observed that a
// marker is missing, and must not let the runner declare it lost.
func (k *Kafka) Observe(ctx context.Context, _ Query) ([]Sighting, error) {
	select {
	case <-k.readyCh:
	case <-ctx.Done():
		k.mu.Lock()
		err := k.listErr
		k.lastErr = nil
		k.mu.Unlock()
		if err == nil {
			return nil, fmt.Errorf("kafka observer %q: %w", k.name, &Error{Reason: "timeout", Err: errors.New("not consuming yet")})
		}
		return nil, fmt.Errorf("kafka observer %q: not consuming yet: %w", k.name, classifyKafka(err))
	}
	k.mu.Lock()
	out, err := k.buf, k.lastErr
	k.buf, k.lastErr = nil, nil
	k.mu.Unlock()
	if err != nil {
		return out, fmt.Errorf("kafka observer %q: %w", k.name, classifyKafka(err))
	}
	return out, nil
}

// Stats returns the observer's counters.
func (k *Kafka) Stats() ObserverStats {
	return ObserverStats{
		Records:       k.records.Load(),
		Matched:       k.matched.Load(),
		DecodeErrors:  k.decodeErrs.Load(),
		Oversized:     k.oversized.Load(),
		BufferDropped: k.dropped.Load(),
		FetchErrors:   k.fetchErrs.Load(),
	}
}

// Close closes the client, which makes Run return.
func (k *Kafka) Close() { k.client.Close() }

// classifyKafka wraps err in *Error with a reason from the bounded set.
func classifyKafka(err error) *Error {
	var ne net.Error
	reason := "other"
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.IllegalSaslState),
		errors.Is(err, kerr.UnsupportedSaslMechanism):
		reason = "auth"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		reason = "timeout"
	case errors.As(err, &ne), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, kgo.ErrClientClosed):
		reason = "connect"
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		reason = "query"
	}
	return &Error{Reason: reason, Err: err}
}

// extractor appends the marker ids a record carries to ids. A record that
// carries none (most records of a downstream topic) is not an error; a record
// that should carry ids and cannot be read (invalid Avro or JSON, an id that
// is not a UUID) is, and any ids it did yield are still returned.
type extractor func(r *kgo.Record, ids []uuid.UUID) ([]uuid.UUID, error)

func newExtractor(kind, field string) (extractor, error) {
	switch kind {
	case "avro":
		return func(r *kgo.Record, ids []uuid.UUID) ([]uuid.UUID, error) {
			return extractAvro(r.Value, ids)
		}, nil
	case "json":
		if field == "" {
			return nil, errors.New(`extract "json" needs a field`)
		}
		path := strings.Split(field, ".")
		if slices.Contains(path, "") {
			return nil, fmt.Errorf("json field %q has an empty path element", field)
		}
		return func(r *kgo.Record, ids []uuid.UUID) ([]uuid.UUID, error) {
			return extractJSON(r.Value, path, ids)
		}, nil
	case "header":
		if field == "" {
			return nil, errors.New(`extract "header" needs a field (the header name)`)
		}
		return func(r *kgo.Record, ids []uuid.UUID) ([]uuid.UUID, error) {
			return extractHeader(r.Headers, field, ids)
		}, nil
	default:
		return nil, fmt.Errorf("unknown extract %q (want avro, json or header)", kind)
	}
}

// extractAvro reads the event_id of a TelemetryEvent in plain Avro binary.
// event_id is the record's first field (the contract fixes the field order),
// a string: a zig-zag varint length, then the bytes. Reading it alone keeps
// this package free of package canary (which imports probes) and decodes
// nothing else of every event of a busy topic; what it cannot check is that
// the rest of the record is well formed. Every event yields its id, marker or
// not: the tracker ignores ids it did not send.
func extractAvro(value []byte, ids []uuid.UUID) ([]uuid.UUID, error) {
	n, w := binary.Varint(value)
	switch {
	case w == 0:
		return ids, errors.New("avro: event_id: truncated length")
	case w < 0:
		return ids, errors.New("avro: event_id: length overflows a long")
	case n < 0 || n > int64(len(value)-w):
		return ids, fmt.Errorf("avro: event_id: length %d out of range (%d bytes left)", n, len(value)-w)
	}
	s := value[w : w+int(n)]
	id, err := uuid.ParseBytes(s)
	if err != nil {
		return ids, fmt.Errorf("avro: event_id %q: %w", truncate(string(s), 64), err)
	}
	return append(ids, id), nil
}

// extractJSON reads the field at path (a.b.c) of a JSON object: a string id or
// an array of them. A record in which the last path element does not even
// appear is skipped without decoding; one where the path leads nowhere, or to
// null, carries no ids.
func extractJSON(value []byte, path []string, ids []uuid.UUID) ([]uuid.UUID, error) {
	if !bytes.Contains(value, []byte(`"`+path[len(path)-1]+`"`)) {
		return ids, nil
	}
	raw := json.RawMessage(value)
	for _, key := range path {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return ids, nil // valid JSON, not an object: not ours
			}
			return ids, fmt.Errorf("json: %w", err)
		}
		v, ok := obj[key]
		if !ok {
			return ids, nil
		}
		raw = v
	}
	switch {
	case bytes.Equal(raw, []byte("null")):
		return ids, nil
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return ids, fmt.Errorf("json %s: %w", strings.Join(path, "."), err)
		}
		id, err := uuid.Parse(s)
		if err != nil {
			return ids, fmt.Errorf("json %s %q: %w", strings.Join(path, "."), truncate(s, 64), err)
		}
		return append(ids, id), nil
	case len(raw) > 0 && raw[0] == '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return ids, fmt.Errorf("json %s: %w", strings.Join(path, "."), err)
		}
		var firstErr error
		for i, e := range elems {
			var s string
			err := json.Unmarshal(e, &s)
			if err == nil {
				var id uuid.UUID
				if id, err = uuid.Parse(s); err == nil {
					ids = append(ids, id)
					continue
				}
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("json %s[%d] %s: %w", strings.Join(path, "."), i, truncate(string(e), 64), err)
			}
		}
		return ids, firstErr
	default:
		return ids, fmt.Errorf("json %s is %s, want a string or an array of strings", strings.Join(path, "."), truncate(string(raw), 64))
	}
}

// extractHeader reads every header named key: a UUID in text, or its 16 raw
// bytes (a text UUID is never 16 bytes long, so the two cannot be confused).
func extractHeader(headers []kgo.RecordHeader, key string, ids []uuid.UUID) ([]uuid.UUID, error) {
	var firstErr error
	for _, h := range headers {
		if h.Key != key {
			continue
		}
		var id uuid.UUID
		var err error
		if len(h.Value) == 16 {
			id, err = uuid.FromBytes(h.Value)
		} else {
			id, err = uuid.ParseBytes(h.Value)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("header %s %q: %w", key, truncate(string(h.Value), 64), err)
			}
			continue
		}
		ids = append(ids, id)
	}
	return ids, firstErr
}
