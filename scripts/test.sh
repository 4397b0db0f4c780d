#!/usr/bin/env bash
# Sets everything up and runs every test: fetches the local models, makes sure PostgreSQL, Redis and
# NATS are up, starts the pgvector-enabled PostgreSQL when the RAG tests need it, then runs the whole
# workspace test suite (unit, integration and doc tests).
#
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p wattos-core`).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "test: cargo not found; install Rust 1.95+ (rustup) first" >&2; exit 1; }

WATTOS_MODELS__DIR="$(scripts/fetch-models.sh)"
export WATTOS_MODELS__DIR
scripts/services.sh ensure
# Test-only connection strings (not WATTOS_* settings, which the server validates strictly).
export PG_TEST_URL="${PG_TEST_URL:-postgres://postgres@127.0.0.1:5432/test}"
export REDIS_TEST_URL="${REDIS_TEST_URL:-redis://127.0.0.1:6379}"
export NATS_TEST_URL="${NATS_TEST_URL:-nats://127.0.0.1:4222}"
if [[ -x scripts/pgvector.sh ]]; then
  PGVECTOR_TEST_URL="$(scripts/pgvector.sh start)"
  export PGVECTOR_TEST_URL
fi
# Official client SDKs for the compatibility tests (pinned in wattos-server/tests/sdk/).
SDK_DIR=wattos-server/tests/sdk
VENV=.cache/sdk-venv
if [[ ! -x "$VENV/bin/python" ]] || ! cmp -s "$SDK_DIR/requirements.txt" "$VENV/requirements.txt"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$SDK_DIR/requirements.txt"
  cp "$SDK_DIR/requirements.txt" "$VENV/requirements.txt"
fi
export SDK_TEST_PYTHON="$PWD/$VENV/bin/python"
# The console end-to-end test must run its RAG, agent and usage flows (not skip them).
export CONSOLE_E2E_REQUIRE="${CONSOLE_E2E_REQUIRE:-rag,agents,usage}"
if [[ ! -d "$SDK_DIR/node_modules/openai" ]]; then
  (cd "$SDK_DIR" && npm ci --silent --no-audit --no-fund)
fi
# Headless Chromium (console end-to-end test) and promtool (alert rules), from Debian packages.
if ! command -v chromium >/dev/null || ! command -v promtool >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    # A fresh Debian machine may have empty package lists: update them first.
    if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium prometheus >/dev/null; }; then
      if [[ "${CI:-}" == "true" ]]; then
        echo "test: cannot install chromium/prometheus, which CI must run (console e2e, promtool)" >&2
        exit 1
      fi
      echo "test: cannot install chromium/prometheus; the console e2e and promtool tests will skip" >&2
    fi
  else
    echo "test: chromium or promtool missing (Debian: apt-get install chromium prometheus); those tests will skip" >&2
  fi
fi
CONSOLE_E2E_DIR=wattos-server/tests/console
if [[ ! -d "$CONSOLE_E2E_DIR/node_modules/playwright-core" ]]; then
  (cd "$CONSOLE_E2E_DIR" && npm ci --silent --no-audit --no-fund)
fi

if [[ -z "${QDRANT_URL:-}" ]]; then
  echo "test: QDRANT_URL is not set; the Qdrant store tests will be skipped" >&2
fi

# Every test that cannot run here records why (wattos_core::test_utils::skip); libtest hides the
# output of passing tests, so the list is printed at the end. Under CI=true such a skip already
# failed its test; only optional services (Qdrant) may be skipped there.
TEST_SKIP_LOG="$(mktemp -t wattos-skips.XXXXXX)"
export TEST_SKIP_LOG
report_skips() {
  local n
  n=$(sort -u "$TEST_SKIP_LOG" | grep -c . || true)
  if [[ "$n" -gt 0 ]]; then
    echo "test: $n skipped test(s):" >&2
    sort -u "$TEST_SKIP_LOG" | sed 's/^/  /' >&2
  else
    echo "test: nothing was skipped" >&2
  fi
  rm -f "$TEST_SKIP_LOG"
}
trap report_skips EXIT

if [[ $# -gt 0 ]]; then
  cargo test --locked "$@"
  exit
fi
cargo test --locked --workspace --all-features --lib --bins --tests --examples
cargo test --locked --workspace --all-features --doc
