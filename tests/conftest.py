"""Shared test fixtures: paths, the real-data fixtures (skipped where ../shared is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Under pytest-xdist (`-n 2`, pyproject's addopts) each worker owns one of the machine's cores: child
# processes (dvc, segstyle run, check.py) get one OpenMP thread each, or two workers' children spin
# four threads on two cores. Alone (`-n 0`), two.
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


# The files that take longest alone (pytest --durations, 2-core machine): scheduled first, so the two
# workers do not end with one of them running alone. Order only; a file missing here runs later.
HEAVY_FIRST = ("test_train", "test_style_quality_realdata", "test_export_onnx", "test_bundle",
               "test_export_networks", "test_export_validate")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    """One xdist group per test file (its module fixtures, e.g. one export per model, run once), and one
    group for every file that uses the Prefect server, so one worker starts the one ``prefect_api``.

    ``--dist loadgroup`` hands whole groups to workers; heavy files first, the Prefect group last (stable
    sort): once the Prefect client's threads run in a process, DataLoader workers forked from it die at
    exit (test_augment's seeded-workers test failed after test_jobs in one process)."""
    prefect_files = {item.path for item in items if "prefect_api" in getattr(item, "fixturenames", ())}
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}

    def group(item) -> str:
        return "prefect" if item.path in prefect_files else item.path.stem

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: rank.get(group(item), len(rank) + 2 * (group(item) == "prefect")))


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
