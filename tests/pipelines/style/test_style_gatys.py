"""Gatys optimisation (d2l recipe): the loss falls, the CLI writes image + curve, offline weights fail cleanly."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import torch

from segstyle.pipelines.config import load_params
from segstyle.core.io import read_image, write_image
from segstyle.pipelines.style.gatys import gatys

REPO = Path(__file__).resolve().parents[3]
PARAMS = str(REPO / "params.yaml")


def test_rainier_with_autumn_oak_halves_total_loss_in_100_steps(realdata):
    """Acceptance (random VGG19 weights, working size 64 px for test speed; benchmarks/style_gatys.py
    records the same at the recipe's 300 px)."""
    torch.manual_seed(0)
    content = read_image(realdata / "style" / "rainier.jpg", strict=True)
    style = read_image(realdata / "style" / "autumn-oak.jpg", strict=True)
    res = gatys(content, style, load_params(PARAMS).gatys, steps=100, max_side=64, pretrained=False, progress=False)
    h = res.history
    assert len(h["total"]) == 100
    assert h["content"][0] == 0.0  # initialised from the content image
    assert res.reduction >= 0.5, {k: (v[0], v[-1]) for k, v in h.items()}
    assert h["style"][-1] < 0.5 * h["style"][0]  # not only the TV term: the style term falls too
    assert res.image.shape == (43, 64, 3) and res.image.dtype == np.uint8


def _rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_cli_optimize_writes_result_and_loss_curve(tmp_path, cli, capsys):
    write_image(tmp_path / "c.jpg", _rgb(30, 41, 0))
    write_image(tmp_path / "s.png", _rgb(20, 20, 1))
    out = tmp_path / "out"
    rc = cli(["stylize", "--params", PARAMS, str(tmp_path / "c.jpg"), "--method", "optimize", "--style",
              str(tmp_path / "s.png"), "--steps", "3", "--max-side", "24", "--no-pretrained", "--out-dir", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["c.jpg", "c_loss.png"]
    assert read_image(out / "c.jpg").shape == (18, 24, 3)  # the working size (--max-side)
    assert read_image(out / "c_loss.png").shape[2] == 3


def test_cli_optimize_offline_pretrained_is_one_line(tmp_path, cli, capsys, monkeypatch):
    import torchvision.models._api as api

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    write_image(tmp_path / "c.jpg", _rgb(16, 16, 0))
    write_image(tmp_path / "s.png", _rgb(16, 16, 1))
    out = tmp_path / "out"
    rc = cli(["stylize", "--params", PARAMS, str(tmp_path / "c.jpg"), "--style", str(tmp_path / "s.png"),
              "--pretrained", "--steps", "1", "--out-dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("segstyle: error: cannot load pretrained weights VGG19_Weights")
    assert "--no-pretrained" in err[-1] and not out.exists()
