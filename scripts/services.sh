#!/usr/bin/env bash
# Makes sure the real services the test suite talks to are up: PostgreSQL 127.0.0.1:5432,
# Redis 127.0.0.1:6379 and NATS with JetStream 127.0.0.1:4222.
#
#   scripts/services.sh check    exit 1 naming every service that is down
#   scripts/services.sh ensure   start the ones that are down (when this machine has them installed), then check
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

down_list() {
  local down=()
  up 5432 || down+=(postgres)
  up 6379 || down+=(redis)
  up 4222 || down+=(nats)
  echo "${down[@]:-}"
}

start() {
  case "$1" in
    postgres)
      command -v pg_ctlcluster >/dev/null && pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true ;;
    redis)
      command -v redis-server >/dev/null && redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
        --save "" --appendonly no --dir /tmp --logfile /tmp/wattos-redis.log || true ;;
    nats)
      if command -v nats-server >/dev/null; then
        mkdir -p /tmp/wattos-nats
        (setsid nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/wattos-nats -l /tmp/wattos-nats.log >/dev/null 2>&1 &) || true
      fi ;;
  esac
}

cmd="${1:-check}"
down=$(down_list)
if [[ "$cmd" == ensure && -n "$down" ]]; then
  for s in $down; do echo "services: starting $s" >&2; start "$s"; done
  for _ in $(seq 1 30); do down=$(down_list); [[ -z "$down" ]] && break; sleep 0.5; done
fi
if [[ -n "$down" ]]; then
  echo "services: not reachable: $down (PostgreSQL 127.0.0.1:5432, Redis 127.0.0.1:6379, NATS+JetStream 127.0.0.1:4222 are needed by the tests)" >&2
  exit 1
fi
