"""Helpers shared by the segmentation tests: a tiny copy of the embedded sample data, small params."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
_CACHE: dict[str, Path] = {}


def tiny_data(tmp_path_factory, n_train: int = 8, n_val: int = 4) -> Path:
    """The embedded sample data (real VOC / Pets layouts) with splits cut to a few images; once per session."""
    key = f"{n_train}-{n_val}"
    if key not in _CACHE:
        from segstyle.pipelines.data.sample import generate

        root = tmp_path_factory.mktemp("segdata") / "data"
        generate(root, progress=False)
        voc = root / "voc/VOCdevkit/VOC2012/ImageSets/Segmentation"
        pets = root / "pets/oxford-iiit-pet/annotations"
        for split_file, n in ((voc / "train.txt", n_train), (voc / "val.txt", n_val),
                              (pets / "trainval.txt", n_train), (pets / "test.txt", n_val)):
            lines = split_file.read_text().splitlines()[:n]
            split_file.write_text("\n".join(lines) + "\n")
        _CACHE[key] = root
    return _CACHE[key]


def write_params(dest: Path, *, augment: dict | None = None, train: dict | None = None,
                 splits: dict | None = None, evaluate: dict | None = None) -> Path:
    """params.yaml with the demo profile's ``augment``/``train`` blocks updated (tiny, fast settings)."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["profile"] = "demo"
    p["augment"]["demo"].update(augment or {})
    p["train"]["demo"].update(train or {})
    p["evaluate"].update(evaluate or {})
    for k, v in (splits or {}).items():
        p["data"]["splits"][k] = v
    dest.write_text(yaml.safe_dump(p))
    return dest


def bundle_params(tmp_path_factory) -> Path:
    """A params.yaml whose data root is the tiny sample data (for bundle and validate tests)."""
    root = tiny_data(tmp_path_factory)
    p = write_params(tmp_path_factory.mktemp("params") / "params.yaml")
    raw = yaml.safe_load(p.read_text())
    raw["data"]["root"] = str(root)
    p.write_text(yaml.safe_dump(raw))
    return p


def run_check(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    """The bundle's own ``check.py``, run the way a device user runs it (its folder as cwd)."""
    return subprocess.run([sys.executable, str(bundle / "check.py"), *args], capture_output=True, text=True,
                          cwd=bundle)


def rehash(bundle: Path, name: str) -> None:
    """Update manifest.json for a modified file: a tamperer who knows the format."""
    from segstyle.core.hashing import sha256_file

    mf = json.loads((bundle / "manifest.json").read_text())
    mf["files"][name] = sha256_file(bundle / name)
    (bundle / "manifest.json").write_text(json.dumps(mf))
