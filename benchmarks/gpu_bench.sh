#!/usr/bin/env bash
# GPU figures for issue 5 item 8 (NOT run yet: no GPU was available when this was written).
# Run on a CUDA machine from the repository root:   benchmarks/gpu_bench.sh
# Every model at 512x512, the style network at 1024x1024: engine validate (torch-fp16, with and
# without channels_last, against PyTorch FP32) and engine bench (torch-fp32/fp16 incl. channels_last
# and CUDA graphs, ort-cuda, and tensorrt where the tensorrt package is installed).
# Checkpoints: CKPT_<model>=path (else fresh seeded weights: latency is valid, validation is not
# meaningful for the argmax). Data for validation: params data.root (dvc pull / segstyle data ...);
# CONTENT=dir of content images for the style net (default: the VOC validation images).
set -euo pipefail
cd "$(dirname "$0")/.."
SEGSTYLE=${SEGSTYLE:-.venv/bin/segstyle}
PY=${PY:-.venv/bin/python}
OUT=benchmarks/gpu
mkdir -p "$OUT/validate" artifacts/onnx
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible")'
HAS_TRT=$("$PY" -c 'import importlib.util as u; print(int(u.find_spec("tensorrt") is not None))')
for m in $("$PY" -c 'from segstyle.models import list_models; print(" ".join(list_models(deployable=True, input_kind="image")))'); do
  task=$("$PY" -c "from segstyle.models import get_model_meta; print(get_model_meta('$m').task)")
  size=512x512; [ "$task" = style ] && size=1024x1024
  ckvar="CKPT_$m"; src=(--model "$m"); [ -n "${!ckvar:-}" ] && src=(--checkpoint "${!ckvar}")
  "$SEGSTYLE" export onnx "${src[@]}" --out "artifacts/onnx/$m.onnx" --report "$OUT/validate/${m}_parity.json"
  backends=torch-fp32,torch-fp32+channels_last,torch-fp16,torch-fp16+channels_last,torch-fp16+channels_last+cuda_graph,ort-cuda
  [ "$HAS_TRT" = 1 ] && backends="$backends,tensorrt"
  extra=(); [ "$task" = style ] && [ -n "${CONTENT:-}" ] && extra=(--content "$CONTENT")  # default: VOC val images
  for b in torch-fp16 torch-fp16+channels_last $([ "$HAS_TRT" = 1 ] && echo tensorrt); do
    "$SEGSTYLE" engine validate --backend "$b" "${src[@]}" --onnx "artifacts/onnx/$m.onnx" --size "$size" \
        "${extra[@]}" --out "$OUT/validate/${m}_${b//+/_}.json" || echo "validation FAILED: $m $b (record kept)"
  done
  "$SEGSTYLE" engine bench "${src[@]}" --onnx "artifacts/onnx/$m.onnx" --backends "$backends" --sizes "$size" \
      --batch 1 --warmup 20 --iters 200 --out "$OUT/$m.json"
done
"$PY" benchmarks/summarize.py "$OUT" > "$OUT/README.md"
echo "wrote $OUT/*.json and $OUT/README.md"
