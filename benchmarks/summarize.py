"""Render `segstyle engine bench` / `engine validate` JSON records of one folder as a markdown summary.

Usage: python benchmarks/summarize.py benchmarks/cpu > benchmarks/cpu/README.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: str) -> None:
    d = Path(folder)
    benches = sorted(p for p in d.glob("*.json") if "results" in json.loads(p.read_text()))
    validations = sorted(p for p in d.glob("validate/*.json") if "metrics" in json.loads(p.read_text()))
    if not benches:
        sys.exit(f"{d}: no bench JSON files")
    env = json.loads(benches[0].read_text())["environment"]
    where = env.get("gpu") or env.get("cpu")
    print(f"# Benchmarks: {where}\n")
    print(f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, TensorRT {env.get('tensorrt') or 'absent'}; "
          f"timer: {json.loads(benches[0].read_text())['timer']}.\n")
    print("| model | backend | HxW | batch | p50 ms | p95 ms | p99 ms | img/s |")
    print("|---|---|---|---|---|---|---|---|")
    for p in benches:
        r = json.loads(p.read_text())
        for x in r["results"]:
            print(f"| {r['model']} | {x['backend']} | {x['size'][0]}x{x['size'][1]} | {x['batch']} | "
                  f"{x['p50_ms']:.2f} | {x['p95_ms']:.2f} | {x['p99_ms']:.2f} | {x['throughput_img_s']:.1f} |")
    if validations:
        print("\n## Validation against PyTorch FP32\n")
        print("| model | backend | size | passed | agreement % / PSNR dB | delta mIoU pt / SSIM | max abs err |")
        print("|---|---|---|---|---|---|---|")
        for p in validations:
            r = json.loads(p.read_text())
            m = r["metrics"]
            if r["task"] == "segmentation":
                a, b, e = f"{m['pixel_agreement_pct']:.3f}", f"{m['delta_miou_pts']:+.3f}", m["max_abs_logit_err"]
            else:
                a, b, e = f"{m['psnr_db_min']:.2f}", f"{m['ssim_min']:.4f}", m["max_abs_err"]
            print(f"| {r['model']} | {r['backend']} | {r['size'][0]}x{r['size'][1]} | {r['passed']} | {a} | {b} | {e:.3g} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/cpu")
