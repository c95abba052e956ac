#!/usr/bin/env bash
# check-install.sh — check what `cmake --install` and `cpack -G DEB` make
# (docs/install.md). Called by .ci/run; safe on a dev machine.
#  1. build with prefix /usr and install into a scratch DESTDIR
#  2. installed programs run (--version)
#  3. packaging/example built against the install with pkg-config (shared,
#     static) and with find_package(zhost) (zhost::zhost, zhost::zhost_static)
#  4. the installed broker, with a temp runtime dir and the installed
#     zhost-echo spawned, answers each of those four programs' request
#  5. the .deb: Depends, contents (dpkg-deb, dpkg -x), the programs in it run,
#     postinst is idempotent (run twice with stubbed adduser/getent)
#  6. only with CI=true as root (a throwaway machine): apt-get install the
#     .deb for real, the zhost user exists, the broker runs as zhost on
#     /run/zhost with /etc/zhost/zhost.conf and zhost-ctl pings it; purge.
# Nothing outside BUILD_DIR and a mktemp dir is written unless step 6 runs.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
BUILD_DIR=${BUILD_DIR:-build-install}
JOBS=$(nproc 2>/dev/null || echo 2)
SCRATCH=$(mktemp -d /tmp/zhost-check-install.XXXXXX)
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
say() { echo "check-install: $*"; }
# `producer | has PATTERN`: grep -q on all of the producer's output. (With
# pipefail, `producer | grep -q` fails when grep exits at the first match
# and the producer, still writing, dies of SIGPIPE: `dpkg-deb -I | grep -q`
# did, about once in 20 runs.)
has() { local all; all=$(cat); grep -q "$@" <<<"$all"; }
fail() { echo "check-install: FAIL: $*" >&2; exit 1; }

# 1. build and install into DESTDIR
cmake -S . -B "$BUILD_DIR" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j"$JOBS" >/dev/null
ROOT=$SCRATCH/root
DESTDIR=$ROOT cmake --install "$BUILD_DIR" >/dev/null
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || true)
LIBDIR=$ROOT/usr/lib${MULTIARCH:+/$MULTIARCH}
for f in usr/bin/zhost-broker usr/bin/zhost-ctl usr/bin/zhost-echo usr/bin/zhost-ping \
         usr/include/zhost/zhost.h etc/zhost/zhost.conf \
         usr/lib/systemd/system/zhost-broker.service \
         usr/share/man/man8/zhost-broker.8 usr/share/man/man1/zhost-ctl.1; do
  [ -e "$ROOT/$f" ] || fail "cmake --install did not install /$f"
done
for f in libzhost.so libzhost.so.0 libzhost.a pkgconfig/zhost.pc cmake/zhost/zhostConfig.cmake; do
  [ -e "$LIBDIR/$f" ] || fail "cmake --install did not install $LIBDIR/$f"
done
soname=$(objdump -p "$LIBDIR/libzhost.so" | awk '/SONAME/ {print $2}')
[ "$soname" = libzhost.so.0 ] || fail "SONAME is '$soname'"
leaked=$(nm -D --defined-only "$LIBDIR/libzhost.so" | awk '$2 ~ /[TDBR]/ && $3 !~ /^zhost_/ {print $3}')
[ -z "$leaked" ] || fail "libzhost.so exports non-API symbols: $leaked"
say "installed into $ROOT: SONAME $soname, $(nm -D --defined-only "$LIBDIR/libzhost.so" | grep -c ' T zhost_') functions exported, all zhost_*"

# 2. installed programs run
"$ROOT/usr/bin/zhost-broker" --version
"$ROOT/usr/bin/zhost-ctl" --version
man -l "$ROOT/usr/share/man/man8/zhost-broker.8" >/dev/null 2>&1 || say "(man not available: pages not rendered)"

# 3. consumers of the installed library
EX=$SCRATCH/example
mkdir -p "$EX"
export PKG_CONFIG_SYSROOT_DIR=$ROOT
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
CFLAGS_ZH=$(pkg-config --cflags zhost)
# shellcheck disable=SC2086
cc -Wall -Wextra -Werror $CFLAGS_ZH -o "$EX/pc-shared" packaging/example/zhost-install-check.c \
  $(pkg-config --libs zhost)
# Static libzhost, shared dependencies: name the archive (-lzhost would pick
# the .so beside it) and link what zhost.pc's Requires.private names.
# (`pkg-config --static` would pull in static libzmq's whole closure, and
# Debian 12's norm.pc lists a bare libprotokit.a that is not shipped.)
# shellcheck disable=SC2086
cc -Wall -Wextra -Werror $CFLAGS_ZH -o "$EX/pc-static" packaging/example/zhost-install-check.c \
  "$LIBDIR/libzhost.a" $(pkg-config --libs libzmq libczmq msgpack) -pthread
pkg-config --print-requires-private zhost | has libczmq || fail "zhost.pc: no Requires.private"
unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_PATH
cmake -S packaging/example -B "$EX/cmake" -DCMAKE_PREFIX_PATH="$ROOT/usr" >/dev/null
cmake --build "$EX/cmake" >/dev/null
cp "$EX/cmake/check-shared" "$EX/cmake-shared"
cp "$EX/cmake/check-static" "$EX/cmake-static"
for p in pc-shared cmake-shared; do
  objdump -p "$EX/$p" | has 'NEEDED.*libzhost.so.0' || fail "$p does not link libzhost.so.0"
done
for p in pc-static cmake-static; do
  if objdump -p "$EX/$p" | has 'NEEDED.*libzhost'; then fail "$p links libzhost dynamically"; fi
done
say "built the example with pkg-config and find_package, shared and static"

# 4. the installed broker answers them (installed zhost-echo as e1)
RT=$SCRATCH/rt
"$ROOT/usr/bin/zhost-broker" --runtime-dir "$RT" --frontend tcp://127.0.0.1:0 \
  --spawn "e1=$ROOT/usr/bin/zhost-echo" --log-level warn >"$SCRATCH/broker.out" 2>"$SCRATCH/broker.err" &
BROKER_PID=$!
endpoint=""
for _ in $(seq 100); do
  endpoint=$(awk '/^frontend / {print $2; exit}' "$SCRATCH/broker.out")
  if [ -n "$endpoint" ] && "$ROOT/usr/bin/zhost-ctl" --runtime-dir "$RT" list 2>/dev/null \
       | has '^e1 *ready'; then break; fi
  sleep 0.1
done
[ -n "$endpoint" ] || { cat "$SCRATCH/broker.err" >&2; fail "the installed broker printed no frontend"; }
"$ROOT/usr/bin/zhost-ctl" --runtime-dir "$RT" ping
for p in pc-shared pc-static cmake-shared cmake-static; do
  LD_LIBRARY_PATH=$LIBDIR "$EX/$p" "$endpoint" "echo.e1:2@$endpoint" || fail "$p got no echo"
done
LD_LIBRARY_PATH=$LIBDIR ldd "$EX/pc-shared" | has "$LIBDIR/libzhost.so.0" \
  || fail "pc-shared did not load the installed libzhost.so.0"
"$ROOT/usr/bin/zhost-ctl" --runtime-dir "$RT" shutdown >/dev/null
wait "$BROKER_PID" || fail "the broker exited $? after shutdown"
BROKER_PID=""
say "the installed broker echoed to all four programs, then shut down cleanly"

# 5. the .deb
(cd "$BUILD_DIR" && cpack -G DEB >/dev/null)
DEB=$(ls -t "$BUILD_DIR"/zhost_*.deb | head -n 1)
depends=$(dpkg-deb -f "$DEB" Depends)
say "$(basename "$DEB"): $(stat -c %s "$DEB") bytes, Depends: $depends"
for d in libzmq5 libczmq4 libmsgpackc2 libmicrohttpd12 adduser libc6; do
  echo "$depends" | has "\b$d\b" || fail "Depends lacks $d"
done
dpkg-deb -I "$DEB" | has ' postinst' || fail "no postinst in the .deb"
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | has -x /etc/zhost/zhost.conf \
  || fail "/etc/zhost/zhost.conf is not a conffile"
X=$SCRATCH/deb
dpkg -x "$DEB" "$X"
for f in usr/bin/zhost-broker usr/bin/zhost-ctl usr/bin/zhost-echo usr/bin/zhost-ping \
         usr/lib/systemd/system/zhost-broker.service etc/zhost/zhost.conf \
         usr/include/zhost/zhost.h usr/share/man/man8/zhost-broker.8; do
  [ -e "$X/$f" ] || fail "the .deb lacks /$f"
done
[ -e "$X/usr/lib${MULTIARCH:+/$MULTIARCH}/libzhost.so.0" ] || fail "the .deb lacks libzhost.so.0"
"$X/usr/bin/zhost-broker" --version >/dev/null && "$X/usr/bin/zhost-ctl" --version >/dev/null
if command -v systemd-analyze >/dev/null; then
  # Offline check of the unit's syntax; ExecStart's binary is not installed here.
  out=$(systemd-analyze verify "$X/usr/lib/systemd/system/zhost-broker.service" 2>&1 || true)
  if echo "$out" | grep -v 'Command /usr/bin/zhost-broker is not executable\|not found\|No such file' \
       | has -i 'unknown\|invalid\|failed to parse'; then
    echo "$out" >&2; fail "systemd-analyze verify complains about the unit"
  fi
fi
# postinst twice, with stubs recording what it would do: adduser once.
STUB=$SCRATCH/stub
mkdir -p "$STUB"
cat >"$STUB/getent" <<EOF
#!/bin/sh
[ -e "$STUB/user" ]
EOF
cat >"$STUB/adduser" <<EOF
#!/bin/sh
echo "\$*" >>"$STUB/adduser.log"; touch "$STUB/user"
EOF
cat >"$STUB/deb-systemd-helper" <<EOF
#!/bin/sh
echo "\$*" >>"$STUB/dsh.log"
EOF
cat >"$STUB/systemctl" <<EOF
#!/bin/sh
echo "\$*" >>"$STUB/systemctl.log"
EOF
chmod +x "$STUB"/*
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./postinst >"$STUB/postinst"
PATH=$STUB:$PATH sh "$STUB/postinst" configure
PATH=$STUB:$PATH sh "$STUB/postinst" configure
[ "$(wc -l <"$STUB/adduser.log")" -eq 1 ] || fail "postinst ran adduser $(wc -l <"$STUB/adduser.log") times"
grep -q -- '--system --group' "$STUB/adduser.log" || fail "postinst: adduser not --system --group"
grep -q 'enable zhost-broker.service' "$STUB/dsh.log" || fail "postinst does not enable the unit"
if grep -q 'start' "$STUB/systemctl.log" 2>/dev/null; then fail "postinst starts the unit"; fi
say "the .deb holds the files, its postinst makes the user once and does not start the broker"

# 6. a real install, on a throwaway CI machine only
if [ "${CI:-}" = true ] && [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "./$DEB" >/dev/null
  getent passwd zhost >/dev/null || fail "no zhost user after apt-get install"
  dpkg-reconfigure zhost >/dev/null   # postinst again: idempotent
  zhost-broker --version
  zhost-ctl --version
  # What the unit does, without systemd (CI may have none running).
  install -d -m 0700 -o zhost -g zhost /run/zhost
  runuser -u zhost -- env ZHOST_RUNTIME_DIR=/run/zhost \
    zhost-broker --config /etc/zhost/zhost.conf --frontend tcp://127.0.0.1:0 \
    >"$SCRATCH/sys.out" 2>"$SCRATCH/sys.err" &
  BROKER_PID=$!
  ok=""
  for _ in $(seq 50); do
    if runuser -u zhost -- zhost-ctl --runtime-dir /run/zhost ping; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { cat "$SCRATCH/sys.err" >&2; fail "the packaged broker did not answer as zhost"; }
  runuser -u zhost -- zhost-ctl --runtime-dir /run/zhost shutdown >/dev/null
  wait "$BROKER_PID" || fail "the packaged broker exited $?"
  BROKER_PID=""
  rm -rf /run/zhost
  apt-get purge -y -qq zhost >/dev/null
  say "apt-get install of the .deb: user zhost, broker ran as zhost on /run/zhost; purged"
else
  say "not CI (CI=true, root): skipped the real apt-get install of the .deb"
fi
say "ok"
