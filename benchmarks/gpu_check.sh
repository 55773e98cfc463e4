#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: export a tiny model (or use yours), build the
# TensorRT engines, check parity of every GPU path against fp32 ONNX on ONNX Runtime (CPU) and
# against PyTorch, and time them. Finishes inside 10 minutes; says plainly what it skipped.
#
#   benchmarks/gpu_check.sh                          # tiny random model, everything
#   benchmarks/gpu_check.sh --model DIR --ckpt CKPT  # your model folder and its checkpoint
#
# Needs: pip install -e '.[export-core,gpu]' (torch, onnxruntime-gpu, tensorrt>=10, cuda-python;
# never .[export] or .[runtime] beside gpu: their CPU onnxruntime would hide the CUDA provider, and
# this script stops at once if both onnxruntime packages are installed); or `make env` on the GPU machine
# and PYTHON=.venv/bin/python.
# Results: benchmarks/results/gpu_check.json; exit 1 if a parity check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
# onnxruntime beside onnxruntime-gpu hides the CUDA provider and every ONNX Runtime GPU check with it.
"$PYTHON" -c 'import sys; from mspn.extras import ONNXRUNTIME_FIX as fix, both_onnxruntimes as both
sys.exit(f"gpu_check: onnxruntime and onnxruntime-gpu are both installed; {fix}" if both() else 0)'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  || echo "nvidia-smi not found: no NVIDIA driver? GPU checks will be skipped"
exec timeout --signal=INT 590 "$PYTHON" -u benchmarks/gpu_check.py --budget 540 "$@"
