#!/usr/bin/env bash
# Installs the era's official clients that tests/tests/e2e/clients.rs drives: npm smooch-core
# 1.1.2, 2.1.0 and 3.5.0 (tests/clients/package-lock.json) and PyPI python-smooch 1.0.4 in a
# venv (tests/clients/requirements.txt). Idempotent; a no-op when they are installed.
set -euo pipefail
cd "$(dirname "$0")/../tests/clients"
command -v node >/dev/null || { echo "node (>= 18) is required for the client tests" >&2; exit 1; }
if [ ! -d node_modules/smooch-core-3 ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
if [ ! -x .venv/bin/python ] || [ requirements.txt -nt .venv/.installed ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q python3-venv >/dev/null
    elif sudo -n true 2>/dev/null; then sudo apt-get install -y -q python3-venv >/dev/null
    else echo "python3-venv is required for the client tests (apt-get install python3-venv)" >&2; exit 1
    fi
  fi
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  touch .venv/.installed
fi
