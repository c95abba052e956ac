#!/usr/bin/env bash
# demo.sh — build zhost, start the broker on its defaults, and show two
# clients exchanging a message through it. The README's run command.
#   scripts/demo.sh          leaves the broker running (Ctrl-C stops it)
#   scripts/demo.sh --once   stops the broker after the demo
#   other arguments go to zhost-broker, e.g. --frontend tcp://127.0.0.1:7200
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target zhost-broker >/dev/null

once=0
args=()
for a in "$@"; do
  if [ "$a" = "--once" ]; then once=1; else args+=("$a"); fi
done
out=$(mktemp)
./build/zhost-broker "${args[@]}" >"$out" &
broker=$!
trap 'kill -TERM $broker 2>/dev/null; wait $broker 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do
  grep -q '^ready$' "$out" && break
  kill -0 $broker 2>/dev/null || { echo "demo: the broker did not start" >&2; exit 1; }
  sleep 0.1
done
frontend=$(awk '$1=="frontend"{print $2; exit}' "$out")
echo "demo: broker pid $broker listening on $frontend"
/usr/bin/python3 examples/demo.py "$frontend"
if [ $once = 1 ]; then
  exit 0
fi
echo "demo: the broker keeps running on $frontend; press Ctrl-C to stop it"
wait $broker
