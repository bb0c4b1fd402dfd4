// Command peerproducer is the peer the daemon benchmark compares slo-canary
// with: a bare franz-go producer sending the same number of records per second
// (one per partition per second, 300 bytes), acks=all, and doing nothing else.
// Its CPU and memory are the floor of any Kafka client at that rate.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "seed broker")
	topic := flag.String("topic", "raw-telemetry", "topic")
	partitions := flag.Int("partitions", 10, "partitions to send to")
	rate := flag.Float64("rate", 1, "records per second per partition")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl, err := kgo.NewClient(kgo.SeedBrokers(*brokers), kgo.DefaultProduceTopic(*topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer cl.Close()
	value := make([]byte, 300)
	tick := time.NewTicker(time.Duration(float64(time.Second) / (*rate * float64(*partitions))))
	defer tick.Stop()
	for p := int32(0); ; p = (p + 1) % int32(*partitions) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			cl.TryProduce(ctx, &kgo.Record{Partition: p, Value: value}, nil)
		}
	}
}
