"""Record the training acceptance figure: the demo profile lowers the style loss by >= 50 %.

    .venv/bin/python benchmarks/style_train.py [--profile demo] [--out /tmp/style_demo]

Runs exactly what ``segstyle train-style --profile demo`` runs (content: the VOC + Pet images under
``data.root``, style: ``style.style_image``) into a scratch directory and writes
benchmarks/style_train.json with the summary (style loss of the untrained network at step 1 vs the
mean of the last steps, wall time, machine load).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import env_prefix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--out", type=Path, default=None, help="training output dir (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "style_train.json")
    a = ap.parse_args()
    os.chdir(REPO)  # params paths (data.root, style.style_image) are relative to the repo

    import torch

    from segstyle.pipelines.config import load_params
    from segstyle.core.io import write_json
    from segstyle.pipelines.style.train import train_style

    params = load_params("params.yaml", a.profile)
    out = a.out or Path(tempfile.mkdtemp(prefix="style_train_"))
    load = os.getloadavg()
    s = train_style(params, style_path=Path(params.style.style_image), out=out)
    write_json(a.json, {
        "what": f"segstyle train-style --profile {a.profile}",
        "command": env_prefix() + f"python benchmarks/style_train.py --profile {a.profile}",
        "style_config": params.style.model_dump(), **s, "passes_acceptance": s["style_reduction"] >= 0.5,
        "out": str(out), "loadavg_at_start": [round(x, 2) for x in load], "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
    })
    print(f"style {s['style_first']:.4g} -> {s['style_last']:.4g} ({100 * s['style_reduction']:.0f}% lower), "
          f"{s['seconds']:.0f}s; wrote {a.json}")


if __name__ == "__main__":
    main()
