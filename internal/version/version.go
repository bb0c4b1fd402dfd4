// Package version carries the build's identity, stamped with -ldflags -X.
package version

import "runtime"

// Set at build time: -ldflags "-X github.com/slo-scout/slo-canary/internal/version.Version=v1.2.3 ...".
var (
	Version  = "dev"
	Revision = "unknown"
)

// GoVersion is the toolchain that built the binary.
var GoVersion = runtime.Version()
