#!/usr/bin/env bash
# bench.sh — build zhost-bench and run its two measurements, one after the
# other (never in parallel): throughput + latency, then instructions per
# message under callgrind. Extra arguments go to both runs, e.g.
#   scripts/bench.sh --repeat 5 --json
# Environment: ZHOST_BROKER (the broker binary; default build-bench/ or
# build-broker/), ZHOST_BENCH_BUILD (build dir, default build-bench),
# ZHOST_BENCH_BUILD_TYPE (default RelWithDebInfo, as build-broker).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ZHOST_BENCH_BUILD:-$root/build-bench}
type=${ZHOST_BENCH_BUILD_TYPE:-RelWithDebInfo}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="$type" >/dev/null
cmake --build "$build" -j1 --target zhost-bench >/dev/null

broker=${ZHOST_BROKER:-}
if [ -z "$broker" ]; then
  for b in "$root/build-broker/zhost-broker" "$build/zhost-broker"; do
    if [ -x "$b" ]; then broker=$b; break; fi
  done
fi
args=()
if [ -n "$broker" ]; then args+=(--broker "$broker"); fi

echo "== throughput and latency (broker: ${broker:-none})" >&2
"$build/zhost-bench" "${args[@]}" "$@"
echo "== callgrind" >&2
"$build/zhost-bench" "${args[@]}" --callgrind "$@"
