#!/usr/bin/env bash
# Precision and cost of the capacity search against the reference pipeline's
# known capacity. For each capacity, one `slo-canary testbed --capacity N/s`
# (in-process Kafka and a throwaway PostgreSQL); against it, one
# `slo-canary capacity --once` per precision. Prints a table: the rate found
# over the true capacity, the first failing rate and its check, the steps
# taken, the search's wall time and the events it produced. Not run in CI.
#
#   scripts/bench-capacity.sh
#
# Environment (defaults in brackets): CAPACITIES [4000 8000 16000] events/s,
# PRECISIONS [0.1 0.05 0.02], STEP, each step's duration [3s], START and MAX,
# the search's first and highest rate [1000/s, 32000/s], PARTITIONS [10],
# POLL, how often the canary polls the database [250ms: a dozen polls over a
# step's last three quarters, as a marker lag growth needs].
# The built binary runs (no -race); each search's JSON report and log stay in
# $KEEP if it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
CAPACITIES=${CAPACITIES:-"4000 8000 16000"}
PRECISIONS=${PRECISIONS:-"0.1 0.05 0.02"}
STEP=${STEP:-3s}
START=${START:-1000/s}
MAX=${MAX:-32000/s}
PARTITIONS=${PARTITIONS:-10}
POLL=${POLL:-250ms}

work=$(mktemp -d)
tb=""
cleanup() {
  if [ -n "$tb" ]; then
    kill "$tb" 2>/dev/null || true
    wait "$tb" 2>/dev/null || true
  fi
  if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP" && cp "$work"/*.json "$work"/*.log "$KEEP"/ 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/slo-canary" ./cmd/slo-canary
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "search: start $START, max $MAX, steps of $STEP, $PARTITIONS partitions, database polled every $POLL"
printf '%-9s %-9s %-10s %-7s %-16s %-12s %5s %8s %10s\n' \
  capacity precision found found/true first_fail failed_check steps wall_s events

for cap in $CAPACITIES; do
  cfg="$work/canary-$cap.yaml"
  "$work/slo-canary" testbed --capacity "$cap/s" --partitions "$PARTITIONS" --write-config "$cfg" \
    --canary-listen 127.0.0.1:0 --log-level warn >"$work/testbed-$cap.log" 2>&1 &
  tb=$!
  for _ in $(seq 1200); do
    [ -s "$cfg" ] && grep -q '^control:' "$work/testbed-$cap.log" && break
    kill -0 "$tb" 2>/dev/null || { cat "$work/testbed-$cap.log" >&2; exit 1; }
    sleep 0.1
  done
  # The search's settings (the testbed's config already watches the stream
  # stage's group): bursts allowed up to MAX, markers 1% of the load, a
  # step's rate within 2% of its target.
  grep -q '^consumer_lag:' "$cfg" || { echo "$cfg does not watch the stream stage's group" >&2; exit 1; }
  cat >>"$cfg" <<EOF
bursts:
  max_rate: 100000
  max_events: 10000000
  marker_share: 0.01
  budgets:
    rate_tolerance: 0.02
EOF
  for p in $PRECISIONS; do
    rep="$work/capacity-$cap-$p.json"
    SLO_CANARY_QUERIES_ENABLED=false SLO_CANARY_LOG_LEVEL=warn SLO_CANARY_OBSERVERS_DATABASE_POLL_INTERVAL=$POLL \
      "$work/slo-canary" capacity --once --config "$cfg" --start "$START" --max "$MAX" \
      --step-duration "$STEP" --precision "$p" --timeout 30m --report "$rep" --junit "" \
      >"$work/capacity-$cap-$p.log" 2>&1 || true
    if [ ! -s "$rep" ]; then
      echo "capacity $cap precision $p: no report" >&2
      cat "$work/capacity-$cap-$p.log" >&2
      continue
    fi
    /usr/bin/python3 - "$rep" "$cap" "$p" <<'EOF'
import json, re, sys
from datetime import datetime
r = json.load(open(sys.argv[1]))
cap, p = float(sys.argv[2]), sys.argv[3]
def ts(s):
    # Go writes nanoseconds; Python reads at most microseconds.
    s = re.sub(r"(\.\d{6})\d+", r"\1", s).replace("Z", "+00:00")
    return datetime.fromisoformat(s)
found = r.get("sustainable_rate_per_second")
fail = r.get("first_failing_rate_per_second")
wall = (ts(r["finished"]) - ts(r["started"])).total_seconds()
if r.get("aborted"):
    found_s, ratio = "aborted", r.get("abort_reason", "")
else:
    found_s = "none" if found is None else ("%.0f" % found) + ("+" if r.get("at_least_max") else "")
    ratio = "-" if found is None else "%.3f" % (found / cap)
print("%-9.0f %-9s %-10s %-7s %-16s %-12s %5d %8.1f %10d" % (
    cap, p, found_s, ratio, "-" if fail is None else "%.0f" % fail, r.get("failed_check") or "-",
    len(r.get("steps") or []), wall, r.get("events_sent", 0)))
EOF
  done
  kill "$tb" 2>/dev/null || true
  wait "$tb" 2>/dev/null || true
  tb=""
done
