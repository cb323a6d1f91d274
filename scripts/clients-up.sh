#!/usr/bin/env bash
# Installs the era's official clients that tests/tests/e2e/clients.rs drives: npm smooch-core
# 1.1.2, 2.1.0 and 3.5.0 side by side (npm aliases, tests/clients/package-lock.json) and PyPI
# python-smooch 1.0.4 in a venv, tests/clients/.venv (tests/clients/requirements.txt), with
# Debian's python3-venv installed by apt when the venv module is missing. Idempotent; a no-op
# when they are installed and their lists have not changed.
set -euo pipefail
cd "$(dirname "$0")/../tests/clients"
command -v node >/dev/null && command -v npm >/dev/null ||
  { echo "node (>= 18) and npm are required for the client tests" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required for the python-smooch test" >&2; exit 1; }

if [ ! -f node_modules/.package-lock.json ] || [ ! -d node_modules/smooch-core-3 ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# Debian's python3 ships without venv and ensurepip; they come with python3-venv.
python3 -c 'import venv, ensurepip' 2>/dev/null ||
  ../../scripts/apt-install.sh "the python-smooch test" python3-venv

# .venv/.installed marks a complete install: an interrupted one is started over.
if [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  touch .venv/.installed
fi
