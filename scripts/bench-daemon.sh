#!/usr/bin/env bash
# Measures the canary daemon's own cost at the default marker rate (one marker
# per partition per second) against 10 partitions and one SQL observer, over
# DURATION seconds (default 60) after a 10 s warm-up, beside a peer: a bare
# franz-go producer sending the same records per second to the same broker.
# Prints CPU (% of one core) and peak RSS for both, and the ratio.
#
#   scripts/bench-daemon.sh [DURATION] [RATE]
#
# RATE is markers per partition per second (default 1). As a soak:
#   scripts/bench-daemon.sh 1800 10   # 30 min at 10x; RSS must stay flat
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
RATE=${2:-1}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

go build -o "$tmp/slo-canary" ./cmd/slo-canary
go build -o "$tmp/peer" ./internal/bench/peerproducer

"$tmp/slo-canary" testbed --partitions 10 --write-config "$tmp/canary.yaml" --canary-listen 127.0.0.1:0 --log-level warn >"$tmp/testbed.out" 2>"$tmp/testbed.err" &
pids+=($!)
for _ in $(seq 1 120); do [ -s "$tmp/canary.yaml" ] && grep -q '^config:' "$tmp/testbed.out" && break; sleep 0.5; done
[ -s "$tmp/canary.yaml" ] || { cat "$tmp/testbed.err"; echo "testbed did not start" >&2; exit 1; }
broker=$(awk '/^kafka:/ {print $2}' "$tmp/testbed.out" | cut -d, -f1)

# One SQL observer: the capsule-topic stage off. A free port for its /metrics.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SLO_CANARY_HTTP_LISTEN=127.0.0.1:$port SLO_CANARY_OBSERVERS_CAPSULES_ENABLED=false SLO_CANARY_LOG_LEVEL=warn SLO_CANARY_CANARY_RATE=$RATE \
  "$tmp/slo-canary" run --config "$tmp/canary.yaml" 2>"$tmp/canary.err" &
canary=$!; pids+=($canary)
"$tmp/peer" -brokers "$broker" -topic raw-telemetry-peer -partitions 10 -rate "$RATE" 2>"$tmp/peer.err" &
peer=$!; pids+=($peer)

sleep 10 # warm-up: connections, metadata, first polls
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2; exit}'; }
c0=$(cpu $canary); p0=$(cpu $peer); cmax=0; pmax=0; q1=0
# A timeline every SAMPLE seconds (default 60): RSS, goroutines, markers
# tracked, so a soak shows whether anything keeps growing.
SAMPLE=${SAMPLE:-60}
printf "%8s %10s %11s %9s %12s\n" "t (s)" "RSS MiB" "goroutines" "tracked" "heap MiB" >&2
for i in $(seq 1 "$DURATION"); do
  sleep 1
  r=$(rss $canary); [ "$r" -gt "$cmax" ] && cmax=$r
  if [ $((i % SAMPLE)) -eq 0 ]; then
    printf "%8d %10.1f %11s %9s %12.1f\n" "$i" "$(awk -v r="$r" 'BEGIN {print r/1024}')" "$(metric go_goroutines)" \
      "$(metric slo_canary_markers_tracked)" "$(metric go_memstats_heap_inuse_bytes | awk '{print $1/1048576}')" >&2
  fi
  [ "$i" -eq $((DURATION/4)) ] && q1=$cmax
  r=$(rss $peer); [ "$r" -gt "$pmax" ] && pmax=$r
done
c1=$(cpu $canary); p1=$(cpu $peer)
kill -0 $canary || { cat "$tmp/canary.err"; echo "canary died" >&2; exit 1; }

awk -v c=$((c1-c0)) -v p=$((p1-p0)) -v t="$ticks" -v d="$DURATION" -v cm="$cmax" -v pm="$pmax" -v q1="$q1" -v r="$RATE" 'BEGIN {
  cc = 100*c/t/d; pc = 100*p/t/d
  printf "%-34s %14s %14s\n", "over " d " s (10 partitions, " 10*r " msg/s)", "CPU % of core", "peak RSS MiB"
  printf "%-34s %14.3f %14.1f\n", "slo-canary run (1 SQL observer)", cc, cm/1024
  printf "%-34s %14.3f %14.1f\n", "peer: bare franz-go producer", pc, pm/1024
  if (pc > 0) printf "%-34s %14.2fx %13.2fx\n", "ratio canary/peer", cc/pc, cm/pm
  if (q1 > 0) printf "canary peak RSS after the first quarter: %.1f MiB, at the end: %.1f MiB\n", q1/1024, cm/1024
}'
