package grouplag

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"
)

// timestamps fetches, for each (topic, partition) -> offset, the timestamp of
// the record at that offset: one Fetch request per partition, asking for one
// byte, so the broker returns just the batch that holds the offset.
func (l *Watcher) timestamps(ctx context.Context, want map[tpKey]int64) (map[tpoKey]time.Time, error) {
	out := map[tpoKey]time.Time{}
	if len(want) == 0 {
		return out, nil
	}
	var topics []string
	for k := range want {
		if !slices.Contains(topics, k.topic) {
			topics = append(topics, k.topic)
		}
	}
	md, err := l.adm.ListTopics(ctx, topics...)
	if err != nil {
		return out, fmt.Errorf("metadata: %w", err)
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for k, off := range want {
		td, ok := md[k.topic]
		if !ok || td.Err != nil {
			continue
		}
		pd, ok := td.Partitions[k.partition]
		if !ok || pd.Leader < 0 {
			continue
		}
		g.Go(func() error {
			ts, err := l.fetchTimestamp(gctx, pd.Leader, k.topic, td.ID, k.partition, off)
			if err != nil {
				return fmt.Errorf("%s/%d@%d: %w", k.topic, k.partition, off, err)
			}
			mu.Lock()
			out[tpoKey{k, off}] = ts
			mu.Unlock()
			return nil
		})
	}
	return out, g.Wait()
}

func (l *Watcher) fetchTimestamp(ctx context.Context, leader int32, topic string, id kadm.TopicID, partition int32, offset int64) (time.Time, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = 1 // the broker still returns the first batch whole
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rt.TopicID = id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.FetchOffset = offset
	rp.PartitionMaxBytes = 1
	rp.CurrentLeaderEpoch = -1
	rp.LogStartOffset = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, l.cl.Broker(int(leader)))
	if err != nil {
		return time.Time{}, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return time.Time{}, err
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			p := &resp.Topics[i].Partitions[j]
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: offset, Topic: topic, Partition: partition}, p, kgo.DefaultDecompressor(), nil)
			if fp.Err != nil {
				return time.Time{}, fp.Err
			}
			if len(fp.Records) > 0 {
				return fp.Records[0].Timestamp, nil
			}
		}
	}
	return time.Time{}, errors.New("no record at the offset in the answer")
}
