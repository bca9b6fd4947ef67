"""Where an artifact came from: data version (from ``data.dvc``), git commit, parameters digest.

Checkpoints, ONNX metadata, engine sidecars and bundles all record these three, so every engine on
a device can be traced back to the data, the config and the code that made it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml


def data_version(dvc_file: str | Path = "data.dvc") -> str:
    """The md5 DVC recorded for the tracked ``data/`` directory, or ``"untracked"``."""
    try:
        meta = yaml.safe_load(Path(dvc_file).read_text())
        return str(meta["outs"][0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "untracked"


def git_commit(cwd: str | Path = ".") -> str:
    """``HEAD``'s sha, suffixed ``-dirty`` when tracked files differ; ``"unknown"`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
