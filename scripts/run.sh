#!/usr/bin/env bash
# Sets everything up and runs the WattOS server on embedded defaults: local models, embedded stores,
# no external services, no API keys. Prints the URL once it listens (default http://127.0.0.1:8080).
#
# Any WATTOS_* variable or `--config FILE` changes the defaults; extra arguments go to the server.
# WATTOS_PROFILE=release builds with full optimisation (slower build, faster server).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "run: cargo not found; install Rust 1.95+ (rustup) first" >&2; exit 1; }

WATTOS_MODELS__DIR="$(scripts/fetch-models.sh)"
export WATTOS_MODELS__DIR
export WATTOS_TELEMETRY__LOG_FORMAT="${WATTOS_TELEMETRY__LOG_FORMAT:-pretty}"
# Data lives in a per-user folder, not in the checkout (unless WATTOS_DATA_DIR says otherwise).
export WATTOS_DATA_DIR="${WATTOS_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/wattos}"
mkdir -p "$WATTOS_DATA_DIR"
echo "run: data in $WATTOS_DATA_DIR" >&2

profile=()
[[ -n "${WATTOS_PROFILE:-}" ]] && profile=(--profile "$WATTOS_PROFILE")
exec cargo run --locked "${profile[@]}" -p wattos-server -- "$@"
