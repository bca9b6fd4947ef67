#!/usr/bin/env bash
# CPU latency: PyTorch FP32 eager vs ONNX Runtime CPU, every deployable image model, side by side per model.
# One thread each: on a shared 2-core machine two OpenMP threads per process oversubscribe the
# cores and torch's per-op barriers then dominate (measured: deeplabv3 128x128 665 ms vs 150 ms).
# Writes benchmarks/cpu/run.json (command, commit), benchmarks/cpu/<model>.json and, from those,
# benchmarks/cpu/README.md (benchmarks/summarize.py).
set -euo pipefail
cd "$(dirname "$0")/.."
SEGSTYLE=${SEGSTYLE:-.venv/bin/segstyle}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/cpu}
MODELS=${MODELS:-$("$PY" -c 'from segstyle.models import list_models; print(" ".join(list_models(deployable=True, input_kind="image")))')}
"$PY" benchmarks/summarize.py "$OUT" --stamp "benchmarks/cpu_bench.sh"
for m in $MODELS; do
  "$SEGSTYLE" engine bench --model "$m" --backends torch-fp32,ort-cpu --sizes 128x128,256x256 \
      --batch 1 --warmup 3 --iters 20 --threads 1 --out "$OUT/$m.json"
done
"$PY" benchmarks/summarize.py "$OUT" --out "$OUT/README.md"
