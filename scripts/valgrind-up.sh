#!/usr/bin/env bash
# Installs Debian's valgrind, with apt, when it is missing: the bench's `instructions`
# scenario runs the suite under its callgrind. Idempotent; a no-op when it is in place.
set -euo pipefail
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null && exit 0
"$(dirname "$0")/apt-install.sh" "the bench's instructions scenario" valgrind
