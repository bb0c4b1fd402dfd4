package main

import (
	"fmt"
	"io"
	"time"

	"github.com/slo-scout/slo-canary/queries"
)

// queryProgress shows a query concurrency run's progress as a burst's is
// shown (progressPrinter): on a terminal one line rewritten in place, elsewhere
// (CI logs) a plain line every 5 seconds. done ends it before the results are
// printed.
func queryProgress(w io.Writer) (progress func(queries.RunProgress), done func()) {
	tty := isTerminal(w)
	run, n := 0, 0
	progress = func(p queries.RunProgress) {
		if p.Index != run {
			run, n = p.Index, 0
		}
		n++
		left := "waiting for the last answers"
		if p.Left > 0 {
			left = p.Left.Round(time.Second).String() + " left"
		}
		line := fmt.Sprintf("[%s] run %d/%d, probe %s: %d/%d requests done, %d failed, p95 %s, %s",
			p.Run, p.Index, p.Runs, p.Probe, p.Done, p.Requests, p.Failed, p.P95.Round(time.Millisecond), left)
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
			return
		}
		if n%5 == 0 {
			fmt.Fprintln(w, line)
		}
	}
	done = func() {
		if tty {
			fmt.Fprint(w, "\r\033[K")
		}
	}
	return progress, done
}
