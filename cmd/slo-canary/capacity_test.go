package main

import (
	"strings"
	"testing"
)

// TestTestbedCapacityFlag: a --capacity that is not a rate is a usage error
// naming the flag, before anything starts.
func TestTestbedCapacityFlag(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"fast", "-5/s", "8000"} {
		code, _, errs := runCLI(t, "testbed", "--no-postgres", "--capacity", bad)
		if code != exitConfig || !strings.Contains(errs, "--capacity") {
			t.Errorf("testbed --capacity %s: exit %d, stderr %q; want 2 naming --capacity", bad, code, errs)
		}
	}
}
