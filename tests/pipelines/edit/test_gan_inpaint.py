"""DCGAN inpainting (``segstyle inpaint --method gan``) with a small untrained DCGAN: what holds for any
generator (only the hole changes, exact size, one window per hole, Poisson blend in place, the latent
search matches the known pixels, one-line errors). That a *trained* one beats a mean fill is in
``tests/pipelines/test_dcgan_demo.py``."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from edit_helpers import constant_class_checkpoint, textured
from metrics_helpers import assert_figures_only
from segstyle.core.errors import SegstyleError
from segstyle.core.io import read_image, write_image
from segstyle.pipelines.edit import gan_inpaint as gi


@pytest.fixture(scope="module")
def gan_ckpt(tmp_path_factory):
    """A DCGAN checkpoint as ``train-gan`` writes it (generator + discriminator), untrained, small."""
    from segstyle.models import build_model
    from segstyle.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    g, d = build_model("dcgan_generator", nz=16, ngf=8), build_model("dcgan_discriminator", ndf=8)
    with torch.no_grad():  # an untrained G is flat grey in eval mode: give it contrast and real BN statistics
        g.net[-2].weight.mul_(10)
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
        for _ in range(10):
            g(torch.randn(32, 16))
    path = tmp_path_factory.mktemp("gan") / "checkpoint.pt"
    save_checkpoint(path, {"model": "dcgan_generator", "model_kwargs": {"nz": 16, "ngf": 8},
                           "state_dict": g.state_dict(), "discriminator": d.state_dict(),
                           "discriminator_kwargs": {"ndf": 8}, "params": {}, "data_version": "test"})
    return path


FAST = gi.LatentSearch(steps=15, restarts=2)


def test_only_the_holes_change_and_the_size_is_kept(gan_ckpt):
    gan = gi.load_dcgan(gan_ckpt)
    rgb = textured(97, 150)  # odd, non-square, smaller than two windows side by side
    hole = np.zeros(rgb.shape[:2], bool)
    hole[10:30, 5:25] = True        # near a corner
    hole[60:97, 120:150] = True     # touching the bottom-right border
    out = gi.gan_inpaint(rgb, hole, gan, FAST)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hole], rgb[~hole])
    assert (out[hole] != rgb[hole]).any(axis=-1).mean() > 0.5  # the holes were refilled, not kept
    assert np.array_equal(gi.gan_inpaint(rgb, np.zeros_like(hole), gan, FAST), rgb)


def test_one_window_per_hole_inside_the_image_covering_it():
    hole = np.zeros((120, 300), bool)
    hole[10:20, 10:20] = True          # small: a 64 px window
    hole[40:110, 200:290] = True       # big: its box doubled, clipped to the image
    wins = gi.windows(hole)
    assert len(wins) == 2
    (x0, y0, w0, h0), (x1, y1, w1, h1) = wins
    assert (w0, h0) == (64, 64) and x0 == 0 and y0 == 0   # centred on the hole, shifted into the image
    assert (w1, h1) == (180, 120) and x1 == 120 and y1 == 0
    for (x, y, w, h), (sl_y, sl_x) in zip(wins, [(slice(10, 20), slice(10, 20)), (slice(40, 110), slice(200, 290))]):
        assert x <= sl_x.start and sl_x.stop <= x + w and y <= sl_y.start and sl_y.stop <= y + h
        assert x + w <= 300 and y + h <= 120


def test_contextual_weights_favour_the_hole_border():
    miss = np.zeros((64, 64), bool)
    miss[20:40, 20:40] = True
    w = gi.contextual_weights(miss)
    assert (w[miss] == 0).all()
    assert w[30, 19] > w[30, 17] > 0 and w[30, 16] == 0 and w[30, 5] == 0  # next to it > 3 px off > beyond 7x7


def test_latent_search_matches_the_known_pixels_better_than_its_start(gan_ckpt):
    """A search that ignored the known pixels (or never stepped) would not bring G(z) closer to them."""
    gan = gi.load_dcgan(gan_ckpt)
    torch.manual_seed(1)
    with torch.no_grad():
        target = gan.generator(torch.randn(1, gan.nz))[0]
    known = ((target.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    known = cv2.GaussianBlur(known, (0, 0), gi.SMOOTH)  # reachable: the search returns G(z) low-passed like this
    miss = np.zeros((64, 64), bool)
    miss[16:48, 16:48] = True
    w = gi.contextual_weights(miss)[..., None]

    def err(img):
        return float((w * np.abs(img.astype(np.float32) - known.astype(np.float32))).sum())

    start = gi.search_latent(gan, known, miss, gi.LatentSearch(steps=1, restarts=4, seed=3))
    found = gi.search_latent(gan, known, miss, gi.LatentSearch(steps=150, restarts=4, seed=3, lr=0.1))
    assert err(found) < 0.3 * err(start)


def test_poisson_blend_places_the_patch_where_the_hole_is():
    """OpenCV's seamlessClone centres the clone on ``p``: an off-by-one centre would shift the fill."""
    rng = np.random.default_rng(0)
    for h, w in ((100, 120), (101, 77), (64, 64)):
        for _ in range(10):
            rgb = np.zeros((h, w, 3), np.uint8)
            rgb[..., 0] = np.linspace(50, 200, w)[None, :].astype(np.uint8)
            hole = np.zeros((h, w), bool)
            x, y = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
            hw, hh = int(rng.integers(3, min(40, w - x))), int(rng.integers(3, min(40, h - y)))
            hole[y:y + hh, x:x + hw] = True
            patch = rgb.copy()
            patch[:, x + hw // 2, 1] = 255    # a bright line down the hole's middle column
            out = gi.poisson_blend(rgb, patch, hole)
            assert int(np.argmax(out[y + hh // 2, :, 1])) == x + hw // 2


def test_cli_all_writes_five_panels_and_scores_a_known_hole(gan_ckpt, tmp_path, cli):
    img = tmp_path / "photo.png"
    write_image(img, textured(70, 90))
    out, scores = tmp_path / "out", tmp_path / "scores"
    assert cli(["inpaint", str(img), "--known-hole", "0.4", "--method", "all", "--gan-checkpoint", str(gan_ckpt),
                "--steps", "5", "--restarts", "2", "--out-dir", str(out), "--scores", str(scores)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"photo_{k}.png" for k in ("compare", "gan", "mask", "ns", "telea")]
    assert read_image(out / "photo_compare.png").shape == (70, 5 * 90 + 4 * 4, 3)
    mask = read_image(out / "photo_mask.png")[..., 0] > 0
    assert mask.sum() == 28 * 28 and mask[35, 45]  # centred square of 0.4 x 70, not dilated
    record = json.loads((scores / "scores.json").read_text())
    assert set(record["per_image"]["photo.png"]) == {"mean_fill", "telea", "ns", "gan"}
    assert record["latent_search"]["steps"] == 5 and record["images"] == 1
    doc = assert_figures_only(scores / "metrics.json")
    assert set(doc["hole"]) == {"mean_fill", "telea", "ns", "gan"}
    assert all(0 < v["psnr"] < 100 and -1 <= v["ssim"] <= 1 for v in doc["hole"].values())


def test_hole_scores_see_only_the_hole():
    from segstyle.pipelines.edit.known_hole import hole_scores, known_hole, mean_fill

    rgb = textured(60, 80)
    hole = known_hole(rgb.shape[:2], 0.5)
    ruined = rgb.copy()
    ruined[~hole] = 0                      # everything outside the hole wrong: scores unchanged
    assert hole_scores(rgb, ruined, hole) == {"psnr": 100.0, "ssim": 1.0}
    flat = mean_fill(rgb, hole)
    assert np.array_equal(flat[~hole], rgb[~hole]) and len(np.unique(flat[hole].reshape(-1, 3), axis=0)) == 1
    assert hole_scores(rgb, flat, hole)["psnr"] < 30


@pytest.mark.parametrize("args, message", [
    (["--method", "gan"], "needs --gan-checkpoint"),
    (["--method", "telea", "--gan-checkpoint", "{gan}"], "only used by --method gan or all"),
    (["--method", "gan", "--gan-checkpoint", "{seg}"], "must be a DCGAN"),
    (["--method", "gan", "--gan-checkpoint", "{tmp}/nope.pt"], "checkpoint not found"),
    (["--scores", "{tmp}/s"], "--scores needs --known-hole"),
])
def test_bad_input_is_one_line_and_writes_nothing(gan_ckpt, tmp_path, cli, capsys, args, message):
    seg = constant_class_checkpoint(tmp_path / "seg.pt", "person")
    img = tmp_path / "photo.png"
    write_image(img, textured())
    args = [a.format(gan=gan_ckpt, seg=seg, tmp=tmp_path) for a in args]
    out = tmp_path / "out"
    assert cli(["inpaint", str(img), "--mask", str(img),  # a valid mask: each case fails on its own option
                *args, "--out-dir", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_missing_mask_is_one_line(gan_ckpt, tmp_path, cli, capsys):
    img = tmp_path / "photo.png"
    write_image(img, textured())
    assert cli(["inpaint", str(img), "--mask", str(tmp_path / "nope.png"), "--method", "gan",
                "--gan-checkpoint", str(gan_ckpt), "--out-dir", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such mask file" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_generator_without_its_discriminator_is_refused(tmp_path):
    from segstyle.models import build_model
    from segstyle.models.checkpoint import save_checkpoint

    path = tmp_path / "g.pt"
    save_checkpoint(path, {"model": "dcgan_generator", "model_kwargs": {"nz": 16, "ngf": 8},
                           "state_dict": build_model("dcgan_generator", nz=16, ngf=8).state_dict(),
                           "params": {}, "data_version": "test"})
    with pytest.raises(SegstyleError, match="without its discriminator"):
        gi.load_dcgan(path)
