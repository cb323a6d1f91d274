#!/usr/bin/env bash
# Runs every test of the workspace (unit, service integration and end to end) against real
# PostgreSQL, Redis and RabbitMQ, after making sure they are up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services-up.sh
scripts/browser-up.sh
scripts/clients-up.sh
export SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS=true
cargo test --workspace --no-fail-fast "$@"
