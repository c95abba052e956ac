#!/usr/bin/env bash
# setup.sh — install what zhost needs to build and test, and nothing more.
# Idempotent: packages already present are not touched; apt-get runs only
# when something is missing. Used by the README's commands and by .ci/run.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
  libzmq3-dev libczmq-dev libmsgpack-dev libcmocka-dev libmicrohttpd-dev libjansson-dev
  nats-server libnats-dev
  python3 python3-zmq python3-msgpack python3-pytest python3-venv
  valgrind iproute2 procps
  docker-compose python3-yaml tini
  dpkg-dev file adduser
)

# The Node client needs node >= 18 and npm. A machine that has them already
# (Debian's packages, or another install on PATH) keeps them: Debian's npm
# cannot be installed beside a node that did not come from Debian.
node_ok() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -ge 18 ]
}
if ! node_ok; then PACKAGES+=(nodejs npm); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
