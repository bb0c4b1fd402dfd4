package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
)

// lockedBuffer is a sink the test reads while the daemon writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDemo runs `slo-canary demo` as a newcomer would, until its summary shows
// markers observed at every stage, then presses Ctrl-C: it exits 0.
func TestDemo(t *testing.T) {
	t.Run("with postgres", func(t *testing.T) {
		if !testbed.PostgresAvailable() {
			testenv.Missing(t, "PostgreSQL (initdb, pg_ctl)")
		}
		testDemo(t, true)
	})
	t.Run("without postgres", func(t *testing.T) { testDemo(t, false) })
}

func testDemo(t *testing.T, withDB bool) {
	var out, errb lockedBuffer
	defer func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
	}()
	code := make(chan int, 1)
	args := []string{"demo", "--listen", "127.0.0.1:0", "--partitions", "2", "--rate", "5", "--summary-interval", "500ms"}
	if !withDB {
		args = append(args, "--no-postgres")
	}
	go func() { code <- run(args, &out, &errb) }()
	observed := regexp.MustCompile(`(\w+): observed=(\d+) lost=0`)
	want := []string{"capsules"}
	if withDB {
		want = append(want, "database")
	}
	testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("a summary with markers observed at %v", want), func() bool {
		lines := strings.Split(out.String(), "\n")
		seen := map[string]bool{}
		for _, l := range lines {
			if !strings.Contains(l, "sent=") {
				continue
			}
			for _, m := range observed.FindAllStringSubmatch(l, -1) {
				if n, _ := strconv.Atoi(m[2]); n > 0 {
					seen[m[1]] = true
				}
			}
		}
		all := true
		for _, s := range want {
			all = all && seen[s]
		}
		return all
	})
	for _, want := range []string{"kafka:", "control:", "metrics:  http://127.0.0.1:", "stages:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// Ctrl-C. run has had its signal handler in place since before the first
	// summary, so the signal reaches it, not the test process.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("demo exited %d after Ctrl-C; stderr:\n%s", c, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not exit within 30s of Ctrl-C")
	}
}
