"""``segstyle stylize``: exact output sizes, 8-bit output, --max-side, bad input, real images at full size."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segstyle.models import build_model, list_models
from segstyle.models.checkpoint import save_checkpoint
from segstyle.pipelines.config import load_params
from segstyle.core.io import read_image, write_image
from segstyle.pipelines.style.images import to_tensor, to_uint8
from segstyle.pipelines.style.stylize import stylize_array

REPO = Path(__file__).resolve().parents[3]
PARAMS = str(REPO / "params.yaml")


def make_style_checkpoint(path: Path, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_model("transformer_net")
    save_checkpoint(path, {"model": "transformer_net", "model_kwargs": {}, "state_dict": net.state_dict(),
                           "params": load_params(PARAMS).to_dict(), "data_version": "test"})
    return net.eval()


def rand_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    p = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    return p, make_style_checkpoint(p)


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_many_files_keep_exact_size_and_format(tmp_path, ckpt, cli, capsys):
    sizes = {"odd.png": (37, 23), "tiny.png": (3, 5), "wide.jpg": (20, 64)}
    for name, (h, w) in sizes.items():
        write_image(tmp_path / name, rand_rgb(h, w))
    out = tmp_path / "out"
    rc = cli(["stylize", "--params", PARAMS, *[str(tmp_path / n) for n in sizes], "--checkpoint", str(ckpt[0]),
              "--out-dir", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(sizes)
    for name, (h, w) in sizes.items():
        img = read_image(out / name)
        assert img.shape == (h, w, 3) and img.dtype == np.uint8


def test_stylize_array_is_the_clamped_network_output(ckpt):
    net = ckpt[1]
    rgb = rand_rgb(29, 41, seed=1)
    with torch.no_grad():
        ref = net(to_tensor(rgb))
    assert torch.isfinite(ref).all()
    np.testing.assert_array_equal(stylize_array(net, rgb), to_uint8(ref))


def test_max_side_runs_smaller_and_resizes_back(ckpt, monkeypatch):
    net = ckpt[1]
    seen = []
    real = net.forward
    monkeypatch.setattr(net, "forward", lambda x: (seen.append(tuple(x.shape[-2:])), real(x))[1])
    out = stylize_array(net, rand_rgb(61, 100), max_side=32)
    assert seen == [(20, 32)]
    assert out.shape == (61, 100, 3) and out.dtype == np.uint8


def _gray(p: Path) -> None:
    cv2.imwrite(str(p), np.full((16, 12), 128, np.uint8))


def _rgba(p: Path) -> None:
    cv2.imwrite(str(p), np.full((16, 12, 4), 128, np.uint8))


@pytest.mark.parametrize("maker,needle", [(_gray, "grayscale image"), (_rgba, "alpha")])
def test_grey_or_rgba_input_is_one_line_and_nothing_written(tmp_path, ckpt, cli, capsys, maker, needle):
    good = tmp_path / "good.png"
    write_image(good, rand_rgb(16, 16))
    bad = tmp_path / "bad.png"
    maker(bad)
    out = tmp_path / "out"
    rc = cli(["stylize", "--params", PARAMS, str(good), str(bad), "--checkpoint", str(ckpt[0]), "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert rc != 0
    assert last_line(err).startswith("segstyle: error: input ") and needle in last_line(err)
    assert "convert" in last_line(err) and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # not even the good image


def test_segmentation_checkpoint_is_refused(tmp_path, cli, capsys):
    seg = list_models(task="segmentation")
    if not seg:
        pytest.skip("no segmentation model registered")
    ck = tmp_path / "seg.pt"
    save_checkpoint(ck, {"model": seg[0], "model_kwargs": {}, "state_dict": {}, "params": {}, "data_version": "x"})
    img = tmp_path / "a.png"
    write_image(img, rand_rgb(16, 16))
    out = tmp_path / "out"
    rc = cli(["stylize", "--params", PARAMS, str(img), "--checkpoint", str(ck), "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and "segmentation checkpoint" in last_line(err) and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_unreadable_style_image_is_one_line(tmp_path, cli, capsys, content):
    style = tmp_path / "style.jpg"
    if content is not None:
        style.write_bytes(content)
    img = tmp_path / "a.png"
    write_image(img, rand_rgb(16, 16))
    out = tmp_path / "out"
    rc = cli(["stylize", "--params", PARAMS, str(img), "--method", "optimize", "--style", str(style),
              "--out-dir", str(out), "--no-pretrained", "--steps", "1"])
    err = capsys.readouterr().err
    assert rc != 0 and last_line(err).startswith("segstyle: error: style image ") and "Traceback" not in err
    assert not out.exists()


def test_method_and_options_must_agree(tmp_path, ckpt, cli, capsys):
    img = tmp_path / "a.png"
    write_image(img, rand_rgb(16, 16))
    assert cli(["stylize", "--params", PARAMS, str(img)]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
    assert cli(["stylize", "--params", PARAMS, str(img), "--method", "optimize", "--checkpoint", str(ckpt[0])]) == 2
    assert cli(["stylize", "--params", PARAMS, str(img), "--out-dir", str(tmp_path), "--checkpoint", str(ckpt[0])]) == 2
    assert "overwrite its input" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["autumn-oak.jpg", "mosaic.jpg"])
def test_real_style_images_at_original_size(realdata, ckpt, name):
    """Acceptance: the 2.85 MB 1717x1200 autumn-oak.jpg (and odd-sized 470x391 mosaic.jpg) at full size on
    the CPU. All five realdata/style images, with time and peak memory: benchmarks/style_stylize.py."""
    net = ckpt[1]
    for path in [realdata / "style" / name]:
        rgb = read_image(path, strict=True)
        t = time.perf_counter()
        with torch.inference_mode():
            y = net(to_tensor(rgb))
        assert y.shape[-2:] == rgb.shape[:2] and torch.isfinite(y).all(), path.name
        out = to_uint8(y)  # what stylize_array writes when no --max-side resize is involved
        assert out.shape == rgb.shape and out.dtype == np.uint8
        print(f"{path.name} {rgb.shape[1]}x{rgb.shape[0]}: {time.perf_counter() - t:.1f}s")
