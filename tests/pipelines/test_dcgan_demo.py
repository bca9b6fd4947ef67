"""The demo DCGAN learns (issue 23): trained once here with the ``demo`` profile on the embedded sample
data, exactly as ``make run`` trains it (about a CPU minute), then judged as a user would judge it:

- neither side collapses: the mean D(G(z)) of the last epochs stays in 0.1..0.9;
- the KID (random features) is at most 30 % of the untrained generator's;
- the last sample grid is not noise: its tiles have the real crops' contrast and their spatial
  structure (variance that survives a blur), which the untrained generator's grid has neither of;
- its semantic inpainting inside a known hole on held-out Pet images beats the same search through the
  untrained generator by more than 1 dB and stays within 0.5 dB of a mean fill (see that test for why).
"""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

CELL, PAD = 64, 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from segstyle.pipelines.config import load_params
    from segstyle.pipelines.data.sample import generate
    from segstyle.pipelines.train_gan import GanSettings, train_gan

    root = tmp_path_factory.mktemp("sample") / "data"
    generate(root, progress=False)
    p = load_params(profile="demo")
    p = p.model_copy(update={"data": p.data.model_copy(update={"root": str(root)})})
    out = tmp_path_factory.mktemp("gan")
    summary = train_gan(p, GanSettings.from_params(p), dataset="pets", out=out, progress=False)
    return p, out, summary


def tiles(grid_png) -> np.ndarray:
    """The 8x8 grid's tiles (grey, float), the labelled first one left out."""
    from segstyle.core.io import read_image

    g = cv2.cvtColor(read_image(grid_png), cv2.COLOR_RGB2GRAY).astype(np.float32)
    out = [g[PAD + r * (CELL + PAD):][:CELL, PAD + c * (CELL + PAD):][:, :CELL] for r in range(8) for c in range(8)]
    return np.stack(out[1:])


def contrast_and_structure(t: np.ndarray) -> tuple[float, float]:
    """Median per-tile std (grey levels) and median share of a tile's variance left after a sigma-2 blur
    (pixel noise has almost none; shapes on backgrounds keep most of it)."""
    std = t.reshape(len(t), -1).std(1)
    blurred = np.stack([cv2.GaussianBlur(x, (0, 0), 2) for x in t])
    share = blurred.reshape(len(t), -1).var(1) / np.maximum(std ** 2, 1e-6)
    return float(np.median(std)), float(np.median(share))


def test_neither_side_collapses_and_kid_falls(demo):
    _, out, summary = demo
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    last = [float(r["d_fake"]) for r in rows[-len(rows) // 5:]]
    assert 0.1 <= np.mean(last) <= 0.9, last
    ev = summary["evaluation"]
    assert ev["kid_random_features"] <= 0.3 * ev["kid_untrained_generator"], ev


def test_last_grid_has_the_contrast_and_structure_of_real_crops(demo, tmp_path):
    from segstyle.models import build_model
    from segstyle.models.checkpoint import load_checkpoint
    from segstyle.pipelines.train_gan import Crops, image_files, save_sample_grid, to_pixels

    p, out, summary = demo
    ck = load_checkpoint(out / "checkpoint.pt", model="dcgan_generator")
    torch.manual_seed(p.seed)
    untrained = build_model("dcgan_generator", **ck["model_kwargs"])
    save_sample_grid(tmp_path / "untrained.png", untrained, ck["fixed_noise"], "epoch 0")
    trained_std, trained_share = contrast_and_structure(tiles(out / "samples" / f"epoch_{ck['epoch']:03d}.png"))
    untrained_std, _ = contrast_and_structure(tiles(tmp_path / "untrained.png"))
    crops = Crops(image_files(p, "pets", 0), 64)
    real = np.stack([cv2.cvtColor(to_pixels(crops[i]), cv2.COLOR_RGB2GRAY).astype(np.float32) for i in range(63)])
    real_std, real_share = contrast_and_structure(real)
    print(f"tile std: trained {trained_std:.1f}, untrained {untrained_std:.2f}, real {real_std:.1f}; "
          f"structure: trained {trained_share:.2f}, real {real_share:.2f}")
    assert untrained_std < 2  # an untrained DCGAN draws flat grey
    assert 0.4 * real_std <= trained_std <= 2.5 * real_std
    assert trained_share >= 0.5 * real_share


def test_gan_inpainting_learns_and_stays_near_a_mean_fill_on_held_out_images(demo, tmp_path):
    """What training buys the inpainting, on held-out images: the trained generator's fill beats the same
    search through an untrained generator (flat grey tiles) by a clear margin, and is not far from a mean fill.

    Why not "beats the mean fill": that figure depends on the machine. With the same seeds and code the
    trained fill scored +0.22 dB over the mean fill here on a 2-core AMD EPYC (AVX512-VNNI) in session 12,
    and the pipeline's own stage -0.31 dB on the same 4 images; issue 23's session measured +1.66 dB on 12
    images (benchmarks/inpaint_gan.md). The benchmark page, not this test, carries that claim."""
    from segstyle.models import build_model
    from segstyle.models.checkpoint import load_checkpoint, save_checkpoint
    from segstyle.pipelines.edit.gan_inpaint import LatentSearch
    from segstyle.pipelines.edit.inpaint import dataset_images, run

    p, out, _ = demo
    images = dataset_images(p, "pets", 4)  # the test split: the GAN trained on trainval
    ck = load_checkpoint(out / "checkpoint.pt", model="dcgan_generator")
    torch.manual_seed(p.seed)
    ck["state_dict"] = build_model("dcgan_generator", **ck["model_kwargs"]).state_dict()
    save_checkpoint(tmp_path / "untrained.pt", ck)
    mean = {}
    for name, gan in (("trained", out / "checkpoint.pt"), ("untrained", tmp_path / "untrained.pt")):
        run(images, tmp_path / name, method="gan", gan_checkpoint=gan, search=LatentSearch(), known=0.35,
            progress=False)
        mean[name] = json.loads((tmp_path / name / "scores.json").read_text())["mean"]
    trained, untrained, fill = mean["trained"]["gan"], mean["untrained"]["gan"], mean["trained"]["mean_fill"]
    print(f"PSNR in the hole: trained {trained['psnr']:.2f}, untrained {untrained['psnr']:.2f}, "
          f"mean fill {fill['psnr']:.2f} dB")
    assert trained["psnr"] > untrained["psnr"] + 1.0, mean
    assert trained["psnr"] > fill["psnr"] - 0.5, mean
