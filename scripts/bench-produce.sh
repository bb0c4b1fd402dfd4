#!/usr/bin/env bash
# Produce-rate benchmark of the burst runner against peers, all sending to one
# kfake broker in another process: a bare franz-go loop, kcat (librdkafka) and
# kafka-python. Prints a table. Not run in CI.
#
#   scripts/bench-produce.sh [flags of internal/bench/produce, e.g. -n 2000000 -compression none]
#
# The broker acknowledges without storing by default (kfake.BlackholeProduce);
# -broker-storage makes it keep every batch. -runner-rate 1000000 paces the
# runner as a burst does and prints the slowest and fastest whole second.
# -h lists the rest (buffer depth, linger, CPU profiles of producer and broker).
#
# Then the per-event cost of building and encoding a load event:
#   go test -run '^$' -bench 'LoadEvent' -benchmem ./canary/
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v kcat >/dev/null || need+=(kcat)
/usr/bin/python3 -c 'import kafka' 2>/dev/null || need+=(python3-kafka)
/usr/bin/python3 -c 'import snappy' 2>/dev/null || need+=(python3-snappy)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing: ${need[*]} (apt-get install them, or run as root)" >&2
  fi
fi
bin=$(mktemp -d)/bench-produce
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./internal/bench/produce
"$bin" "$@"
