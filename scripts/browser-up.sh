#!/usr/bin/env bash
# Installs what the real-time tests drive: the npm packages of tests/browser (the faye 1.1
# client, the Web Messenger 3.9.3 with its peers, esbuild, playwright-core) from its
# package-lock.json; the Web Messenger bundled into tests/browser/build/smooch.js; and
# Debian's chromium, with apt, when it is missing. Idempotent; a no-op when all is in place.
set -euo pipefail
cd "$(dirname "$0")/../tests/browser"
command -v node >/dev/null || { echo "node (>= 18) is required for the real-time tests" >&2; exit 1; }

if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "chromium is missing and cannot be installed here (neither root nor passwordless sudo):" \
      "install Debian's chromium (apt-get install chromium) for the Web Messenger test" >&2
    exit 1
  fi
  echo "installing chromium with apt" >&2
  if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >&2; then
    echo "installing chromium with apt failed: the Web Messenger test needs it" >&2
    exit 1
  fi
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
if [ ! -f build/smooch.js ] || [ node_modules/.package-lock.json -nt build/smooch.js ] ||
  [ bundle-webmessenger.js -nt build/smooch.js ]; then
  node bundle-webmessenger.js
fi
