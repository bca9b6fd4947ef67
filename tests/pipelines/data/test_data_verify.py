"""``segstyle data verify`` / ``show``: every problem reported with its file, exit codes, JSON, pictures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segstyle.pipelines.data.layout import Layout
from segstyle.pipelines.data.sample import generate


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "data"
    generate(root, progress=False)
    return root


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    """A private copy of the sample (VOC + Pets) that a test may damage."""
    dst = tmp_path / "data"
    for d in ("voc", "pets"):
        shutil.copytree(pristine / d, dst / d)
    return dst


def _first(root: Path, name: str, split: str) -> tuple[Layout, str]:
    lay = Layout.of(name, root)
    return lay, lay.ids(split)[0]


def truncate_jpeg(root):
    lay, i = _first(root, "voc", "train")
    p = lay.image_path(i)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return "voc", p, "truncated"


def wrong_size_mask(root):
    lay, i = _first(root, "voc", "val")
    p = lay.mask_path(i)
    with Image.open(p) as m:
        small = m.resize((80, 60), Image.NEAREST)
    small.save(p)
    return "voc", p, "mask size 80x60 != image size 160x120"


def voc_label_42(root):
    lay, i = _first(root, "voc", "train")
    p = lay.mask_path(i)
    with Image.open(p) as m:
        a, pal = np.array(m), m.getpalette()
    a[10:20, 10:20] = 42
    im = Image.fromarray(a, mode="P")
    im.putpalette(pal)
    im.save(p)
    return "voc", p, "invalid mask values [42]"


def listed_but_missing(root):
    lay = Layout.of("voc", root)
    with open(lay.split_file("val"), "a") as f:
        f.write("2012_999999\n")
    return "voc", lay.image_path("2012_999999"), "image file missing", 2   # and its mask


def pets_rgb_trimap(root):
    lay, i = _first(root, "pets", "test")
    p = lay.mask_path(i)
    with Image.open(p) as m:
        m.convert("RGB").save(p)
    return "pets", p, "mask mode is RGB, expected L"


def pets_value_0(root):
    lay, i = _first(root, "pets", "trainval")
    p = lay.mask_path(i)
    a = np.array(Image.open(p))
    a[0, 0] = 0
    Image.fromarray(a, mode="L").save(p)
    return "pets", p, "invalid mask values [0]"


@pytest.mark.parametrize("damage", [truncate_jpeg, wrong_size_mask, voc_label_42, listed_but_missing,
                                    pets_rgb_trimap, pets_value_0])
def test_bad_input_is_reported_with_its_file(root, damage, cli, capsys):
    dataset, path, what, *n = damage(root)
    assert cli(["data", "verify", "--root", str(root), "--dataset", dataset]) == 1
    err = capsys.readouterr().err
    assert f"{path}: " in err and what in err, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"segstyle: error: {dataset} under {root}: {n[0] if n else 1} problem")


def test_every_problem_is_reported_and_counted(root, cli, capsys, tmp_path):
    damaged = [f(root)[1] for f in (truncate_jpeg, wrong_size_mask, voc_label_42, listed_but_missing)]
    out = tmp_path / "report.json"
    assert cli(["data", "verify", "--root", str(root), "--dataset", "voc", "--json", "--out", str(out)]) == 1
    cap = capsys.readouterr()
    report = json.loads(cap.out)
    assert json.loads(out.read_text()) == report
    for p in damaged:
        assert str(p) in cap.err
    # the missing id has both files missing: 5 problems on 4 ids
    assert len(report["problems"]) == 5 and report["ok"] is False
    assert report["splits"]["val"] == {"ids": 33, "ok": 31, "bad": 2}         # wrong size + missing id
    assert report["splits"]["train"] == {"ids": 96, "ok": 95, "bad": 1}       # truncated + label 42: one id
    assert report["splits"]["trainval"] == {"ids": 128, "ok": 126, "bad": 2}
    assert "segstyle: error: voc under" in cap.err and "5 problem(s)" in cap.err


def test_json_histogram_and_counts(pristine, cli, capsys, tmp_path):
    out = tmp_path / "m" / "voc.json"
    assert cli(["data", "verify", "--root", str(pristine), "--dataset", "voc", "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    assert report["ok"] and report["problems"] == [] and report["images"] == 128
    assert report["splits"] == {"train": {"ids": 96, "ok": 96, "bad": 0}, "val": {"ids": 32, "ok": 32, "bad": 0},
                                "trainval": {"ids": 128, "ok": 128, "bad": 0}}
    hist = {int(k): v for k, v in report["histogram"].items()}
    assert sum(hist.values()) == 128 * 160 * 120            # every pixel of every distinct mask, once
    assert set(hist) == set(range(21)) | {255}
    assert [p.name for p in out.parent.iterdir()] == ["voc.json"]   # written atomically, no temp left


def test_pets_split_option(pristine, cli, capsys):
    assert cli(["data", "verify", "--root", str(pristine), "--dataset", "pets", "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["splits"]) == ["test"] and report["images"] == 37
    assert sum(report["histogram"].values()) == 37 * 160 * 128 and set(report["histogram"]) == {"1", "2", "3"}


def test_missing_dataset_is_one_line(tmp_path, cli, capsys):
    assert cli(["data", "verify", "--root", str(tmp_path), "--dataset", "pets"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no pets dataset under {tmp_path}" in err and "segstyle data sample" in err
    # it names both places it looked: the data-root form and the torchvision dataset-folder form
    assert str(tmp_path / "pets" / "oxford-iiit-pet") in err and f"{tmp_path / 'oxford-iiit-pet'} (dataset folder)" in err


@pytest.mark.parametrize("name, count", [("voc", None), ("pets", 37)])
def test_root_may_be_the_dataset_folder(pristine, cli, capsys, tmp_path, name, count):
    """torchvision's habit: VOCSegmentation(root="data/voc") holds VOCdevkit/, OxfordIIITPet(root="data/pets")."""
    assert cli(["data", "verify", "--root", str(pristine), "--dataset", name, "--json"]) == 0
    via_root = json.loads(capsys.readouterr().out)
    assert cli(["data", "verify", "--root", str(pristine / name), "--dataset", name, "--json"]) == 0
    via_folder = json.loads(capsys.readouterr().out)
    assert via_folder["splits"] == via_root["splits"] and via_folder["histogram"] == via_root["histogram"]
    assert via_folder["images"] == via_root["images"] > 0
    out = tmp_path / "grid.png"
    assert cli(["data", "show", "--root", str(pristine / name), "--dataset", name, "-n", "2", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 0
    # the other dataset's folder is not mistaken for this one
    other = "pets" if name == "voc" else "voc"
    assert cli(["data", "verify", "--root", str(pristine / other), "--dataset", name]) == 1
    assert f"no {name} dataset under {pristine / other}" in capsys.readouterr().err


def test_verify_end_to_end_subprocess(root):
    path = truncate_jpeg(root)[1]
    r = subprocess.run([sys.executable, "-m", "segstyle.pipelines.cli", "data", "verify", "--root", str(root),
                        "--dataset", "voc"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"{path}: truncated or corrupt JPEG" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("dataset,rows", [("voc", 4), ("pets", 3)])
def test_show_writes_grid(pristine, cli, tmp_path, dataset, rows):
    out = tmp_path / "grid.png"
    assert cli(["data", "show", "--root", str(pristine), "--dataset", dataset, "-n", str(rows),
                "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        w, h = im.size
    img_dir = {"voc": "voc/VOCdevkit/VOC2012/JPEGImages", "pets": "pets/oxford-iiit-pet/images"}[dataset]
    with Image.open(sorted((pristine / img_dir).glob("*.jpg"))[0]) as first:  # sample images share one size
        iw, ih = first.size
    tile_h = round(ih * 200 / max(iw, ih))
    # 3 columns of 200 px cells, rows as tall as their (aspect-kept) tiles, 2 px padding
    assert (w, h) == (3 * 202 + 2, rows * (tile_h + 2) + 2)
    a = np.array(Image.open(out))
    assert a[2:2 + tile_h, 204:404].std() > 10     # the colour mask column is not blank


def test_show_bad_pair_fails_cleanly(root, cli, capsys, tmp_path):
    path = wrong_size_mask(root)[1]
    out = tmp_path / "grid.png"
    assert cli(["data", "show", "--root", str(root), "--dataset", "voc", "--split", "val", "-n", "2",
                "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "data"]
