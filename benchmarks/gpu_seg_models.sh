#!/usr/bin/env bash
# GPU figures for the source material's segmentation networks (issue 26), on a CUDA machine from the
# repository root:   benchmarks/gpu_seg_models.sh
# Trains each network with the demo profile on the embedded sample data (`segstyle data sample`, then
# `segstyle train --no-pretrained`, the recipe of benchmarks/seg_demo.py, here on the GPU), then runs
# benchmarks/gpu_bench.sh over the checkpoints: export + FP16 graph, `engine validate --backend all`
# on the real photos of $REALDATA (Pets photos for the pets networks, VOC photos for the voc ones) and
# `engine bench` at 512x512, batch 1 and 8. Networks (name=dataset:mode:model; mode empty = default):
#   pets_segnet      pets, trimap   segnet          (max-unpooling with the pooling indices)
#   voc_pspnet       voc            pspnet          (pyramid pooling at bins 1, 2, 3, 6)
#   voc_deeplabv3plus voc           deeplabv3plus
#   pets_binary      pets, binary   unet_binary     (the foreground task: one logit, alpha PSNR)
# NETS="..." runs a subset; EPOCHS=N overrides the recipe's epochs (a CPU dry run). AOTI (default 0 here: four CUDA package compiles do not fit one lease) is
# passed on to gpu_bench.sh. Output: $BENCH_OUT (default benchmarks/gpu_seg) with gpu_bench.sh's files.
set -euo pipefail
cd "$(dirname "$0")/.."
SEGSTYLE=${SEGSTYLE:-.venv/bin/segstyle}
PY=${PY:-.venv/bin/python}
BENCH_OUT=${BENCH_OUT:-benchmarks/gpu_seg}
NETS=${NETS:-"pets_segnet=pets::segnet voc_pspnet=voc::pspnet voc_deeplabv3plus=voc::deeplabv3plus pets_binary=pets:binary:unet_binary"}
root=$("$PY" -c 'import yaml; print(yaml.safe_load(open("params.yaml"))["data"]["root"])')
[ -d "$root/voc" ] || "$SEGSTYLE" data sample --root "$root"
w=artifacts/gpu_seg; mkdir -p "$w"
names=()
for spec in $NETS; do
  net=${spec%%=*}; rest=${spec#*=}; dataset=${rest%%:*}; rest=${rest#*:}; mode=${rest%%:*}; model=${rest#*:}
  prm=params.yaml
  if [ -n "$mode" ]; then  # the same params with the dataset's mode switched
    prm=$w/params_$net.yaml
    "$PY" -c 'import sys, yaml; p = yaml.safe_load(open("params.yaml")); p["data"][sys.argv[1] + "_mode"] = sys.argv[2]; yaml.safe_dump(p, open(sys.argv[3], "w"), sort_keys=False)' "$dataset" "$mode" "$prm"
  fi
  echo "== $net: train $model on $dataset${mode:+ ($mode)}"
  start=$(date +%s)
  "$SEGSTYLE" train --params "$prm" --dataset "$dataset" --model "$model" --data-root "$root" \
      --out "$w/$net/train" --no-pretrained ${EPOCHS:+--epochs "$EPOCHS"}
  "$SEGSTYLE" evaluate --params "$prm" --dataset "$dataset" --data-root "$root" \
      --checkpoint "$w/$net/train/checkpoint.pt" --out "$w/$net/eval"
  echo "$net: train + evaluate $(( $(date +%s) - start )) s"
  export "CKPT_$net=$w/$net/train/checkpoint.pt" "PARAMS_$net=$prm"
  names+=("$net")
done
NETWORKS="${names[*]}" LATENCY_ONLY="" AOTI=${AOTI:-0} OUT=$BENCH_OUT SEGSTYLE=$SEGSTYLE PY=$PY \
    STAMP=${STAMP:-"benchmarks/gpu_seg_models.sh (NETS=$NETS)"} benchmarks/gpu_bench.sh
