"""Inference and engine commands run from any directory with only their checkpoint (issue 22).

A user who received a checkpoint, or installed the wheel, has no ``params.yaml``: ``stylize``,
``engine validate`` and ``bundle`` then use the built-in parameters (the demo profile of the
repository's params.yaml, shipped in the package), while a named ``--params`` file must exist.
Each run starts in an empty temporary directory outside the checkout.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from photo_helpers import landscape_photo, save_with_orientation


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """An empty working directory, a fresh style checkpoint and a folder of two photos beside it: the
    same landscape photo saved plainly, and stored turned (portrait) with EXIF orientation 6, as a phone
    held sideways saves it."""
    import torch

    from segstyle.models import build_model, get_model_meta
    from segstyle.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = build_model("transformer_net", pretrained=False)
    ck = save_checkpoint(tmp_path / "style.pt", {
        "model": "transformer_net", "model_kwargs": dict(get_model_meta("transformer_net").default_kwargs),
        "state_dict": net.state_dict(), "params": {}, "data_version": "received"})
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = landscape_photo()
    Image.fromarray(photo).save(photos / "a_landscape.jpg", quality=95)
    save_with_orientation(photo, 6, photos / "b_portrait.jpg")
    work = tmp_path / "empty"
    work.mkdir()
    monkeypatch.chdir(work)
    assert not (work / "params.yaml").exists()
    return ck, photos, photo.shape[:2], work


def test_stylize_outside_a_checkout_keeps_the_displayed_orientation(outside, cli):
    ck, photos, (h, w), work = outside
    with Image.open(photos / "b_portrait.jpg") as im:
        assert (im.height, im.width) == (w, h)  # stored turned
    assert cli(["stylize", str(photos / "b_portrait.jpg"), "--checkpoint", str(ck), "--out-dir", "out"]) == 0
    (out,) = [p for p in (work / "out").iterdir() if p.suffix in (".png", ".jpg")]
    with Image.open(out) as im:
        assert (im.height, im.width) == (h, w)  # as the photo is displayed


def test_engine_validate_outside_a_checkout(outside, cli, capsys):
    ck, photos, _, work = outside
    rc = cli(["engine", "validate", "--backend", "ort-cpu", "--checkpoint", str(ck), "--images", str(photos),
              "--latency-size", "0", "--out", "r.json"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((work / "r.json").read_text())
    (row,) = rec["rows"]
    assert row["ran"] and row["passed"] and row["figures"]["images"] == 2


def test_bundle_outside_a_checkout_takes_golden_images_from_a_folder(outside, cli, capsys):
    ck, photos, _, work = outside
    rc = cli(["bundle", "--checkpoint", str(ck), "--images", str(photos), "--out", "b", "--no-tar"])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((work / "b" / "manifest.json").read_text())
    assert manifest["golden"] == ["photos/a_landscape", "photos/b_portrait"]
    assert (work / "b" / "check.py").is_file()


def test_a_named_params_file_must_exist(outside, cli, capsys):
    ck, photos, _, work = outside
    rc = cli(["stylize", str(photos / "a_landscape.jpg"), "--checkpoint", str(ck), "--out-dir", "out",
              "--params", "missing.yaml"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and err[-1].startswith("segstyle: error: missing.yaml: parameters file not found")
    assert not (work / "out").exists()


def test_the_built_in_parameters_are_the_repositorys_demo_profile(repo_root):
    from segstyle.pipelines.config import BUILTIN_PARAMS, load_params, resolve_params

    assert BUILTIN_PARAMS.read_bytes() == (repo_root / "params.yaml").read_bytes()
    import os

    cwd = os.getcwd()
    try:
        os.chdir(repo_root.parent)  # no params.yaml there
        builtin = resolve_params()
    finally:
        os.chdir(cwd)
    assert builtin.profile == "demo"
    assert builtin.to_dict() == load_params(repo_root / "params.yaml", "demo").to_dict()
