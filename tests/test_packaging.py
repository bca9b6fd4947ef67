"""The built wheel installs one import namespace (``segstyle.*``) and nothing else at the top level.

Why: ``pipelines``, ``models`` and ``export`` are among the most common folder names in ML projects;
installed as top-level packages they shadow (or are shadowed by) a user's own code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("core", "models", "export", "pipelines")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy of the tracked + untracked-not-ignored files: setuptools writes build/ and
    # *.egg-info next to the sources, which must not land in the checkout.
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("segstyle-*.whl")
    return zipfile.ZipFile(whl)


def test_wheel_has_one_top_level_package(wheel):
    tops = {n.split("/", 1)[0] for n in wheel.namelist() if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert tops == {"segstyle"}, tops
    # An implicit namespace package: no segstyle/__init__.py that a second distribution would clash with.
    assert "segstyle/__init__.py" not in wheel.namelist()


def test_wheel_holds_every_source_module_and_package_data(wheel):
    """Every .py file and data file under the four source folders reaches the wheel under segstyle/
    (an explicit package list that forgets a new sub-package fails here)."""
    names = set(wheel.namelist())
    missing = []
    for top in SOURCE_DIRS:
        for f in (REPO / top).rglob("*"):
            if f.is_file() and f.suffix in (".py", ".json") and "__pycache__" not in f.parts:
                rel = f.relative_to(REPO).as_posix()
                if f"segstyle/{rel}" not in names:
                    missing.append(rel)
    assert not missing, missing


def test_console_script_points_into_the_namespace(wheel):
    (ep,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(ep).decode()
    assert "segstyle = segstyle.pipelines.cli:main" in text


def test_old_top_level_names_do_not_import_outside_the_repo(tmp_path):
    code = ("import importlib, sys\n"
            "import segstyle.models, segstyle.pipelines, segstyle.export\n"
            "for name in ('models', 'pipelines', 'export'):\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ModuleNotFoundError:\n"
            "        continue\n"
            "    sys.exit(f'{name} is importable')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_wheel_carries_the_built_in_parameters(wheel):
    """Outside a checkout the commands read params from the package: the wheel holds params.yaml's bytes
    (pipelines/params_default.yaml is a link to it, so the two cannot drift)."""
    assert (REPO / "pipelines" / "params_default.yaml").is_symlink()
    data = wheel.read("segstyle/pipelines/params_default.yaml")
    assert data == (REPO / "params.yaml").read_bytes()
