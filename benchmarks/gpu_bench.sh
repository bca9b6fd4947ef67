#!/usr/bin/env bash
# GPU figures: the deployment matrix's GPU rows and GPU latency, for the networks `make run` trained.
# Run on a CUDA machine from the repository root, after `make run` (its checkpoints):
#   benchmarks/gpu_bench.sh
# Networks: the pipeline's own (voc pets style fused gan), checkpoints read from dvc.yaml's export_onnx
# stage (the one list of networks; CKPT_<network>=path overrides one, or names a network outside it).
# NETWORKS="pets" runs a subset; the output folder accumulates, and its README is re-rendered from
# everything in it at the end. PARAMS_<network>=file: that network's params (e.g. data.pets_mode binary
# for a foreground network; default params.yaml). AOTI=0 skips the AOTInductor package (its export,
# CUDA build, aoti-cuda rows): those rows are then not measured, and the log says so.
# Per network, the pipeline's own commands:
#  - `segstyle export onnx` and `export fp16` (the FP32 and the mixed-precision FP16 graph);
#  - `segstyle engine validate --backend all`: every backend this machine has (ort-cpu FP32/FP16,
#    torch-fp16 on CUDA, ort-cuda, tensorrt from the FP16 graph built strongly typed) against PyTorch
#    FP32, with the fixed bounds of params.yaml `validate`; backends the machine lacks become
#    "not run: <reason>" rows (never silently absent). Images: the real photos of $REALDATA
#    (default ../shared/realdata: VOC photos for voc/style/fused, Pet photos for pets) at natural
#    sizes, or the validation split of params data.root where it is absent; gan: its fixed noise batch;
#  - `segstyle export program` + `engine build --backend aoti --device cuda` (FP16 AOTInductor package;
#    its validation row is aoti-cuda);
#  - `segstyle engine bench`: p50/p95/p99 of torch-fp32/fp16 (channels_last, CUDA graphs), ort-cuda,
#    tensorrt where present and aoti-cuda, side by side in one process, at 512x512 (style and fused
#    1024x1024), batch 1 and batch 8 (tensorrt: batch 1; its engine profile stops at 4).
# LATENCY_ONLY (default: the deployable image models none of these networks uses, e.g. the full
# profile's deeplabv3): fresh seeded weights, latency only (agreement figures would not mean anything).
# Output: benchmarks/gpu/<network>.json (bench), benchmarks/gpu/validate/<network>.json (records:
# `segstyle engine matrix --records benchmarks/gpu/validate`), benchmarks/gpu/README.md naming the commit
# (COMMIT=<sha> where the tree was copied and git there is missing or stale).
set -euo pipefail
cd "$(dirname "$0")/.."
SEGSTYLE=${SEGSTYLE:-.venv/bin/segstyle}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/gpu}
REALDATA=${REALDATA:-../shared/realdata}
WARMUP=${WARMUP:-20}
ITERS=${ITERS:-200}
mkdir -p "$OUT/validate" artifacts/gpu_bench
AOTI=${AOTI:-1}
# REQUIRE_CUDA=0: a dry run on a CPU machine (set TORCH_BACKENDS=torch-fp32: the other rows need CUDA)
[ "${REQUIRE_CUDA:-1}" = 0 ] || "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible")'
"$PY" benchmarks/summarize.py "$OUT" --stamp "${STAMP:-benchmarks/gpu_bench.sh}" ${COMMIT:+--commit "$COMMIT"}
NETWORKS=${NETWORKS:-$("$PY" -c 'import yaml; print(" ".join(yaml.safe_load(open("dvc.yaml"))["stages"]["export_onnx"]["foreach"]))')}
HAS_TRT=$("$PY" -c 'import importlib.util as u; print(int(u.find_spec("tensorrt") is not None))')
HAS_ORT_CUDA=$("$PY" -c 'import onnxruntime as o, torch; print(int(torch.cuda.is_available() and "CUDAExecutionProvider" in o.get_available_providers()))')
torch_backends=${TORCH_BACKENDS:-torch-fp32,torch-fp32+channels_last,torch-fp16,torch-fp16+channels_last,torch-fp16+channels_last+cuda_graph}
[ "$HAS_ORT_CUDA" = 1 ] && torch_backends="$torch_backends,ort-cuda"
status=0; used=fused_region_style  # the fused graph needs two trained networks: never a fresh one
for net in $NETWORKS; do
  ckvar="CKPT_$net"
  ckpt=${!ckvar:-$("$PY" -c "import yaml; print(yaml.safe_load(open('dvc.yaml'))['stages']['export_onnx']['foreach']['$net']['checkpoint'])")}
  [ -f "$ckpt" ] || { echo "$net: checkpoint $ckpt missing (run make run, or set $ckvar)"; status=1; continue; }
  model=$("$PY" -c "import torch; print(torch.load('$ckpt', map_location='cpu', weights_only=False)['model'])")
  used="$used $model"
  input_kind=$("$PY" -c "from segstyle.models import get_model_meta; print(get_model_meta('$model').input_kind)")
  size=512x512; case $net in style|fused) size=1024x1024;; esac
  pvar="PARAMS_$net"; prm=${!pvar:-params.yaml}
  images=()
  if [ "$input_kind" = image ] && [ -d "$REALDATA" ]; then
    case $net in
      pets*) images=(--images "$REALDATA/pets/oxford-iiit-pet/images");;
      *) images=(--images "$REALDATA/voc/VOCdevkit/VOC2012/JPEGImages");;
    esac
  fi
  w=artifacts/gpu_bench/$net; mkdir -p "$w"
  # a failed export marks the exit status and the next network still runs (as a failed latency run does)
  "$SEGSTYLE" export onnx --checkpoint "$ckpt" --out "$w/model.onnx" --report "$w/parity.json" --params "$prm" \
    && "$SEGSTYLE" export fp16 "$w/model.onnx" --checkpoint "$ckpt" --out "$w/model_fp16.onnx" \
        --report "$w/fp16.json" --params "$prm" \
    || { echo "export FAILED: $net"; status=1; continue; }
  aoti=(); trt=(); backends=$torch_backends
  if [ "$AOTI" = 1 ]; then
    # AOTInductor CUDA FP16 package, over an engine profile that reaches batch 8 (the batch-8 bench below)
    p8=$w/params_batch8.yaml  # this network's params with the engine profile's max batch at 8
    "$PY" -c 'import sys, yaml; p = yaml.safe_load(open(sys.argv[1])); p["engine"]["profiles"]["max"][0] = max(8, p["engine"]["profiles"]["max"][0]); yaml.safe_dump(p, open(sys.argv[2], "w"), sort_keys=False)' "$prm" "$p8"
    "$SEGSTYLE" export program --checkpoint "$ckpt" --out "$w/model.ep.pt2" --params "$p8"
    if "$SEGSTYLE" engine build --backend aoti --device cuda --precision fp16 --program "$w/model.ep.pt2" \
        --checkpoint "$ckpt" --out "$w/model_cuda_fp16.aoti.pt2" --params "$p8"; then
      aoti=(--package "$w/model_cuda_fp16.aoti.pt2"); backends="$backends,aoti-cuda"
    else
      echo "aoti build FAILED: $net"; status=1
    fi
  else
    echo "$net: AOTInductor package not built (AOTI=0): no aoti-cuda rows"
  fi
  if [ "$HAS_TRT" = 1 ]; then
    # strongly typed from the FP16 graph; exits 1 when a kept-FP32 op ran FP16 (engine inspector)
    if "$SEGSTYLE" engine build --onnx "$w/model_fp16.onnx" --out "$w/model_fp16.engine"; then
      trt=(--engine "$w/model_fp16.engine"); backends="$backends,tensorrt"
    else
      echo "engine build FAILED: $net"; status=1
    fi
  fi
  "$SEGSTYLE" engine validate --backend all --checkpoint "$ckpt" --onnx "$w/model.onnx" --onnx-fp16 "$w/model_fp16.onnx" \
      "${trt[@]}" "${aoti[@]}" "${images[@]}" --samples 0 --network "$net" --latency-size "$size" --params "$prm" \
      --out "$OUT/validate/$net.json" \
      || { echo "validation FAILED: $net (record kept: $OUT/validate/$net.json)"; status=1; }
  # --onnx is the FP16 graph: ort-cuda runs what ships, and the engine's sidecar (built from it) matches
  for b in 1 8; do  # batch 8 only with the backends whose artifact takes it (the packages: params_batch8's profile)
    bb=$backends; [ "$b" = 8 ] && bb=${backends/,tensorrt/}
    "$SEGSTYLE" engine bench --checkpoint "$ckpt" --onnx "$w/model_fp16.onnx" "${trt[@]}" "${aoti[@]}" --backends "$bb" \
        --sizes "$size" --batch "$b" --warmup "$WARMUP" --iters "$ITERS" --params "$prm" \
        --out "$OUT/$net$([ "$b" = 8 ] && echo _b8).json" \
        || { echo "latency run FAILED: $net batch $b"; status=1; }  # the other networks still run
  done
done
LATENCY_ONLY=${LATENCY_ONLY-$("$PY" -c "from segstyle.models import list_models
print(' '.join(m for m in list_models(deployable=True, input_kind='image') if m not in '$used'.split()))")}
for m in $LATENCY_ONLY; do
  "$SEGSTYLE" engine bench --model "$m" --backends "${torch_backends/,ort-cuda/}" --sizes 512x512 --batch 1 \
      --warmup "$WARMUP" --iters "$ITERS" --out "$OUT/$m.json" || { echo "latency run FAILED: $m"; status=1; }
done
"$PY" benchmarks/summarize.py "$OUT" --out "$OUT/README.md"
echo "wrote $OUT/*.json, $OUT/validate/*.json and $OUT/README.md"
exit $status
