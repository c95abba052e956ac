#!/usr/bin/env bash
# setup.sh — install what zhost needs to build and test, and nothing more.
# Idempotent: packages already present are not touched; apt-get runs only
# when something is missing. Used by the README's commands and by .ci/run.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
  libzmq3-dev libczmq-dev libmsgpack-dev libcmocka-dev
  python3 python3-zmq python3-msgpack python3-pytest
  valgrind iproute2 procps
  docker-compose python3-yaml tini
  nodejs npm
  dpkg-dev file adduser
)

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
