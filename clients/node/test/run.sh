#!/usr/bin/env bash
# clients/node/test/run.sh — ctest's wrapper for the Node client tests: npm ci when
# node_modules is missing (or older than package-lock.json), then node --test.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node-client: node and npm are required (scripts/setup.sh installs them)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
  echo "node-client: Node >= 18 needed, found $(node --version)" >&2
  exit 1
fi
if [ ! -d node_modules/zeromq ] || [ ! -d node_modules/@msgpack/msgpack ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules
fi
exec node --test test/*.test.js
