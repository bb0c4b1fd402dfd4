package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// RecoveryConfig says what to read back at start.
type RecoveryConfig struct {
	ClientOpts []kgo.Opt
	Topic      string
	Instance   string
	Encoding   Encoding
	// Since: markers sent before it are of no interest (their every stage's
	// deadline and late window have passed).
	Since      time.Time
	MaxRecords int
	Logger     *slog.Logger
}

// RecoveryResult is what Recover found.
type RecoveryResult struct {
	Markers  []Marker
	Scanned  int  // records read
	Damaged  int  // records carrying our header that did not decode as markers
	Truncate bool // MaxRecords was reached before the end
}

// Recover reads the ingest topic from Since up to the end offsets it finds at
// the start, and returns the markers this instance sent. The ingest topic is the
// record of what was really sent (acknowledged), so this needs no state of its
// own and writes nothing anywhere: after a restart, markers sent before it are
// still resolved, found with their lag or lost, instead of forgotten.
//
// It reads only partitions that have records after Since and decodes only
// records that carry the canary's instance header.
func Recover(ctx context.Context, cfg RecoveryConfig) (RecoveryResult, error) {
	var res RecoveryResult
	// Fetches bounded as the Kafka observers' are: the scan can cover
	// millions of records, and what a fetch holds, decompressed, is the
	// canary's memory while it runs.
	opts := append(slices.Clip(cfg.ClientOpts), kgo.FetchMaxBytes(4<<20), kgo.FetchMaxPartitionBytes(1<<20))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return res, fmt.Errorf("recovery client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	starts, err := adm.ListOffsetsAfterMilli(ctx, cfg.Since.UnixMilli(), cfg.Topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return res, fmt.Errorf("list offsets of %s after %s: %w", cfg.Topic, cfg.Since.Format(time.RFC3339), err)
	}
	ends, err := adm.ListEndOffsets(ctx, cfg.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return res, fmt.Errorf("list end offsets of %s: %w", cfg.Topic, err)
	}
	want := map[int32]kgo.Offset{}
	remaining := map[int32]int64{} // partition -> end offset still to reach
	starts.Each(func(o kadm.ListedOffset) {
		end, ok := ends.Lookup(o.Topic, o.Partition)
		if !ok || o.Offset >= end.Offset || o.Partition < 0 {
			return
		}
		want[o.Partition] = kgo.NewOffset().At(o.Offset)
		remaining[o.Partition] = end.Offset
	})
	if len(want) == 0 {
		return res, nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: want})

	for len(remaining) > 0 {
		fs := cl.PollRecords(ctx, 10000)
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("recovery of %s stopped with %d partitions unread: %w", cfg.Topic, len(remaining), err)
		}
		var fetchErr error
		fs.EachError(func(_ string, _ int32, err error) { fetchErr = errors.Join(fetchErr, err) })
		if fetchErr != nil {
			cfg.Logger.Warn("recovery fetch error; retrying", "err", fetchErr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if !ok {
				return
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if r.Offset >= end {
				return
			}
			res.Scanned++
			if !ours(r, cfg.Instance) {
				return
			}
			ev, err := Decode(cfg.Encoding, r.Value)
			if err != nil {
				res.Damaged++
				return
			}
			m, err := MarkerFromEvent(&ev)
			if err != nil || m.Instance != cfg.Instance {
				res.Damaged++
				return
			}
			res.Markers = append(res.Markers, m)
		})
		if cfg.MaxRecords > 0 && res.Scanned >= cfg.MaxRecords && len(remaining) > 0 {
			res.Truncate = true
			break
		}
	}
	return res, nil
}

func ours(r *kgo.Record, instance string) bool {
	for _, h := range r.Headers {
		if h.Key == HeaderInstance {
			return string(h.Value) == instance
		}
	}
	return false
}
