#!/usr/bin/env bash
# CPU latency: PyTorch FP32 eager vs ONNX Runtime CPU, every registered model, side by side per model.
# One thread each: on a shared 2-core machine two OpenMP threads per process oversubscribe the
# cores and torch's per-op barriers then dominate (measured: deeplabv3 128x128 665 ms vs 150 ms).
# Writes benchmarks/cpu/<model>.json (see benchmarks/cpu/README.md for the numbers and the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
SEGSTYLE=${SEGSTYLE:-.venv/bin/segstyle}
MODELS=${MODELS:-$(.venv/bin/python -c 'from segstyle.models import list_models; print(" ".join(list_models(deployable=True, input_kind="image")))')}
for m in $MODELS; do
  "$SEGSTYLE" engine bench --model "$m" --backends torch-fp32,ort-cpu --sizes 128x128,256x256 \
      --batch 1 --warmup 3 --iters 20 --threads 1 --out "benchmarks/cpu/$m.json"
done
