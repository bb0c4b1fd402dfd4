package main

import (
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slo-scout/slo-canary/internal/testenv"
	"github.com/slo-scout/slo-canary/testbed"
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

// demoRun is `slo-canary demo` running in the test process; stop presses
// Ctrl-C. Tests that use it must not run in parallel: the signal goes to
// the process.
type demoRun struct {
	t         *testing.T
	out, errb lockedBuffer
	code      chan int
	exited    bool // code was read
}

func startDemo(t *testing.T, args ...string) *demoRun {
	d := &demoRun{t: t, code: make(chan int, 1)}
	go func() { d.code <- run(append([]string{"demo", "--listen", "127.0.0.1:0"}, args...), &d.out, &d.errb) }()
	t.Cleanup(func() {
		if !d.exited {
			d.stop()
		}
	})
	return d
}

// await polls the output until ok holds for it, or fails the test.
func (d *demoRun) await(timeout time.Duration, what string, ok func(out string) bool) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok(d.out.String()) {
		select {
		case c := <-d.code:
			d.exited = true
			d.t.Fatalf("demo exited %d before %s\nstdout:\n%s\nstderr:\n%s", c, what, d.out.String(), d.errb.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no %s within %s\nstdout:\n%s\nstderr:\n%s", what, timeout, d.out.String(), d.errb.String())
		}
	}
}

// stop presses Ctrl-C and returns the exit code. run catches the signal
// from its start to its end, so it never reaches the test process.
func (d *demoRun) stop() int {
	d.t.Helper()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		d.t.Fatal(err)
	}
	select {
	case c := <-d.code:
		d.exited = true
		return c
	case <-time.After(30 * time.Second):
		d.t.Fatalf("demo did not exit within 30s of Ctrl-C\nstderr:\n%s", d.errb.String())
		return -1
	}
}

var (
	summaryLine = regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d (final )?sent=\d+ .*$`)
	stageLost   = regexp.MustCompile(`(\w+): observed=\d+ lost=(\d+)`)
	stageP50    = regexp.MustCompile(`(\w+): observed=[^|]* lag p50=(\S+)`)
)

// TestDemoDeadlineAndFinal: the demo says its deadline at start and takes
// SLO_CANARY_CANARY_DEADLINE (so --drop shows lost markers within seconds),
// warns about the SLO_CANARY_* variables it ignores, prints a summary line
// marked final on Ctrl-C, and README's sample line is one it prints.
func TestDemoDeadlineAndFinal(t *testing.T) {
	withDB := testbed.PostgresAvailable()
	if !withDB {
		testenv.Missing(t, "PostgreSQL (initdb, pg_ctl)")
	}
	t.Setenv("SLO_CANARY_CANARY_DEADLINE", "5s")
	t.Setenv("SLO_CANARY_CANARY_RATE", "7")
	d := startDemo(t, "--partitions", "2", "--rate", "5", "--summary-interval", "500ms", "--drop", "50")
	var real string // a summary line with every stage's lag and a lost marker
	d.await(60*time.Second, "summary line with a lost marker and every stage's lag", func(out string) bool {
		for _, l := range summaryLine.FindAllString(out, -1) {
			lost := false
			for _, m := range stageLost.FindAllStringSubmatch(l, -1) {
				lost = lost || m[2] != "0"
			}
			if lost && len(stageP50.FindAllString(l, -1)) == 2 {
				real = l
				return true
			}
		}
		return false
	})
	out := d.out.String()
	if !strings.Contains(out, "\ndeadline: 5s: a marker not seen at a stage by then counts as lost there (SLO_CANARY_CANARY_DEADLINE to change)\n") {
		t.Errorf("the start output does not say the deadline (5s, from SLO_CANARY_CANARY_DEADLINE):\n%s", out)
	}
	if errs := d.errb.String(); !strings.Contains(errs, "the demo ignores this variable") || !strings.Contains(errs, `"variable":"SLO_CANARY_CANARY_RATE"`) {
		t.Errorf("no warning that SLO_CANARY_CANARY_RATE is ignored:\n%s", errs)
	}
	checkReadmeSample(t, real)

	if c := d.stop(); c != 0 {
		t.Fatalf("demo exited %d after Ctrl-C; stderr:\n%s", c, d.errb.String())
	}
	lines := summaryLine.FindAllStringSubmatch(d.out.String(), -1)
	if last := lines[len(lines)-1]; last[1] != "final " {
		t.Errorf("the last summary line after Ctrl-C is not marked final: %q\nstdout:\n%s", last[0], d.out.String())
	}
}

// checkReadmeSample: README's quick start shows a summary line the demo
// prints: the same stages and fields as real, each stage's lag p50 of the
// same order (within 30x), and says the deadline and the final line.
func checkReadmeSample(t *testing.T, real string) {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	start := strings.Index(readme, "## Quick start")
	end := strings.Index(readme[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("README.md has no Quick start section")
	}
	quick := readme[start : start+1+end]
	sample := summaryLine.FindString(quick)
	if sample == "" {
		t.Fatal("README's quick start shows no summary line")
	}
	shape := regexp.MustCompile(`\d+(\.\d+)?(ms|µs|s|m)?`)
	if a, b := shape.ReplaceAllString(sample, "N"), shape.ReplaceAllString(real, "N"); a != b {
		t.Errorf("README's sample line is not shaped as the demo's:\nREADME: %s\ndemo:   %s", sample, real)
	}
	p50 := func(line string) map[string]time.Duration {
		m := map[string]time.Duration{}
		for _, s := range stageP50.FindAllStringSubmatch(line, -1) {
			d, err := time.ParseDuration(s[2])
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			m[s[1]] = max(d, 5*time.Millisecond)
		}
		return m
	}
	got := p50(real)
	for stage, want := range p50(sample) {
		if g := got[stage]; g == 0 || g > 30*want || want > 30*g {
			t.Errorf("README's sample shows %s lag p50=%s; the demo prints %s:\nREADME: %s\ndemo:   %s", stage, want, g, sample, real)
		}
	}
	for _, want := range []string{"60 s", "`--drop 5`", "SLO_CANARY_CANARY_DEADLINE", "`final`"} {
		if !strings.Contains(quick, want) {
			t.Errorf("README's quick start does not say %s", want)
		}
	}
}

// TestDemoNoPostgres: `demo --no-postgres` says that is why it watches the
// capsules topic only, not that PostgreSQL is missing, and says the default
// deadline.
func TestDemoNoPostgres(t *testing.T) {
	d := startDemo(t, "--partitions", "1", "--no-postgres")
	d.await(60*time.Second, "metrics line", func(out string) bool { return strings.Contains(out, "metrics:  http://") })
	out := d.out.String()
	if !strings.Contains(out, "\nstages:   capsules (capsule-events topic) only: --no-postgres\n") || strings.Contains(out, "not found") {
		t.Errorf("demo --no-postgres does not say why it has no database stage:\n%s", out)
	}
	if !strings.Contains(out, "\ndeadline: 1m: ") {
		t.Errorf("the start output does not say the default deadline:\n%s", out)
	}
	if c := d.stop(); c != 0 {
		t.Fatalf("demo exited %d after Ctrl-C; stderr:\n%s", c, d.errb.String())
	}
}

// TestDemoBadDeadline: an invalid SLO_CANARY_CANARY_DEADLINE is a usage
// error, said before anything starts.
func TestDemoBadDeadline(t *testing.T) {
	t.Setenv("SLO_CANARY_CANARY_DEADLINE", "5x")
	code, out, errs := runCLI(t, "demo", "--listen", "127.0.0.1:0")
	if code != exitConfig || !strings.Contains(errs, `SLO_CANARY_CANARY_DEADLINE: invalid deadline "5x"`) || out != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 2 naming the variable, nothing started", code, out, errs)
	}
}
