"""The tiny throwaway DVC + git repository of the orchestration tests: ``benchmarks/tiny_repo.py``.

It lives beside the benchmarks (``benchmarks/pipeline_jobs.py`` times a no-change run on it, and
benchmarks import nothing from ``tests/``); the test files import it from here.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from tiny_repo import BIN, DVC_YAML, ORDER, REPO, STEP, make_repo, runs, set_param  # noqa: E402,F401

__all__ = ["BIN", "DVC_YAML", "ORDER", "REPO", "STEP", "make_repo", "runs", "set_param"]
