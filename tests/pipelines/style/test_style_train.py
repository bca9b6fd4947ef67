"""``segstyle train-style``: artifacts, loss reduction, exact resume, style-image checks."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from metrics_helpers import assert_figures_only
from segstyle.models.checkpoint import load_checkpoint
from segstyle.core.io import write_image

REPO = Path(__file__).resolve().parents[3]


def tiny_params(path: Path, **style) -> str:
    """The repo's params.yaml with a tiny demo style block (32 px crops, 6 images, batch 2)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profile"] = "demo"
    raw["style"]["demo"].update({"image_size": 32, "batch_size": 2, "epochs": 2, "max_images": 6,
                                 "sample_every": 2, **style})
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, Path]:
    """Seven smooth synthetic content photos and a 'painting' of saturated colour blocks."""
    root = tmp_path_factory.mktemp("style_data")
    rng = np.random.default_rng(0)
    content = root / "content"
    for i in range(7):
        h, w = 40 + 3 * i, 48 + 5 * i
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx / w, yy / h, (xx + yy) / (h + w)], -1) * 200 + rng.integers(0, 40, 3)
        write_image(content / f"c{i}.jpg", base.clip(0, 255).astype(np.uint8))
    blocks = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    write_image(root / "style.png", blocks)
    return content, root / "style.png"


def rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def train(cli, params: str, style: Path, content: Path, out: Path, *extra: str) -> int:
    return cli(["train-style", "--params", params, "--style", str(style), "--content-dir", str(content),
                "--out", str(out), "--device", "cpu", *extra])


# The training loop's machinery (artifacts, halving loss, resume) is checked against the VGG loss
# with its absolute weights; the random-bank loss the demo uses is checked in test_style_random_loss.py.
# colour_weight is pinned (it would otherwise ride along from params style.demo) to the value this
# test was calibrated with (the demo's until 255a5ee), so retuning the demo recipe does not change
# what this machinery test checks. (Measured: at the demo's 20000 the 12-step style reduction is 0.49;
# at 0 the random-init VGG Gram loss of these 12 steps grows.)
VGG = {"content_weight": 1.0, "style_weight": 100000.0, "tv_weight": 0.000001, "colour_weight": 1000.0}


def test_train_writes_artifacts_and_lowers_style_loss(tmp_path, images, cli, capsys):
    content, style = images
    out = tmp_path / "run"
    assert train(cli, tiny_params(tmp_path / "p.yaml", epochs=4, **VGG), style, content, out, "--loss-net", "vgg") == 0, \
        capsys.readouterr().err
    r = rows(out)
    assert list(r[0]) == ["step", "epoch", "content", "style", "tv", "total"]
    assert len(r) == 4 * 3 and r[-1]["step"] == "12" and r[-1]["epoch"] == "4"
    for row in r:
        parts = float(row["content"]) + float(row["style"]) + float(row["tv"])
        assert parts == pytest.approx(float(row["total"]), rel=1e-4)
    assert (out / "loss.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == [f"step_{s:06d}.png" for s in (2, 4, 6, 8, 10, 12)]
    stylized = sorted((out / "stylized").iterdir())
    assert len(stylized) == 4 and all(p.suffix == ".jpg" for p in stylized)
    ck = load_checkpoint(out / "checkpoint.pt", task="style", model="transformer_net")
    assert ck["epoch"] == 4 and ck["step"] == 12 and ck["style_name"] == "style.png"
    assert ck["style_sha256"] == hashlib.sha256(style.read_bytes()).hexdigest()
    summary = json.loads((out / "record.json").read_text())
    assert summary["style_reduction"] >= 0.5, summary  # acceptance: style loss at least halves
    assert summary["loss_net"] == "vgg" and ck["loss_net"] == "vgg" and summary["style_name"] == "style.png"
    figs = assert_figures_only(out / "metrics.json")  # the DVC metrics file: the record's figures, no labels
    assert figs == {k: summary[k] for k in ("seconds", "style_reduction", "style_last", "total_last")}
    assert "style loss" in capsys.readouterr().out


def test_demo_params_train_with_random_banks_and_no_wall_clock_in_cached_outputs(tmp_path, images, cli, capsys):
    """Without ImageNet weights the demo's loss is the random filter banks; the cached outputs
    (checkpoint, samples, loss.png) are byte-identical across two runs (no timestamps in them),
    the time goes to metrics.json and record.json only."""
    content, style = images
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert train(cli, tiny_params(tmp_path / "p.yaml", epochs=1), style, content, out) == 0, capsys.readouterr().err
    ck = load_checkpoint(outs[0] / "checkpoint.pt")
    assert ck["loss_net"] == "random" and not ck["vgg_pretrained"]
    assert json.loads((outs[0] / "record.json").read_text())["loss_net"] == "random"
    assert "seconds" in assert_figures_only(outs[0] / "metrics.json")
    for rel in ["loss.png", *sorted(str(p.relative_to(outs[0])) for p in (outs[0] / "samples").iterdir())]:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    a, b = (torch.load(o / "checkpoint.pt", weights_only=True) for o in outs)
    assert a["history"] == b["history"]
    assert not any("time" in k or "seconds" in k for k in a)


def test_resume_continues_exactly(tmp_path, images, cli, capsys):
    """1 epoch + --resume to 2 epochs gives bit-identical weights and history to 2 epochs straight."""
    content, style = images
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train(cli, tiny_params(tmp_path / "p2.yaml"), style, content, straight) == 0
    assert train(cli, tiny_params(tmp_path / "p1.yaml", epochs=1), style, content, split) == 0
    assert load_checkpoint(split / "checkpoint.pt")["epoch"] == 1
    assert train(cli, tiny_params(tmp_path / "p2.yaml"), style, content, split, "--resume") == 0
    assert "resuming from" in capsys.readouterr().err
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(split / "checkpoint.pt")
    assert b["epoch"] == 2 and b["step"] == a["step"] == 6
    assert rows(straight) == rows(split)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_resume_refuses_another_style(tmp_path, images, cli, capsys):
    content, style = images
    out = tmp_path / "run"
    params = tiny_params(tmp_path / "p.yaml", epochs=1)
    assert train(cli, params, style, content, out) == 0
    other = tmp_path / "other.png"
    write_image(other, np.zeros((40, 40, 3), np.uint8))
    capsys.readouterr()
    assert train(cli, params, other, content, out, "--resume") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("segstyle: error:") and "drop --resume" in err[-1]


@pytest.mark.parametrize("kind", ["missing", "gray"])
def test_bad_style_image_fails_before_training(tmp_path, images, cli, capsys, kind):
    import cv2

    content, _ = images
    style = tmp_path / "s.png"
    if kind == "gray":
        cv2.imwrite(str(style), np.zeros((20, 20), np.uint8))
    out = tmp_path / "run"
    assert train(cli, tiny_params(tmp_path / "p.yaml"), style, content, out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("segstyle: error: style image") and not out.exists()


def test_no_content_images_is_one_line(tmp_path, images, cli, capsys):
    _, style = images
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(cli, tiny_params(tmp_path / "p.yaml"), style, empty, tmp_path / "run") == 1
    assert "no content images" in capsys.readouterr().err


def test_network_kwargs_and_warmup_from_params(tmp_path, images):
    """params style.network builds the checkpoint's TransformerNet (a residual net starts as the
    identity), style.warmup_steps ramps the LR linearly, and --resume refuses another network."""
    from segstyle.models.checkpoint import model_from_checkpoint
    from segstyle.pipelines.config import load_params
    from segstyle.core.errors import SegstyleError
    from segstyle.pipelines.style.train import train_style

    content, style = images
    p = load_params(tiny_params(tmp_path / "p.yaml", epochs=1))
    net = {"base_channels": 8, "num_residual": 1, "residual": True}
    p = p.model_copy(update={"style": p.style.model_copy(update={"network": net, "warmup_steps": 100})})
    out = tmp_path / "run"
    train_style(p, style_path=style, out=out, content_dirs=(str(content),), progress=False, device="cpu")
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["model_kwargs"] == net
    assert ck["optimizer"]["param_groups"][0]["lr"] == pytest.approx(p.style.lr * 3 / 100)  # 3 steps of 100
    assert model_from_checkpoint(ck).residual
    other = p.model_copy(update={"style": p.style.model_copy(update={"network": {}, "warmup_steps": 0})})
    with pytest.raises(SegstyleError, match="drop --resume"):
        train_style(other, style_path=style, out=out, content_dirs=(str(content),), resume=True, progress=False)


def test_colour_match_net_takes_the_style_statistics_and_its_content_loss_starts_at_zero(tmp_path, images):
    """params style.network.colour_match: the checkpoint carries the style image's colour statistics,
    and the content term compares with the colour-matched content, which the identity-start
    network returns exactly at step 1 (against the raw photo it would not be 0)."""
    from segstyle.models.colour_transform import colour_stats
    from segstyle.models.checkpoint import model_from_checkpoint
    from segstyle.pipelines.config import load_params
    from segstyle.pipelines.style.train import load_style, train_style

    content, style = images
    p = load_params(tiny_params(tmp_path / "p.yaml", epochs=1, content_weight=1.0))
    net = {"base_channels": 8, "num_residual": 1, "residual": True, "colour_match": True}
    p = p.model_copy(update={"style": p.style.model_copy(update={"network": net, "warmup_steps": 0})})
    out = tmp_path / "run"
    train_style(p, style_path=style, out=out, content_dirs=(str(content),), progress=False, device="cpu")
    ck = load_checkpoint(out / "checkpoint.pt")
    want_mean, _ = colour_stats(load_style(style, p.style.style_size or p.style.image_size)[1])
    assert torch.allclose(ck["state_dict"]["colour.mean"], want_mean[0], atol=1e-6)
    assert model_from_checkpoint(ck).colour is not None
    first, last = rows(out)[0], rows(out)[-1]
    assert float(first["content"]) == 0.0 and float(last["content"]) > 0.0


def test_content_size_trains_on_crops_at_a_larger_scale(tmp_path):
    """``resize`` (params style.content_size) resizes the short side before the crop: the crop then
    holds part of the photo at that scale instead of the whole photo shrunk to the crop size."""
    from segstyle.pipelines.style.train import ContentImages

    img = np.zeros((40, 40, 3), np.uint8)
    img[:4], img[-4:], img[:, :4], img[:, -4:] = 255, 255, 255, 255  # a white frame around black
    write_image(tmp_path / "frame.png", img)
    whole = ContentImages([tmp_path / "frame.png"], 16, train=False)[0]
    part = ContentImages([tmp_path / "frame.png"], 16, train=False, resize=64)[0]
    assert whole.shape == part.shape == (3, 16, 16)
    assert whole[:, 0].mean() > 0.5 and part.max() < 0.05  # the frame is in the whole photo, not in the centre part
