#!/usr/bin/env bash
# Installs what the real-time tests drive: the npm packages of tests/browser (the faye 1.1
# client), from its package-lock.json. Idempotent; a no-op when they are installed.
set -euo pipefail
cd "$(dirname "$0")/../tests/browser"
command -v node >/dev/null || { echo "node (>= 18) is required for the real-time tests" >&2; exit 1; }
if [ ! -d node_modules/faye ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
