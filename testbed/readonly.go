package testbed

import _ "embed"

// ReadOnlyRoleSQL creates the least-privilege role the canary should connect
// as (ServeReadRole on ServeDatabase): CONNECT, USAGE on schema public and
// SELECT on telemetry_events, read-only by default. The README shows this
// file, Serve runs it, and a test proves the canary works under it and can
// write nothing.
//
//go:embed readonly-role.sql
var ReadOnlyRoleSQL string
