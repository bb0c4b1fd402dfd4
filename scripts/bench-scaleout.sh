#!/usr/bin/env bash
# What a scaled-out burst costs each member: the same total rate shared by 1,
# 2 and 3 replicas (bursts.scale_out, docs/replicas.md), each `slo-canary run`
# its own process, against a fresh `slo-canary testbed --no-postgres` (kfake
# that stores, and the reference stream stage) per group size. Prints a
# table per member: events sent, achieved rate and its share of the target,
# CPU while the burst ran (from /proc/<pid>/stat, announced start to report),
# the member's idle CPU over the same time (measured before the burst) and the
# CPU per event net of it; then the totals and the testbed's CPU. Not run in
# CI; about 3 minutes. Linux only.
#
#   scripts/bench-scaleout.sh [-rate 60000] [-duration 20s] [-members 1,2,3] [-partitions 6] [-keep DIR]
#
# The built binary runs (no -race). -keep DIR keeps the configs, logs and
# burst reports.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/slo-canary" ./cmd/slo-canary
go build -o "$tmp/bench-scaleout" ./internal/bench/scaleout
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$tmp/bench-scaleout" -bin "$tmp/slo-canary" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
