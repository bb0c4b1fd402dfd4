package main

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/slo-scout/slo-canary/config"
	"github.com/slo-scout/slo-canary/internal/testenv"
)

// stall is a switch for a broker's listeners: once stalled, their
// connections carry nothing more (the broker reads no request, what arrives
// is discarded, and what it writes is lost), and a new connection is
// accepted but never answered. That is a broker that is not running (a
// stopped process, a node gone behind a partition) while its address still
// accepts connections: a client's requests fail only when their timeouts run
// out.
type stall struct {
	ch   chan struct{}
	once sync.Once
}

func newStall() *stall { return &stall{ch: make(chan struct{})} }

func (s *stall) stall() { s.once.Do(func() { close(s.ch) }) }

func (s *stall) stalled() bool {
	select {
	case <-s.ch:
		return true
	default:
		return false
	}
}

// listen is kfake's ListenFn: a listener whose connections s stalls.
func (s *stall) listen(network, addr string) (net.Listener, error) {
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return &stallListener{Listener: l, s: s}, nil
}

type stallListener struct {
	net.Listener
	s *stall
}

func (l *stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, s: l.s}, nil
}

type stallConn struct {
	net.Conn
	s *stall
}

// Read passes data on until the stall; after it, it discards whatever
// arrives (a request read just as the broker stalls too) until the
// connection ends, closed by either side.
func (c *stallConn) Read(p []byte) (int, error) {
	if !c.s.stalled() {
		n, err := c.Conn.Read(p)
		if err != nil || !c.s.stalled() {
			return n, err
		}
	}
	for {
		if _, err := c.Conn.Read(p); err != nil {
			return 0, err
		}
	}
}

func (c *stallConn) Write(p []byte) (int, error) {
	if c.s.stalled() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestDaemonStopsWithStalledBroker: two replicas with coordination on, in
// one group with a leader, idle or running a burst (scale_out on); the broker
// stalls (it accepts connections and answers nothing) and both are stopped
// at once. Each stops within canary.shutdown_timeout and 5 s, and says it
// gave up leaving the group. Before, kgo's Close waited for the leave (and
// for a join in flight), and a burst for its events' flush and then for its
// stop or result message (which did not honour its deadline at all), each
// for as long as the client's timeouts and retries last: well past a pod's
// termination grace period.
func TestDaemonStopsWithStalledBroker(t *testing.T) {
	t.Run("idle", func(t *testing.T) { stopWithStalledBroker(t, false) })
	t.Run("scale-out burst", func(t *testing.T) { stopWithStalledBroker(t, true) })
}

func stopWithStalledBroker(t *testing.T, bursting bool) {
	s := newStall()
	_, brokers := testenv.Kafka(t, kfake.SeedTopics(2, "raw-telemetry", "capsule-events"), kfake.ListenFn(s.listen))
	const shutdown = 3 * time.Second
	var ds []*testDaemon
	var logs []*lockedBuffer
	for _, instance := range []string{"canary-0", "canary-1"} {
		c := config.Defaults()
		c.Kafka.Brokers = brokers
		c.HTTP.Listen = "127.0.0.1:0"
		c.Canary.Instance = instance
		c.Canary.Rate = 5
		c.Canary.Recovery.Enabled = false
		c.Canary.ShutdownTimeout = shutdown
		db := c.Observers["database"]
		db.Enabled = false
		c.Observers["database"] = db
		caps := c.Observers["capsules"]
		caps.Enabled = true
		c.Observers["capsules"] = caps
		c.ConsumerLag.Enabled = false
		c.Queries.Enabled = false
		c.Coordination.Enabled = true
		c.Coordination.SessionTimeout = 6 * time.Second
		if bursting {
			c.Bursts.Enabled = true
			c.Bursts.Stage = "capsules"
			c.Bursts.ScaleOut = true
			c.Bursts.Profiles = map[string]config.BurstProfile{"wide": {Schedule: "@every 4s", Steps: []string{"1000/s for 2m"}}}
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		log := &lockedBuffer{}
		d := startDaemon(t, daemonOpts{cfg: &c, logger: newLogger(config.Log{Level: "info", Format: "json"}, log)})
		ds, logs = append(ds, d), append(logs, log)
	}
	var urls []string
	for _, d := range ds {
		urls = append(urls, d.url()+"/metrics")
	}
	waitLeader(t, urls)
	if bursting {
		t.Cleanup(func() {
			if t.Failed() {
				for i, log := range logs {
					t.Logf("replica %d log:\n%s", i, log)
				}
			}
		})
		// The leader's burst under way: shared, unless the first tick came
		// before the group of two formed.
		testenv.WaitFor(t, daemonWait, "a burst under way", func() bool {
			for _, d := range ds {
				if n, _ := seriesValue(t, d.url()+"/metrics", "slo_canary_burst_running"); n == 1 {
					return true
				}
			}
			return false
		})
	}
	s.stall()
	start := time.Now()
	for _, d := range ds {
		d.stopped = true
		d.cancel()
	}
	for i, d := range ds {
		select {
		case <-d.done:
			if d.err != nil {
				t.Errorf("replica %d: %v", i, d.err)
			}
			t.Logf("replica %d stopped %s after the stall", i, time.Since(start).Round(time.Millisecond))
		case <-time.After(time.Until(start.Add(shutdown + 5*time.Second))):
			t.Fatalf("replica %d did not stop within %s (canary.shutdown_timeout and 5 s) of the broker stalling", i, shutdown+5*time.Second)
		}
	}
	for i, log := range logs {
		if !strings.Contains(log.String(), "left the coordination group: gave up waiting for the broker") {
			t.Errorf("replica %d did not log that it gave up leaving the group; its log:\n%s", i, log)
		}
	}
}
