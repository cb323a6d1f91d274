#!/usr/bin/env bash
# Runs the whole suite (`smooch all`) on http://127.0.0.1:8080/v1, after making sure
# PostgreSQL, Redis and RabbitMQ are up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services-up.sh
exec cargo run --release --bin smooch -- all
