#!/usr/bin/env bash
# test.sh — build zhost and run every test (unit, integration, client).
# The README's test command. Installs missing packages first (setup.sh).
#   scripts/test.sh            normal build in build/
#   BUILD_DIR=build-asan CMAKE_ARGS="-DZH_SANITIZE=ON" scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
JOBS=$(nproc 2>/dev/null || echo 2)
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j"$JOBS"
ctest --test-dir "$BUILD_DIR" --output-on-failure "$@"
