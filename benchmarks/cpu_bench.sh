#!/usr/bin/env bash
# CPU latency at 512x512, batch 1 and 8, 2 threads: PyTorch FP32 eager, ONNX Runtime on the FP32, FP16 and
# both INT8 graphs (segstyle export int8: the cpu target, and the TensorRT one as ONNX Runtime runs it), and the
# AOTInductor CPU package of every deployable network, interleaved per model in one process on the same
# inputs (segstyle engine bench: p50/p95/p99), the same thread count for every backend. The INT8 graphs are
# calibrated on the training split under data/ (the embedded sample: latency does not depend on the ranges).
# The packages are compiled here, for this CPU, with --threads 2 (inductor bakes the count into its OpenMP
# loops; the bench refuses a package compiled for another count) over a copy of params.yaml whose engine
# profile reaches batch 8 (the pipeline's stops at 4). Fresh seeded weights: latency does not depend on them.
# Writes benchmarks/cpu/run.json (command, commit), benchmarks/cpu/<model>_b{1,8}.json and, from those,
# benchmarks/cpu/README.md (benchmarks/summarize.py). Run it with nothing else on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
SEGSTYLE=${SEGSTYLE:-.venv/bin/segstyle}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/cpu}
THREADS=${THREADS:-2}
SIZE=${SIZE:-512x512}
MODELS=${MODELS:-$("$PY" -c 'from segstyle.models import list_models; print(" ".join(list_models(deployable=True)))')}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" - "$WORK/params.yaml" <<'EOF'
import sys, yaml
p = yaml.safe_load(open("params.yaml"))
p["engine"]["profiles"]["max"][0] = max(8, p["engine"]["profiles"]["max"][0])
yaml.safe_dump(p, open(sys.argv[1], "w"), sort_keys=False)
EOF
rm -f "$OUT"/*.json
"$PY" benchmarks/summarize.py "$OUT" --stamp "benchmarks/cpu_bench.sh"
for m in $MODELS; do
  P=(--params "$WORK/params.yaml")
  "$SEGSTYLE" export onnx --model "$m" --out "$WORK/$m.onnx" "${P[@]}"
  "$SEGSTYLE" export fp16 "$WORK/$m.onnx" --out "$WORK/${m}_fp16.onnx" "${P[@]}"
  for t in cpu trt; do
    "$SEGSTYLE" export int8 "$WORK/$m.onnx" --model "$m" --target "$t" --out "$WORK/${m}_int8_$t.onnx" "${P[@]}"
  done
  "$SEGSTYLE" export program --model "$m" --out "$WORK/$m.ep.pt2" "${P[@]}"
  "$SEGSTYLE" engine build --backend aoti --program "$WORK/$m.ep.pt2" --out "$WORK/${m}_cpu_fp32.aoti.pt2" \
      --threads "$THREADS" "${P[@]}"
  for b in 1 8; do
    if [ "$b" = 1 ]; then it=(--warmup 3 --iters 20); else it=(--warmup 1 --iters 6); fi
    "$SEGSTYLE" engine bench --model "$m" --backends torch-fp32,ort-cpu,aoti-cpu --onnx "$WORK/$m.onnx" \
        --onnx-extra "$WORK/${m}_fp16.onnx" --onnx-extra "$WORK/${m}_int8_cpu.onnx" \
        --onnx-extra "$WORK/${m}_int8_trt.onnx" --package "$WORK/${m}_cpu_fp32.aoti.pt2" --sizes "$SIZE" --batch "$b" "${it[@]}" --threads "$THREADS" \
        "${P[@]}" --out "$OUT/${m}_b$b.json"
  done
done
"$PY" benchmarks/summarize.py "$OUT" --out "$OUT/README.md"
