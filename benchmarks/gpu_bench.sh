#!/usr/bin/env bash
# GPU figures (issue 5 item 8, issue 9): NOT run yet -- no GPU was available where this was written.
# Run on a CUDA machine from the repository root:   benchmarks/gpu_bench.sh
# Every deployable image network: the FP32 and FP16 ONNX graphs, then
#  - `segstyle engine validate --backend all`: every backend this machine has (ort-cpu FP32/FP16,
#    torch-fp16, ort-cuda, tensorrt from the FP16 graph built strongly typed) against PyTorch FP32 on
#    the real validation split at natural sizes, with the fixed bounds of params.yaml `validate`;
#    backends the machine lacks become "not run: <reason>" rows (never silently absent);
#  - `segstyle engine bench`: p50/p95/p99 of torch-fp32/fp16 (channels_last, CUDA graphs), ort-cuda
#    and tensorrt side by side in one process, at 512x512 (the style network at 1024x1024).
# Checkpoints: CKPT_<model>=path (else fresh seeded weights: latency is valid, the agreement figures
# are not meaningful). Data: params data.root (`dvc pull` or `segstyle data ...`).
# Output: benchmarks/gpu/<model>.json (bench), benchmarks/gpu/validate/<model>.json (records: the
# deployment matrix reads them, `segstyle engine matrix --records benchmarks/gpu/validate`), and
# benchmarks/gpu/README.md from benchmarks/summarize.py, naming the commit.
set -euo pipefail
cd "$(dirname "$0")/.."
SEGSTYLE=${SEGSTYLE:-.venv/bin/segstyle}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/gpu}
mkdir -p "$OUT/validate" artifacts/onnx artifacts/engines
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible")'
"$PY" benchmarks/summarize.py "$OUT" --stamp "benchmarks/gpu_bench.sh"
HAS_TRT=$("$PY" -c 'import importlib.util as u; print(int(u.find_spec("tensorrt") is not None))')
status=0
for m in $("$PY" -c 'from segstyle.models import list_models; print(" ".join(list_models(deployable=True, input_kind="image")))'); do
  task=$("$PY" -c "from segstyle.models import get_model_meta; print(get_model_meta('$m').task)")
  size=512x512; [ "$task" = style ] && size=1024x1024
  ckvar="CKPT_$m"; src=(--model "$m"); [ -n "${!ckvar:-}" ] && src=(--checkpoint "${!ckvar}")
  onnx="artifacts/onnx/$m.onnx"; onnx16="artifacts/onnx/${m}_fp16.onnx"; engine="artifacts/engines/${m}_fp16.engine"
  "$SEGSTYLE" export onnx "${src[@]}" --out "$onnx" --report "$OUT/validate/${m}_parity.json"
  "$SEGSTYLE" export fp16 "$onnx" "${src[@]}" --out "$onnx16" --report "$OUT/validate/${m}_fp16_check.json"
  trt=(); backends=torch-fp32,torch-fp32+channels_last,torch-fp16,torch-fp16+channels_last,torch-fp16+channels_last+cuda_graph,ort-cuda
  if [ "$HAS_TRT" = 1 ]; then
    # strongly typed from the FP16 graph; exits 1 when a kept-FP32 op ran FP16 (engine inspector)
    if "$SEGSTYLE" engine build --onnx "$onnx16" --out "$engine"; then
      trt=(--engine "$engine"); backends="$backends,tensorrt"
    else
      echo "engine build FAILED: $m"; status=1
    fi
  fi
  "$SEGSTYLE" engine validate --backend all "${src[@]}" --onnx "$onnx" --onnx-fp16 "$onnx16" "${trt[@]}" \
      --network "$m" --latency-size "$size" --out "$OUT/validate/$m.json" \
      || { echo "validation FAILED: $m (record kept: $OUT/validate/$m.json)"; status=1; }
  # --onnx is the FP16 graph: ort-cuda runs what ships, and the engine's sidecar (built from it) matches
  "$SEGSTYLE" engine bench "${src[@]}" --onnx "$onnx16" "${trt[@]}" --backends "$backends" --sizes "$size" \
      --batch 1 --warmup 20 --iters 200 --out "$OUT/$m.json"
done
"$PY" benchmarks/summarize.py "$OUT" --out "$OUT/README.md"
echo "wrote $OUT/*.json, $OUT/validate/*.json and $OUT/README.md"
exit $status
