#!/usr/bin/env bash
# Soak: `smooch all` under a moderate, steady load for SMOOCH_SOAK_SECS (default 60; pass a
# number of seconds as $1), sampling its memory, sockets, Postgres sessions and the broker's
# connections. Prints the samples as JSON and a one-line summary; writes the JSON to
# SMOOCH_SOAK_REPORT (default target/soak-report.json). Needs Postgres, Redis and RabbitMQ.
set -euo pipefail
cd "$(dirname "$0")/.."
export SMOOCH_SOAK_SECS="${1:-${SMOOCH_SOAK_SECS:-60}}"
export SMOOCH_SOAK_REPORT="${SMOOCH_SOAK_REPORT:-$PWD/target/soak-report.json}"
mkdir -p "$(dirname "$SMOOCH_SOAK_REPORT")"
cargo test -p e2e --test faults soak -- --ignored --nocapture
echo "report: $SMOOCH_SOAK_REPORT"
