#!/usr/bin/env bash
# Installs Debian's valgrind, with apt, when it is missing: the bench's `instructions`
# scenario runs the suite under its callgrind. Idempotent; a no-op when it is in place.
set -euo pipefail
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null && exit 0
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "valgrind is missing and cannot be installed here (neither root nor passwordless sudo):" \
    "install Debian's valgrind (apt-get install valgrind) for the bench's instructions scenario" >&2
  exit 1
fi
echo "installing valgrind with apt" >&2
if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind; } >&2; then
  echo "installing valgrind with apt failed: the bench's instructions scenario needs it" >&2
  exit 1
fi
