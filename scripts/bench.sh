#!/usr/bin/env bash
# bench.sh — build zhost-bench (with the broker and test proc beside it) and
# run its two measurements, one after the other (never in parallel):
# throughput + latency, then instructions per message under callgrind.
# Extra arguments go to both runs, e.g.
#   scripts/bench.sh --repeat 5 --json
#   scripts/bench.sh --bare-as-zhp --pin
# Environment: ZHOST_BROKER (the broker binary; default the one built here),
# ZHOST_BENCH_BUILD (build dir, default build-bench), ZHOST_BENCH_BUILD_TYPE
# (default RelWithDebInfo, as build/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ZHOST_BENCH_BUILD:-$root/build-bench}
type=${ZHOST_BENCH_BUILD_TYPE:-RelWithDebInfo}

bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="$type" >/dev/null
cmake --build "$build" -j"$(nproc)" --target zhost-bench zhost-broker zh-test-proc >/dev/null

broker=${ZHOST_BROKER:-$build/zhost-broker}

echo "== throughput and latency (broker: $broker)" >&2
"$build/zhost-bench" --broker "$broker" "$@"
echo "== callgrind" >&2
"$build/zhost-bench" --broker "$broker" --callgrind "$@"
