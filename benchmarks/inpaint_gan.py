"""Record the inpainting comparison: mean fill, Telea, Navier-Stokes and the demo DCGAN inside a known hole.

    .venv/bin/python benchmarks/inpaint_gan.py [--images 12] [--hole 0.35] [--checkpoint GAN.pt]

Writes the embedded sample data to a temporary folder, trains the DCGAN there with the ``demo``
profile exactly as ``make run`` does (unless ``--checkpoint`` names one), then cuts a centred square
hole of ``--hole`` x the short side in the first ``--images`` held-out Pet images (the test split;
the GAN trained on trainval), fills it with each method and scores PSNR/SSIM inside the hole only
(:mod:`segstyle.pipelines.edit.known_hole`). Writes benchmarks/inpaint_gan.json and .md, the last
sample grid (benchmarks/inpaint_gan_samples.png) and three side-by-side pictures
(benchmarks/inpaint_gan.png).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import env_prefix, git_commit  # noqa: E402

ORDER = ("mean_fill", "telea", "ns", "gan")
NAMES = {"mean_fill": "mean fill (baseline)", "telea": "Telea (cv2)", "ns": "Navier-Stokes (cv2)",
         "gan": "DCGAN (Yeh et al. 2017)"}


def render_markdown(doc: dict) -> str:
    """The .md page from the JSON document (the only writer of inpaint_gan.md)."""
    g = doc["gan"]
    lines = ["# Inpainting a known hole: mean fill, Telea, Navier-Stokes, DCGAN (CPU)", "",
             f"`{doc['command']}` at commit `{doc['commit']}` (JSON: `benchmarks/inpaint_gan.json`)"
             + (f", uncommitted files in the measured tree: {', '.join(doc['uncommitted'])}" if doc.get("uncommitted")
                else "") + ".", "",
             f"{doc['images']} held-out Pet images of the embedded sample (test split, synthetic pets), a centred "
             f"square hole of {doc['hole']} x the short side; PSNR (dB) and SSIM inside the hole only. The DCGAN: "
             f"{g['source']}; KID (random features, not Inception) {g['kid']:.4f} against the untrained "
             f"generator's {g['kid_untrained']:.4f}, mean D(G(z)) over the last fifth of epochs {g['d_fake_last']:.2f}; "
             f"latent search {doc['latent_search']['steps']} steps x {doc['latent_search']['restarts']} restarts.", "",
             "| method | PSNR in hole | SSIM in hole | images where PSNR beats the mean fill |",
             "|---|---|---|---|"]
    for m in ORDER:
        r = doc["mean"][m]
        wins = "" if m == "mean_fill" else f"{doc['wins_over_mean_fill'][m]}/{doc['images']}"
        lines.append(f"| {NAMES[m]} | {r['psnr']:.2f} | {r['ssim']:.3f} | {wins} |")
    best = max(ORDER, key=lambda m: doc["mean"][m]["psnr"])
    verdict = ("The DCGAN has the best PSNR in the hole." if best == "gan" else
               f"The DCGAN loses to {NAMES[best]} here: on 64x64 windows a generator trained for about a minute on "
               f"{g['train_images']} synthetic pets invents plausible colour and rough shape, not the stripes and "
               "edges that the border-propagating methods continue; it "
               + ("beats" if doc["mean"]["gan"]["psnr"] > doc["mean"]["mean_fill"]["psnr"] else "does not beat")
               + " the mean fill in PSNR"
               + (" but not in SSIM (its fill keeps the generator's pixel-scale noise, which SSIM punishes and a flat "
                  "colour does not have)." if doc["mean"]["gan"]["ssim"] < doc["mean"]["mean_fill"]["ssim"] else "."))
    lines += ["", verdict, "", "![input | mask | Telea | Navier-Stokes | DCGAN](inpaint_gan.png)", "",
              "The demo DCGAN's last sample grid (fixed noise):", "", "![samples](inpaint_gan_samples.png)", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--hole", type=float, default=0.35)
    ap.add_argument("--checkpoint", type=Path, default=None, help="A trained DCGAN instead of training the demo one.")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "inpaint_gan.json")
    a = ap.parse_args()
    load = [round(x, 2) for x in os.getloadavg()]

    import numpy as np
    import torch

    from segstyle.core.io import read_image, write_image, write_json, write_text
    from segstyle.pipelines.config import load_params
    from segstyle.pipelines.data.sample import generate
    from segstyle.pipelines.edit.gan_inpaint import LatentSearch
    from segstyle.pipelines.edit.inpaint import dataset_images, run
    from segstyle.pipelines.train_gan import GanSettings, train_gan

    tmp = Path(tempfile.mkdtemp(prefix="inpaint_gan_"))
    generate(tmp / "data", progress=False)
    p = load_params(REPO / "params.yaml", profile="demo")
    p = p.model_copy(update={"data": p.data.model_copy(update={"root": str(tmp / "data")})})
    if a.checkpoint:
        ckpt, gan = a.checkpoint, {"source": str(a.checkpoint)}
        ev = {}
    else:
        t = time.perf_counter()
        s = train_gan(p, GanSettings.from_params(p), dataset="pets", out=tmp / "gan")
        ckpt = tmp / "gan" / "checkpoint.pt"
        rows = list(csv.DictReader((tmp / "gan" / "metrics.csv").open()))
        ev = s["evaluation"]
        gan = {"source": f"trained here with the demo profile ({s['epochs']} epochs, {round(time.perf_counter() - t)} s)",
               "train_images": s["images"], "d_fake_last": round(float(np.mean(
                   [float(r["d_fake"]) for r in rows[-len(rows) // 5:]])), 3),
               "kid": ev["kid_random_features"], "kid_untrained": ev["kid_untrained_generator"]}
        grid = sorted((tmp / "gan" / "samples").glob("epoch_*.png"))[-1]
        write_image(REPO / "benchmarks" / "inpaint_gan_samples.png", read_image(grid))
    images = dataset_images(p, "pets", a.images)
    search = LatentSearch()
    t = time.perf_counter()
    run(images, tmp / "pictures", method="all", gan_checkpoint=ckpt, search=search, known=a.hole)
    seconds = round(time.perf_counter() - t, 1)
    scores = json.loads((tmp / "pictures" / "scores.json").read_text())
    per = scores["per_image"]
    wins = {m: sum(per[i][m]["psnr"] > per[i]["mean_fill"]["psnr"] for i in per) for m in ORDER if m != "mean_fill"}
    pics = [read_image(tmp / "pictures" / f"{Path(i).stem}_compare.png") for i in images[:3]]
    width = max(x.shape[1] for x in pics)
    pics = [np.pad(x, ((0, 4), (0, width - x.shape[1]), (0, 0)), constant_values=255) for x in pics]
    write_image(REPO / "benchmarks" / "inpaint_gan.png", np.concatenate(pics, 0))
    commit, uncommitted = git_commit()
    doc = {"what": "PSNR/SSIM inside a known centred hole: mean fill, Telea, Navier-Stokes, DCGAN",
           "command": env_prefix() + "python benchmarks/inpaint_gan.py"
           + (f" --images {a.images}" if a.images != 12 else "") + (f" --hole {a.hole}" if a.hole != 0.35 else ""),
           "commit": commit, "uncommitted": uncommitted, "images": len(per), "hole": a.hole,
           "mean": scores["mean"], "wins_over_mean_fill": wins, "per_image": per,
           "latent_search": scores["latent_search"], "gan": gan, "seconds_inpaint_all_methods": seconds,
           "torch": torch.__version__, "cpu_count": os.cpu_count(),
           "loadavg_at_start": load}
    write_json(a.out, doc)
    write_text(a.out.with_suffix(".md"), render_markdown(doc))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
