#!/usr/bin/env bash
# Gateway overhead benchmark: a fast local mock upstream (OpenAI wire format), the server configured
# with it as a provider, and a load generator that calls the mock directly and through the gateway
# at several concurrencies, printing latency p50/p99, throughput and the latency the gateway adds.
#
# Two kinds of load:
# - closed loop (each connection sends back to back) against an instant mock: saturation throughput;
#   on a small machine the latencies mostly measure queueing for the CPU the load generator, the mock
#   and the server share;
# - open loop (a fixed request rate spread over the connections, latency measured from each request's
#   scheduled start) against a mock with an LLM-like time to first byte (UPSTREAM_MS): the latency
#   the gateway adds to a call at that many concurrent connections.
#
# Usage: scripts/bench-gateway.sh [secs-per-point (default 5)] [concurrencies (default 1,16,64)]
# Env:   PROFILE=release (default) | dev    MOCK_PORT (default 18091; +1 for the slow mock)
#        GATEWAY_PORT (default 18090)    SKIP_BUILD=1 to use binaries already built for PROFILE
#        UPSTREAM_MS (default 100)  OPEN_CONNS (default 64)  OPEN_RATE (req/s, default 600)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
CONC=${2:-1,16,64}
PROFILE=${PROFILE:-release}
MOCK_PORT=${MOCK_PORT:-18091}
GATEWAY_PORT=${GATEWAY_PORT:-18090}
TARGET=${CARGO_TARGET_DIR:-target}
DIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --profile "$PROFILE" -p wattos-server --bin wattos-server --example gateway_load >&2
fi

WORK=$(mktemp -d)
cleanup() {
  [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -n "${MOCK_PID:-}" ] && kill "$MOCK_PID" 2>/dev/null || true
  [ -n "${SLOW_PID:-}" ] && kill "$SLOW_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

UPSTREAM_MS=${UPSTREAM_MS:-100}
OPEN_CONNS=${OPEN_CONNS:-64}
OPEN_RATE=${OPEN_RATE:-600}
SLOW_PORT=$((MOCK_PORT + 1))
"$TARGET/$DIR/examples/gateway_load" mock "$MOCK_PORT" >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
"$TARGET/$DIR/examples/gateway_load" mock "$SLOW_PORT" "$UPSTREAM_MS" >"$WORK/slow-mock.log" 2>&1 &
SLOW_PID=$!

cat >"$WORK/wattos.toml" <<TOML
[server]
bind = "127.0.0.1:$GATEWAY_PORT"
max_concurrent_requests = 4096

[telemetry]
log_filter = "warn"

[models]
local_chat = false
local_embeddings = false

[llm.providers.bench]
kind = "openai_compatible"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-bench"
model = "bench-model"

[llm.providers.slow]
kind = "openai_compatible"
base_url = "http://127.0.0.1:$SLOW_PORT/v1"
api_key = "sk-bench"
model = "bench-model"
TOML

WATTOS_DATA_DIR="$WORK/data" "$TARGET/$DIR/wattos-server" --config "$WORK/wattos.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$GATEWAY_PORT/health/liveness" >/dev/null 2>&1 &&
     curl -sf -X POST "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" -H 'content-type: application/json' \
       -d '{"model":"m","messages":[]}' >/dev/null 2>&1 &&
     curl -sf -X POST "http://127.0.0.1:$SLOW_PORT/v1/chat/completions" -H 'content-type: application/json' \
       -d '{"model":"m","messages":[]}' >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done

echo "gateway benchmark: $(nproc) CPUs, profile $PROFILE, $(date -u +%FT%TZ)"
"$TARGET/$DIR/examples/gateway_load" run "http://127.0.0.1:$MOCK_PORT" "http://127.0.0.1:$GATEWAY_PORT" bench "$SECS" "$CONC"
"$TARGET/$DIR/examples/gateway_load" run "http://127.0.0.1:$MOCK_PORT" "http://127.0.0.1:$GATEWAY_PORT" bench "$SECS" "$CONC" stream
echo
echo "open loop: upstream answers after ${UPSTREAM_MS} ms; ${OPEN_RATE} req/s over ${OPEN_CONNS} connections"
"$TARGET/$DIR/examples/gateway_load" run "http://127.0.0.1:$SLOW_PORT" "http://127.0.0.1:$GATEWAY_PORT" slow "$SECS" "$OPEN_CONNS" "rate=$OPEN_RATE"
"$TARGET/$DIR/examples/gateway_load" run "http://127.0.0.1:$SLOW_PORT" "http://127.0.0.1:$GATEWAY_PORT" slow "$SECS" "$OPEN_CONNS" stream "rate=$OPEN_RATE"
echo
echo "gateway_request_overhead_us (server-side: time in the server minus upstream time):"
curl -s "http://127.0.0.1:$GATEWAY_PORT/metrics" | grep -E '^gateway_request_overhead_us_(sum|count)|^gateway_overhead_us_(sum|count)' || true
