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
    from segstyle.pipelines.cli import run_cli

    return run_cli


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """ONE Prefect test server for the whole session (it takes 20-30 s to start on 2 cores).

    Yields its API URL; flows run in-process against it and subprocesses (``segstyle serve``) can
    be pointed at it with ``PREFECT_API_URL``.
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings(updates={PREFECT_HOME: os.environ["PREFECT_HOME"]}):
        with prefect_test_harness(server_startup_timeout=120):
            yield PREFECT_API_URL.value()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread per test: the tensors are tiny, and on the 2-core machines two OpenMP
    threads spin against pytest and subprocesses (measured 5-10x slower under load)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
