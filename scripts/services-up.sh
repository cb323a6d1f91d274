#!/usr/bin/env bash
# Makes sure PostgreSQL, Redis and RabbitMQ run on their standard local ports, installing
# them from Debian's packages when missing and starting whichever is down. Idempotent.
set -euo pipefail

log() { echo "services-up: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 120); do
    if eval "$check"; then return 0; fi
    sleep 0.5
  done
  log "$what did not come up"; return 1
}

# PostgreSQL on 127.0.0.1:5432, trust auth for local connections.
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  install postgresql
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    as_root sed -i -E 's/^(local|host)(\s+all\s+all\s+.*\s)(peer|md5|scram-sha-256)$/\1\2trust/' "$hba"
    as_root sed -i -E 's/^(local\s+all\s+postgres\s+)peer$/\1trust/' "$hba"
  done
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_for PostgreSQL "pg_isready -q -h 127.0.0.1 -p 5432"
fi

# Redis on 127.0.0.1:6379 (a cache only: it keeps nothing on disk).
if ! command -v redis-server >/dev/null 2>&1; then
  install redis-server
fi
if ! port_open 6379; then
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis "port_open 6379"
fi

# RabbitMQ on 127.0.0.1:5672 (guest/guest).
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  install rabbitmq-server
fi
if ! port_open 5672; then
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached || true
  wait_for RabbitMQ "port_open 5672"
fi
log "PostgreSQL, Redis and RabbitMQ are up"
