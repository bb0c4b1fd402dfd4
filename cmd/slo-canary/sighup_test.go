package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asMainEnv makes the test binary run as slo-canary itself (see TestMain),
// so that a test can signal a real process whose signal handling is the
// daemon's own, not the test harness's.
const asMainEnv = "GO_TEST_SLO_CANARY_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestRunWithoutConfigSurvivesSIGHUP: `run` with no --config has no file to
// reload; a SIGHUP is logged as ignored and the daemon carries on (Go's
// default for SIGHUP would end the process), then exits 0 on SIGTERM.
func TestRunWithoutConfigSurvivesSIGHUP(t *testing.T) {
	cmd := exec.Command(os.Args[0], "run", "--kafka-brokers", "127.0.0.1:1", "--listen", "127.0.0.1:0",
		"--log-format", "json", "--log-level", "info")
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // the test reads what it needs; the rest may go
			}
		}
		io.Copy(io.Discard, stderr)
		close(lines)
	}()
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	waitLine := func(what string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the daemon's output ended before %q", what)
				}
				if strings.Contains(l, what) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q in 30s", what)
			}
		}
	}
	waitLine(`"msg":"slo-canary started"`)
	for range 2 {
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitLine("SIGHUP ignored")
	}
	select {
	case err := <-exited:
		t.Fatalf("the daemon exited after SIGHUP: %v", err)
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30s after SIGTERM")
	}
}
