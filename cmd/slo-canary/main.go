// Command slo-canary continuously proves or disproves SLO-Scout's promises: it
// sends marker events through the pipeline, finds them again downstream, and
// exports what it measured as Prometheus metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// exitError carries a process exit code up to run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure, or a gate that found a breached budget
	exitConfig  = 2 // invalid configuration or usage: nothing was started
)

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "slo-canary:", err)
	return exitConfig // cobra's own errors are usage errors
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "slo-canary",
		Short:         "Continuous SLO canary for the SLO-Scout telemetry pipeline",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newRunCmd(),
		newCheckConfigCmd(),
		newDemoCmd(),
		newTestbedCmd(),
		newVersionCmd(),
		newBurstCmd(),
		newGateCmd(),
		newCapacityCmd(),
		newQueriesCmd(),
	)
	return root
}
