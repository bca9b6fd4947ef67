"""Shared test fixtures: paths, the real-data fixtures (skipped where ../shared is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def realdata() -> Path:
    """``../shared/realdata`` (real VOC / Pet / style files); skip the test where it is absent."""
    if not (REALDATA / "SOURCES.md").is_file():
        pytest.skip("../shared/realdata not present")
    return REALDATA


@pytest.fixture
def cli(monkeypatch):
    """Run ``segstyle ARGS`` in-process; returns (exit_code, stdout, stderr) via capsys-friendly call."""
    from pipelines.cli import run_cli

    return run_cli
