"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import os
from pathlib import Path


def env_prefix() -> str:
    """OMP_NUM_THREADS matters a lot on a shared 2-core machine: record it with the command."""
    n = os.environ.get("OMP_NUM_THREADS")
    return f"OMP_NUM_THREADS={n} " if n else ""


def git_commit() -> tuple[str, list[str]]:
    """(``HEAD`` of the code being measured, its uncommitted files under the four source folders and params.yaml).

    The code is where the installed ``segstyle`` package lives (an editable install runs that
    checkout, not necessarily this script's), so that is the tree whose commit the result names.
    """
    import segstyle.models
    from segstyle.core.provenance import git_state

    code = Path(segstyle.models.__file__).resolve().parents[1]
    return git_state(code, short=True, paths=("core", "models", "export", "pipelines", "params.yaml"), untracked=True)
