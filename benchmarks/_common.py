"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import os


def env_prefix() -> str:
    """OMP_NUM_THREADS matters a lot on a shared 2-core machine: record it with the command."""
    n = os.environ.get("OMP_NUM_THREADS")
    return f"OMP_NUM_THREADS={n} " if n else ""
