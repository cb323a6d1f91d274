#!/usr/bin/env bash
# Installs Debian packages with apt, as root or through passwordless sudo, for the setup
# scripts that find something missing: apt-install.sh WHAT-NEEDS-THEM PACKAGE...
# Fails with a message naming the packages and what needs them when it cannot install.
set -euo pipefail
[ "$#" -ge 2 ] || { echo "usage: $0 WHAT-NEEDS-THEM PACKAGE..." >&2; exit 2; }
need=$1
shift
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "$* is missing and cannot be installed here (neither root nor passwordless sudo):" \
    "install Debian's $* (apt-get install $*) for $need" >&2
  exit 1
fi
echo "installing $* with apt" >&2
if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } >&2; then
  echo "installing $* with apt failed: $need needs it" >&2
  exit 1
fi
