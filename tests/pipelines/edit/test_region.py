"""Region-aware stylisation: feathered blend of the stylised photo into the segmented region only."""

from __future__ import annotations

import numpy as np
import torch

from segstyle.pipelines.edit.region import blend, feathered_alpha
from segstyle.core.io import read_image, write_image
from edit_helpers import VOC, confident_class_checkpoint, textured


def test_feathered_alpha_is_soft_at_the_edge_and_exact_far_away():
    m = np.zeros((60, 60), bool)
    m[:, 30:] = True
    a = feathered_alpha(m, 3.0)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    assert a[0, 0] == 0 and a[0, 59] == 1          # > 3 sigma from the edge: untouched / fully stylised
    assert 0.3 < a[10, 29] < 0.7 and 0.3 < a[10, 30] < 0.7
    assert np.all(np.diff(a[10]) >= 0)             # monotone across the seam
    assert np.array_equal(feathered_alpha(m, 0), m.astype(np.float32))


def test_blend_picks_each_side():
    photo = np.full((4, 6, 3), 10, np.uint8)
    styl = np.full((4, 6, 3), 250, np.uint8)
    alpha = np.zeros((4, 6), np.float32)
    alpha[:, 3:] = 1
    alpha[:, 2] = 0.5
    out = blend(photo, styl, alpha)
    assert (out[:, :2] == 10).all() and (out[:, 3:] == 250).all() and (out[:, 2] == 130).all()


def _style_checkpoint(path):
    from segstyle.models import build_model
    from segstyle.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(path, {"model": "transformer_net", "model_kwargs": {"base_channels": 8, "num_residual": 1},
                           "state_dict": build_model("transformer_net", base_channels=8, num_residual=1).state_dict(),
                           "params": {}, "data_version": "test"})
    return path


def test_cli_region_foreground_and_background(tmp_path, cli, capsys):
    style = _style_checkpoint(tmp_path / "style.pt")
    img = tmp_path / "photo.png"
    photo = textured(40, 56)
    write_image(img, photo)
    everywhere = confident_class_checkpoint(tmp_path / "seg_person.pt", "person")  # predicts person everywhere
    full = tmp_path / "full"
    assert cli(["stylize", str(img), "--checkpoint", str(style), "--out-dir", str(full)]) == 0
    fg = tmp_path / "fg"
    assert cli(["stylize", str(img), "--checkpoint", str(style), "--seg-checkpoint", str(everywhere),
                "--classes", "person", "--region", "foreground", "--out-dir", str(fg)]) == 0
    bg = tmp_path / "bg"
    assert cli(["stylize", str(img), "--checkpoint", str(style), "--seg-checkpoint", str(everywhere),
                "--classes", "person", "--region", "background", "--out-dir", str(bg)]) == 0
    styled = read_image(full / "photo.png")
    assert not np.array_equal(styled, photo)
    assert np.array_equal(read_image(fg / "photo.png"), styled)   # the region is the whole picture
    assert np.array_equal(read_image(bg / "photo.png"), photo)    # the region is empty: photo unchanged
    capsys.readouterr()
    assert cli(["stylize", str(img), "--checkpoint", str(style), "--seg-checkpoint", str(everywhere),
                "--classes", "unicorn", "--out-dir", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err
    assert "unicorn" in err and "person" in err and not (tmp_path / "x").exists()
    assert len(VOC) == 21
