package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPProfOnlyWhenAsked runs slo-canary as a process (see TestMain), against
// a broker where nothing listens (the endpoint serves regardless), and asks
// for /debug/pprof/: not found by default, served with http.pprof true, from
// the environment (no config file) and from a config file (the reloading
// daemon). /metrics is served in every case.
func TestPProfOnlyWhenAsked(t *testing.T) {
	withFile := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(withFile, []byte("http:\n  pprof: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want int
	}{
		{"default", nil, nil, http.StatusNotFound},
		{"environment", nil, []string{"SLO_CANARY_HTTP_PPROF=true"}, http.StatusOK},
		{"config file", []string{"--config", withFile}, nil, http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"run", "--kafka-brokers", "127.0.0.1:1", "--listen", "127.0.0.1:0",
				"--log-format", "json", "--log-level", "info"}, c.args...)
			base := startProcess(t, c.env, args...)
			for path, want := range map[string]int{"/debug/pprof/": c.want, "/debug/pprof/cmdline": c.want, "/metrics": http.StatusOK} {
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
				}
			}
		})
	}
}

// startProcess runs the test binary as slo-canary with args and env added,
// returns the base URL its "slo-canary started" line names, and stops it
// with SIGTERM at the end of the test (it must exit 0).
func startProcess(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), asMainEnv+"=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listen := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l struct{ Msg, Listen string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "slo-canary started" {
				listen <- l.Listen
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			if err := waitErr; err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Error("no exit 30s after SIGTERM")
		}
	})
	select {
	case a := <-listen:
		if strings.HasPrefix(a, ":") || strings.HasPrefix(a, "[::]") {
			a = "127.0.0.1" + a[strings.LastIndex(a, ":"):]
		}
		return "http://" + a
	case <-exited:
		t.Fatalf("exited before it started: %v", waitErr)
	case <-time.After(30 * time.Second):
		t.Fatal("no 'slo-canary started' line in 30s")
	}
	return ""
}
