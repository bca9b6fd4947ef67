"""The embedded sample: exact real formats, byte-identical to the committed data.dvc, atomic writes."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from segstyle.pipelines.data.layout import Layout
from segstyle.pipelines.data.palette import voc_colormap
from segstyle.pipelines.data.sample import CAT_BREEDS, DOG_BREEDS, generate, pet_breeds

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sample") / "data"
    return root, generate(root, progress=False)


def dvc_dir_hash(path: Path) -> tuple[str, int, int]:
    """The ``.dir`` md5, size and file count DVC records for ``path`` (computed by dvc-data itself)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as odb_dir:
        _, meta, obj = build(HashFileDB(fs, odb_dir), str(path), fs, "md5", dry_run=True)
    return obj.hash_info.value, meta.size, meta.nfiles


def test_byte_identical_to_committed_data_dvc(sample):
    root, _ = sample
    out = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]
    assert out["path"] == "data"
    md5, size, nfiles = dvc_dir_hash(root)
    assert (md5, size, nfiles) == (out["md5"], out["size"], out["nfiles"]), (
        "segstyle data sample no longer reproduces data.dvc: if the change is intended, "
        "rerun `segstyle data sample --root data && dvc add data` and commit data.dvc")


def test_budget(sample):
    root, info = sample
    assert info["bytes"] < 6_000_000
    assert info["cpu_seconds"] < 15   # CPU time: wall time depends on who else shares the 2 cores


def test_voc_format(sample):
    root, info = sample
    lay = Layout.of("voc", root)
    train, val, trainval = lay.ids("train"), lay.ids("val"), lay.ids("trainval")
    assert (len(train), len(val)) == (96, 32)
    assert not set(train) & set(val) and trainval == sorted(train + val) and train == sorted(train)
    assert all(re.fullmatch(r"\d{4}_\d{6}", i) for i in trainval)
    want_palette = voc_colormap().reshape(-1).tolist()
    seen = {"train": set(), "val": set()}
    band = total = 0
    for split, ids in (("train", train), ("val", val)):
        for i in ids:
            with Image.open(lay.image_path(i)) as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (160, 120))
            with Image.open(lay.mask_path(i)) as m:
                assert (m.format, m.mode, m.size) == ("PNG", "P", (160, 120))
                assert m.getpalette() == want_palette
                a = np.array(m)
            vals = set(np.unique(a).tolist())
            assert vals <= set(range(21)) | {255} and 0 in vals and 255 in vals
            objects = vals - {0, 255}
            assert len(objects) >= 1
            seen[split] |= objects
            band += int((a == 255).sum())
            total += a.size
    assert seen["train"] == seen["val"] == set(range(1, 21))   # all 20 classes in both splits
    assert 0.03 < band / total < 0.2                             # a thin void outline, as in real VOC


def test_pets_format(sample):
    root, _ = sample
    lay = Layout.of("pets", root)
    by_name = {b.name: b for b in pet_breeds()}
    assert len(by_name) == 37 and by_name["Abyssinian"].class_id == 1 and by_name["yorkshire_terrier"].class_id == 37
    assert by_name["Sphynx"].breed_id == 12 and by_name["american_bulldog"].breed_id == 1
    lines = {s: lay.split_file(s).read_text().splitlines() for s in ("trainval", "test")}
    assert (len(lines["trainval"]), len(lines["test"])) == (74, 37)
    species_seen = {"trainval": set(), "test": set()}
    for split, rows in lines.items():
        for line in rows:
            m = re.fullmatch(r"([A-Za-z_]+)_(\d+) (\d+) ([12]) (\d+)", line)
            assert m, line
            breed = by_name[m[1]]
            assert (int(m[3]), int(m[4]), int(m[5])) == (breed.class_id, breed.species, breed.breed_id)
            assert (breed.species == 1) == (m[1] in CAT_BREEDS) == m[1][0].isupper()
            assert m[1] in CAT_BREEDS + DOG_BREEDS
            species_seen[split].add(breed.species)
            name = f"{m[1]}_{m[2]}"
            with Image.open(lay.image_path(name)) as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (160, 128))
            with Image.open(lay.mask_path(name)) as t:
                assert (t.format, t.mode, t.size) == ("PNG", "L", (160, 128))
                assert set(np.unique(np.array(t)).tolist()) == {1, 2, 3}
    assert species_seen == {"trainval": {1, 2}, "test": {1, 2}}
    breeds_in = {s: {line.rsplit("_", 1)[0] for line in rows} for s, rows in lines.items()}
    assert breeds_in["trainval"] == breeds_in["test"] == set(by_name)   # all 37 breeds in both splits


def test_style_images_and_params(sample):
    root, _ = sample
    styles = sorted((root / "style" / "styles").glob("*.png"))
    assert len(styles) >= 3 and len(list((root / "style" / "content").glob("*.jpg"))) >= 4
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for profile in ("demo", "full"):
        rel = Path(params["style"][profile]["style_image"])
        assert rel.parts[0] == "data" and (root / Path(*rel.parts[1:])).is_file()


def test_refuses_to_replace_other_data(tmp_path, cli, capsys):
    root = tmp_path / "data"
    (root / "voc").mkdir(parents=True)
    (root / "voc" / "mine.txt").write_text("real data")
    assert cli(["data", "sample", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "--force" in err and str(root) in err and "Traceback" not in err
    assert sorted(p.name for p in root.rglob("*")) == ["mine.txt", "voc"]
    assert cli(["data", "sample", "--root", str(root), "--force"]) == 0
    assert re.search(r"VOC 96 train / 32 val, Pets 74 trainval / 37 test, .* MB in [\d.]+ s", capsys.readouterr().out)
    assert not (root / "voc" / "mine.txt").exists() and (root / "README.md").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]   # no temporary directory left behind


def test_interrupted_sample_leaves_previous_tree(tmp_path, monkeypatch):
    import segstyle.pipelines.data.sample as sample_mod

    root = tmp_path / "data"
    (root / "voc").mkdir(parents=True)   # an earlier sample, which generate() may replace
    (root / "voc" / "old.txt").write_text("old")
    (root / sample_mod.MARKER).write_text(sample_mod.README_TEXT)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sample_mod, "write_pets", boom)   # dies after VOC was written
    with pytest.raises(KeyboardInterrupt):
        generate(root, progress=False)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_bytes_do_not_depend_on_cpu_simd_paths(tmp_path):
    """Another CPU (no AVX-512, OpenCV's plain C paths) must still reproduce data.dvc."""
    import os
    import subprocess
    import sys

    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__

    env = dict(os.environ)
    avx512 = [k for k, on in __cpu_features__.items() if on and k.startswith("AVX512")]
    if avx512:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(avx512)
    code = ("import sys, cv2; cv2.setUseOptimized(False); "
            "from pipelines.data.sample import generate; generate(sys.argv[1], progress=False)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], check=True, env=env, cwd=REPO,
                   timeout=120)
    out = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]
    assert dvc_dir_hash(tmp_path / "data")[0] == out["md5"]
