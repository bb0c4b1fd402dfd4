package main

import (
	"net"
	"strings"
	"testing"
)

// TestDemoBusyPort: a busy --listen port is said before the demo starts
// anything (no Kafka, no PostgreSQL), with the port named.
func TestDemoBusyPort(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	code, out, errs := runCLI(t, "demo", "--listen", addr, "--partitions", "1")
	if code != exitFailure || !strings.Contains(errs, "--listen "+addr) || !strings.Contains(errs, "address already in use") {
		t.Errorf("exit %d, stderr %q; want 1 naming --listen %s, in use", code, errs, addr)
	}
	if strings.Contains(out, "kafka:") || strings.Contains(out, "postgres:") {
		t.Errorf("the demo started its pipeline before finding the port busy:\n%s", out)
	}
}
