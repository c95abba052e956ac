#!/usr/bin/env bash
# demo.sh — the README's run command: build zhost, start a broker that
# spawns two procs (the C echo build/zhost-echo as `e1`, the Python echo
# examples/py_echo_proc.py as `pyecho`), list them with zhost-ctl, have
# clients ask them (zhost-ping → e1, examples/py_client.py → pyecho, and
# examples/demo.py: two raw ZHP/1 clients talking), show what the broker
# kept of a proc's output, and shut down cleanly.
#   scripts/demo.sh          leaves the broker and its procs running (Ctrl-C
#                            stops them)
#   scripts/demo.sh --once   ends with `zhost-ctl shutdown` and checks that
#                            the broker exits 0 (CI runs this)
#   other arguments go to zhost-broker, e.g. --frontend tcp://127.0.0.1:7200
#   or --runtime-dir /tmp/zh-demo
# Every wait is bounded; any failed step stops the demo with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" \
  --target zhost-broker zhost-ctl zhost-echo zhost-ping >/dev/null

once=0
args=()
for a in "$@"; do
  if [ "$a" = "--once" ]; then once=1; else args+=("$a"); fi
done

say() { echo "demo: $*"; }
out=$(mktemp /tmp/zhost-demo-out.XXXXXX)
log=$(mktemp /tmp/zhost-demo-log.XXXXXX)
broker=""

# Is PID still running (a zombie counts as gone)?
alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# Wait at most $1 seconds for the broker to exit; its exit status, 124 if
# it is still running.
wait_broker() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    if ! alive "$broker"; then
      local rc=0
      wait "$broker" || rc=$?
      broker=""
      return $rc
    fi
    sleep 0.1
  done
  return 124
}

fail() {
  echo "demo: FAILED: $*" >&2
  if [ -s "$log" ]; then
    echo "demo: the broker's last log lines:" >&2
    tail -n 20 "$log" >&2
  fi
  exit 1
}

cleanup() {
  if [ -n "$broker" ]; then
    kill -TERM "$broker" 2>/dev/null || true
    # SIGTERM is the broker's shutdown: its procs get STOP, then SIGTERM and
    # SIGKILL (10s apart by default), then a 2s linger.
    local rc=0
    wait_broker 30 || rc=$?
    if [ $rc = 124 ]; then
      echo "demo: the broker ignored SIGTERM for 30s; killing it" >&2
      kill -KILL "$broker" 2>/dev/null || true
      wait "$broker" 2>/dev/null || true
    else
      say "stopped the broker (exit $rc)"
    fi
  fi
  rm -f "$out" "$log"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Show a command, then run it; a failure ends the demo.
run() {
  echo "demo: \$ $*"
  "$@" || fail "'$*' exited $?"
}

./build/zhost-broker "${args[@]}" \
  --spawn e1=build/zhost-echo \
  --spawn "pyecho=/usr/bin/python3 examples/py_echo_proc.py" >"$out" 2>"$log" &
broker=$!
for _ in $(seq 100); do
  grep -q '^ready$' "$out" && break
  alive "$broker" || { broker=""; fail "the broker did not start"; }
  sleep 0.1
done
grep -q '^ready$' "$out" || fail "the broker did not say ready within 10s"
frontend=$(awk '$1=="frontend"{print $2; exit}' "$out")
endpoint=$(awk '$1=="advertise"{print $2; exit}' "$out")
control=$(awk '$1=="control"{print $2; exit}' "$out")
rtdir=${control#ipc://}
rtdir=${rtdir%/control}
say "broker pid $broker listening on $frontend, runtime dir $rtdir, log in $log"
ctl() { ./build/zhost-ctl --runtime-dir "$rtdir" "$@"; }

# The spawned procs are started; wait (at most 40s: longer than the broker's
# 30s ready timeout) until each has sent READY or failed.
for name in e1 pyecho; do
  status=""
  for _ in $(seq 200); do
    status=$(ctl list 2>/dev/null | awk -v n="$name" '$1==n {print $2}' || true)
    case $status in ready | failed | stopped | killed) break ;; esac
    alive "$broker" || fail "the broker exited"
    sleep 0.2
  done
  if [ "$status" != ready ]; then
    ctl status "$name" >&2 || true
    fail "proc $name is '${status:-not listed}', not ready"
  fi
done

run ./build/zhost-ctl --runtime-dir "$rtdir" list
run ./build/zhost-ping -c 3 -i 100 "$frontend" "echo.e1@$endpoint"
run /usr/bin/python3 examples/py_client.py "$frontend" pyecho -n 200
run /usr/bin/python3 examples/demo.py "$frontend"
run ./build/zhost-ctl --runtime-dir "$rtdir" logs pyecho

if [ $once = 0 ]; then
  say "the broker keeps running on $frontend with e1 and pyecho; try"
  say "  build/zhost-ctl --runtime-dir $rtdir list"
  say "  build/zhost-ping $frontend echo.pyecho@$endpoint"
  say "press Ctrl-C to stop it (or: build/zhost-ctl --runtime-dir $rtdir shutdown)"
  rc=0
  wait "$broker" || rc=$?
  broker=""
  say "the broker exited $rc"
  exit $rc
fi

run ./build/zhost-ctl --runtime-dir "$rtdir" shutdown
rc=0
wait_broker 30 || rc=$?
[ $rc = 124 ] && fail "the broker was still running 30s after shutdown"
[ $rc = 0 ] || fail "the broker exited $rc after shutdown"
grep -q 'proc name=e1 from=stopping to=stopped .*exit_code=0' "$log" \
  || fail "the broker's log does not say e1 stopped with exit 0"
grep -q 'proc name=pyecho from=stopping to=stopped .*exit_code=0' "$log" \
  || fail "the broker's log does not say pyecho stopped with exit 0"
say "shutdown: e1 and pyecho stopped (exit 0), the broker exited 0"
say "done: every step passed"
