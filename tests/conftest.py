"""Shared test fixtures: paths, the real-data fixtures (skipped where ../shared is absent)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

# Under pytest-xdist (`-n 2`, pyproject's addopts) each worker owns one of the machine's cores: child
# processes (dvc, segstyle run, check.py) get one OpenMP thread each, or two workers' children spin
# four threads on two cores. Alone (`-n 0`), two.
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


# The files that take longest alone (pytest --durations, 2-core machine): scheduled first, so the two
# workers do not end with one of them running alone. Order only; a file missing here runs later.
HEAVY_FIRST = ("test_aoti_fused", "test_aoti", "test_export_onnx", "test_train", "test_style_quality_realdata",
               "test_bundle", "test_export_networks", "test_export_validate")
PREFECT = "prefect"  # the scheduling group of every file that uses the ``prefect_api`` fixture


@functools.cache  # asked once per test id by the scheduler
def _uses_prefect(path: Path) -> bool:
    return "prefect_api" in path.read_text(encoding="utf-8")


def _group(path: Path) -> str:
    return PREFECT if _uses_prefect(path) else path.stem


def pytest_collection_modifyitems(config, items):
    """Heavy files first, the Prefect files last (a stable sort; files stay contiguous).

    Prefect last: once the Prefect client's threads run in a process, DataLoader workers forked from
    it die at exit (test_augment's seeded-workers test failed after test_jobs in one process)."""
    def position(item) -> int:
        group = _group(item.path)
        if group in HEAVY_FIRST:
            return HEAVY_FIRST.index(group)
        return len(HEAVY_FIRST) + (1 if group == PREFECT else 0)

    items.sort(key=position)


class FileScheduling(LoadScopeScheduling):
    """Whole files to a worker (their module fixtures, e.g. one export per model, run once), and all
    the Prefect files to ONE worker, so the session starts one ``prefect_api`` server. Work units go
    out in collection order (``--no-loadscope-reorder``), i.e. as sorted above.

    (``--dist loadgroup`` with ``xdist_group`` marks would say the same, but xdist 3.8 tags the node id
    through ``item._nodeid``, which pytest 9.2 no longer reads: the marks are ignored.)"""

    def _split_scope(self, nodeid: str) -> str:
        return _group(REPO / nodeid.split("::", 1)[0])


def pytest_xdist_make_scheduler(config, log):
    return FileScheduling(config, log)


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
