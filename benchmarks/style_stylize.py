"""Record the stylisation acceptance figure: every realdata/style image at its original size on the CPU.

    .venv/bin/python benchmarks/style_stylize.py [--checkpoint artifacts/style/checkpoint.pt] [--threads N]

Each image runs in a fresh subprocess so its peak resident memory (``ru_maxrss``) is its own; the
baseline after imports and model load is subtracted to give the memory the stylisation itself
needed. Time and memory do not depend on the weights, so without a checkpoint a seeded, untrained
TransformerNet is used (recorded as such). Writes benchmarks/style_stylize.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import env_prefix, git_commit  # noqa: E402


def one(image: Path, checkpoint: Path | None, threads: int | None) -> dict:
    """Child process: stylise ``image`` once, report size, finiteness, seconds and memory."""
    import resource

    import numpy as np
    import torch

    from segstyle.models import build_model
    from segstyle.models.checkpoint import load_checkpoint, model_from_checkpoint
    from segstyle.core.io import read_image
    from segstyle.pipelines.style.images import to_tensor, to_uint8

    if threads:
        torch.set_num_threads(threads)
    if checkpoint:
        net = model_from_checkpoint(load_checkpoint(checkpoint, task="style"))
    else:
        torch.manual_seed(0)
        net = build_model("transformer_net").eval()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t = time.perf_counter()
    rgb = read_image(image, strict=True)
    t_read = time.perf_counter() - t
    with torch.inference_mode():
        y = net(to_tensor(rgb))
    finite = bool(torch.isfinite(y).all())
    out = to_uint8(y)
    secs = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"image": image.name, "bytes": image.stat().st_size, "width": rgb.shape[1], "height": rgb.shape[0],
            "out_shape_equal": out.shape == rgb.shape and out.dtype == np.uint8, "finite": finite,
            "seconds": round(secs, 2), "decode_seconds": round(t_read, 3),
            "peak_rss_mib": round(rss1 / 1024, 1), "stylize_rss_mib": round((rss1 - rss0) / 1024, 1),
            "threads": torch.get_num_threads()}


def render_markdown(doc: dict) -> str:
    """The .md table from the JSON document (the only writer of style_stylize.md)."""
    lines = ["# Style network on the real style images (CPU, original size)", "",
             f"`{doc['command']}` at commit `{doc['commit']}` (JSON: `benchmarks/style_stylize.json`)"
             + (f", uncommitted files in the measured tree: {', '.join(doc['uncommitted'])}" if doc.get("uncommitted")
                else "")
             + f"; weights: {doc['weights']}; load average at start {doc['loadavg_at_start']} on "
             f"{doc['cpu_count']} cores (shared machine: times are upper bounds).", "",
             "| image | size | file | seconds | peak RSS MiB | stylise RSS MiB | same size | finite |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["images"]:
        lines.append(f"| {r['image']} | {r['width']}x{r['height']} | {r['bytes'] / 1e6:.2f} MB | {r['seconds']} | "
                     f"{r['peak_rss_mib']} | {r['stylize_rss_mib']} | {r['out_shape_equal']} | {r['finite']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "style_stylize.json")
    ap.add_argument("--one", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.checkpoint, a.threads)))
        return

    from segstyle.core.io import write_json, write_text

    ckpt = a.checkpoint or (REPO / "artifacts" / "style" / "checkpoint.pt")
    ckpt = ckpt if ckpt.is_file() else None
    rows = []
    load = os.getloadavg()
    for img in sorted((a.realdata / "style").glob("*.jpg")):
        cmd = [sys.executable, __file__, "--one", str(img)]
        cmd += ["--checkpoint", str(ckpt)] if ckpt else []
        cmd += ["--threads", str(a.threads)] if a.threads else []
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(rows[-1])
    import torch

    commit, uncommitted = git_commit()
    result = {
        "what": "TransformerNet forward at original size, CPU, one image per fresh process",
        "command": env_prefix() + "python benchmarks/style_stylize.py" + (f" --threads {a.threads}" if a.threads else ""),
        "commit": commit, "uncommitted": uncommitted,
        "weights": str(ckpt.relative_to(REPO)) if ckpt and ckpt.is_relative_to(REPO) else (
            str(ckpt) if ckpt else "untrained seeded TransformerNet (time/memory do not depend on weights)"),
        "all_same_size": all(r["out_shape_equal"] for r in rows), "all_finite": all(r["finite"] for r in rows),
        "images": rows, "loadavg_at_start": [round(x, 2) for x in load], "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    write_json(a.out, result)
    write_text(a.out.with_suffix(".md"), render_markdown(result))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
