#!/usr/bin/env bash
# Create .venv and install enrichment-light with every extra (the dev extra).
# Usage: bash scripts/setup.sh [--fresh]     (--fresh deletes .venv first)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [[ "${1:-}" == "--fresh" ]]; then
  rm -rf .venv
fi
if [[ ! -x .venv/bin/python ]]; then
  echo "[setup] creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
# torch first, alone: `torch==2.13.0` resolves to the CPU build; the constraints file keeps it.
echo "[setup] installing torch==2.13.0 (CPU)"
"${pip[@]}" install -q torch==2.13.0
echo "[setup] installing enrichment-light[dev] (export, serve, openvino, plan, test, docs extras)"
"${pip[@]}" install -q -c constraints.txt -e ".[dev]"
# torchreid is only a test oracle; its declared deps would pull in a CUDA torch.
"${pip[@]}" install -q --no-deps torchreid==0.2.5
echo "[setup] done: $(.venv/bin/python -c 'import torch, numpy, onnxruntime; print("torch", torch.__version__, "numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__)')"
