#!/usr/bin/env bash
# Installs what the real-time tests drive: the npm packages of tests/browser (the faye 1.1
# client, the Web Messenger 3.9.3 with its peers, esbuild, playwright-core) from its
# package-lock.json; the Web Messenger bundled into tests/browser/build/smooch.js; and
# Debian's chromium, with apt, when it is missing. Idempotent; a no-op when all is in place.
set -euo pipefail
cd "$(dirname "$0")/../tests/browser"
command -v node >/dev/null || { echo "node (>= 18) is required for the real-time tests" >&2; exit 1; }

command -v chromium >/dev/null || ../../scripts/apt-install.sh "the Web Messenger test" chromium

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
if [ ! -f build/smooch.js ] || [ node_modules/.package-lock.json -nt build/smooch.js ] ||
  [ bundle-webmessenger.js -nt build/smooch.js ]; then
  node bundle-webmessenger.js
fi
