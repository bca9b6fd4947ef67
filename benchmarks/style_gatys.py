"""Record the Gatys acceptance figure: rainier.jpg styled with autumn-oak.jpg for 100 steps.

    .venv/bin/python benchmarks/style_gatys.py [--max-side 300] [--steps 100] [--pretrained]

Writes benchmarks/style_gatys.json (loss terms at the first and last step, the total's reduction,
time) and benchmarks/style_gatys.png (content | result | style, and the loss curves next to it).
Offline the VGG19 weights are random (seeded): the figure proves the optimisation works, not the
art. With random features the TV term dominates the total, so the per-term numbers are recorded too.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import env_prefix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=REPO.parent / "shared" / "realdata")
    ap.add_argument("--max-side", type=int, default=None, help="working size (default params gatys.max_side)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--pretrained", action="store_true", help="ImageNet VGG19 (needs the weights file)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "style_gatys.json")
    a = ap.parse_args()

    import torch

    from segstyle.pipelines.config import load_params
    from segstyle.core.io import read_image, write_json
    from segstyle.pipelines.style.gatys import gatys
    from segstyle.pipelines.visualize import plot_curves, save_grid

    torch.manual_seed(0)
    cfg = load_params(REPO / "params.yaml").gatys
    content = read_image(a.realdata / "style" / "rainier.jpg", strict=True)
    style = read_image(a.realdata / "style" / "autumn-oak.jpg", strict=True)
    load = os.getloadavg()
    t = time.perf_counter()
    res = gatys(content, style, cfg, steps=a.steps, max_side=a.max_side, pretrained=a.pretrained)
    secs = time.perf_counter() - t
    h = res.history
    curve = a.out.with_name(a.out.stem + "_loss.png")
    plot_curves(curve, h, xlabel="step", logy=True, title="Gatys rainier / autumn-oak")
    save_grid(a.out.with_suffix(".png"), [[content, res.image, style]], cell=256,
              titles=["rainier (content)", f"{a.steps} steps", "autumn-oak (style)"])
    write_json(a.out, {
        "what": "Gatys (d2l recipe) rainier.jpg + autumn-oak.jpg",
        "command": env_prefix() + "python benchmarks/style_gatys.py" + (f" --max-side {a.max_side}" if a.max_side else "")
                   + (f" --steps {a.steps}" if a.steps != 100 else "") + (" --pretrained" if a.pretrained else ""),
        "steps": a.steps, "working_size_hw": list(res.image.shape[:2]), "vgg": cfg.vgg,
        "vgg_weights": "imagenet" if a.pretrained else "random (seed 0)",
        "weights": {"content": cfg.content_weight, "style": cfg.style_weight, "tv": cfg.tv_weight},
        "lr": cfg.lr, "lr_step": cfg.lr_step, "lr_gamma": cfg.lr_gamma,
        "first": {k: v[0] for k, v in h.items()}, "last": {k: v[-1] for k, v in h.items()},
        "total_reduction": round(res.reduction, 4),
        "style_reduction": round(1 - h["style"][-1] / h["style"][0], 4),
        "passes_acceptance": res.reduction >= 0.5,
        "seconds": round(secs, 1), "torch_threads": torch.get_num_threads(),
        "loadavg_at_start": [round(x, 2) for x in load], "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "python": platform.python_version(),
    })
    print(f"total {h['total'][0]:.4g} -> {h['total'][-1]:.4g} ({100 * res.reduction:.0f}% lower) "
          f"in {a.steps} steps at {res.image.shape[1]}x{res.image.shape[0]}, {secs:.0f}s; wrote {a.out}")


if __name__ == "__main__":
    main()
