"""Object removal: cv2 inpainting behind a class mask or a mask file; one-line errors, nothing half-written."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segstyle.pipelines.edit.inpaint import inpaint, side_by_side
from segstyle.pipelines.edit.masks import dilate, resolve_classes
from segstyle.core.errors import UsageError
from segstyle.core.io import read_image, write_image

from edit_helpers import VOC, constant_class_checkpoint, textured


def test_inpaint_changes_only_the_hole_and_fills_it():
    rgb = textured()
    hole = np.zeros(rgb.shape[:2], bool)
    hole[20:30, 30:45] = True
    damaged = rgb.copy()
    damaged[hole] = 0
    for m in ("telea", "ns"):
        out = inpaint(damaged, hole, m, 3)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.array_equal(out[~hole], damaged[~hole])
        assert out[hole].mean() > 40  # the black hole was filled from the (bright) surroundings


def test_resolve_classes_and_dilate():
    assert resolve_classes("person, dog", VOC) == [12, 15]
    with pytest.raises(UsageError) as e:
        resolve_classes("person,unicorn", VOC)
    assert "unicorn" in str(e.value) and "tvmonitor" in str(e.value) and "\n" not in str(e.value)
    m = np.zeros((21, 21), bool)
    m[10, 10] = True
    d = dilate(m, 3)
    assert d.sum() > 20 and d[10, 13] and d[13, 10] and not d[10, 14] and not d[0, 0]
    assert np.array_equal(dilate(m, 0), m)


def test_side_by_side_has_four_full_size_panels():
    rgb = textured()
    hole = np.zeros(rgb.shape[:2], bool)
    hole[5:9, 5:9] = True
    pic = side_by_side(rgb, hole, {"telea": rgb, "ns": rgb})
    assert pic.shape == (60, 4 * 90 + 3 * 4, 3)


def test_cli_with_checkpoint_removes_the_class(tmp_path, cli, capsys):
    ck = constant_class_checkpoint(tmp_path / "seg.pt", "person")
    img = tmp_path / "photo.png"
    write_image(img, textured(37, 53))  # odd size: outputs must keep it exactly
    out = tmp_path / "out"
    assert cli(["inpaint", str(img), "--checkpoint", str(ck), "--classes", "person", "--out-dir", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["photo_compare.png", "photo_mask.png", "photo_ns.png", "photo_telea.png"]
    for n in ("photo_ns.png", "photo_telea.png", "photo_mask.png"):
        assert read_image(out / n).shape[:2] == (37, 53)
    assert (read_image(out / "photo_mask.png") > 0).all()  # the network predicts 'person' everywhere


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, cli, capsys):
    ck = constant_class_checkpoint(tmp_path / "seg.pt", "background")
    img = tmp_path / "photo.png"
    write_image(img, textured())
    out = tmp_path / "out"

    def fails(args, *needles):
        capsys.readouterr()
        assert cli(["inpaint", *args, "--out-dir", str(out)]) != 0
        # progress bars may precede it (carriage returns); the error itself is one line
        lines = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error" in ln]
        assert len(lines) == 1 and lines[0].startswith("segstyle: error:"), lines
        assert all(n in lines[0] for n in needles), lines[0]
        assert not out.exists()

    fails([str(img), "--checkpoint", str(ck), "--classes", "unicorn"], "unicorn", "person", "tvmonitor")
    fails([str(img), "--checkpoint", str(ck), "--classes", "person"], "empty mask")
    fails([str(tmp_path / "missing.jpg"), "--checkpoint", str(ck), "--classes", "person"], "missing.jpg")
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.full((10, 10), 255, np.uint8))
    fails([str(img), "--mask", str(small)], "same size")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((60, 90), np.uint8))
    fails([str(img), "--mask", str(blank)], "empty mask")
    # a bad second input stops the batch before the first output is written
    good_mask = tmp_path / "m.png"
    cv2.imwrite(str(good_mask), np.pad(np.full((10, 10), 255, np.uint8), ((20, 30), (40, 40))))
    fails([str(img), str(tmp_path / "gone.png"), "--mask", str(good_mask)], "gone.png")
    fails([str(img)], "--checkpoint", "--mask")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


@pytest.mark.realdata
def test_real_photo_known_hole_beats_mean_fill_and_keeps_the_rest(realdata, tmp_path, cli):
    """A hole cut into a real VOC photo: both methods restore it better than a mean-colour fill
    (PSNR inside the hole), and no pixel outside the dilated mask changes."""
    src = realdata / "voc/VOCdevkit/VOC2012/JPEGImages/2007_000033.jpg"
    rgb = read_image(src)
    h, w = rgb.shape[:2]
    hole = np.zeros((h, w), bool)
    hole[h // 3: h // 3 + 24, w // 2: w // 2 + 30] = True
    mask_file = tmp_path / "hole.png"
    cv2.imwrite(str(mask_file), hole.astype(np.uint8) * 255)
    photo = tmp_path / "photo.png"
    write_image(photo, rgb)
    out = tmp_path / "out"
    assert cli(["inpaint", str(photo), "--mask", str(mask_file), "--dilate", "2", "--out-dir", str(out)]) == 0
    grown = dilate(hole, 2)
    mean_fill = rgb.copy()
    mean_fill[grown] = rgb[~grown].mean(axis=0).round().astype(np.uint8)
    baseline = psnr(mean_fill[grown], rgb[grown])
    for m in ("telea", "ns"):
        res = read_image(out / f"photo_{m}.png")
        assert res.shape == rgb.shape
        assert np.array_equal(res[~grown], rgb[~grown]), m
        assert psnr(res[grown], rgb[grown]) > baseline + 3, (m, psnr(res[grown], rgb[grown]), baseline)


def test_dataset_mode_runs_on_validation_images(tmp_path_factory, tmp_path, cli, monkeypatch, capsys):
    """--dataset pets: the first --samples validation images of params' data (the pipeline stage)."""
    from seg_helpers import tiny_data

    root = tiny_data(tmp_path_factory, n_train=4, n_val=3)
    import yaml

    from seg_helpers import REPO

    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["data"]["root"] = str(root)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    monkeypatch.chdir(tmp_path)
    ck = constant_class_checkpoint(tmp_path / "seg.pt", "person")
    out = tmp_path / "out"
    assert cli(["inpaint", "--dataset", "pets", "--samples", "2", "--checkpoint", str(ck), "--classes", "person",
                "--method", "telea", "--out-dir", str(out)]) == 0, capsys.readouterr().err
    assert len(list(out.glob("*_telea.png"))) == 2 and not list(out.glob("*_ns.png"))
    # a model that never finds the class: every image skipped -> one error line, nothing written
    none = constant_class_checkpoint(tmp_path / "bg.pt", "background")
    capsys.readouterr()
    assert cli(["inpaint", "--dataset", "pets", "--samples", "2", "--checkpoint", str(none), "--classes", "person",
                "--out-dir", str(tmp_path / "out2")]) != 0
    assert "every mask is empty" in capsys.readouterr().err and not (tmp_path / "out2").exists()
