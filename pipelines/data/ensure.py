"""Make the pipeline's ``data/`` present before any stage runs: pull it, or write the embedded sample.

Why here (the data layer) and not in ``segstyle run``: both the command (:mod:`segstyle.pipelines.run`)
and the flow (:mod:`segstyle.pipelines.flow`, which a scheduled or API-triggered run starts without
the command) need it, and the command imports the flow; keeping it in either made them import
each other.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from segstyle.core.errors import SegstyleError


def ensure_data(root: Path, data_root: str, echo=click.echo) -> str:
    """Make ``data/`` present: pull it from the DVC remote if it has it, else write the sample."""
    from segstyle.pipelines.stages import default_remote, dvc_command, stage_env

    data = root / data_root
    if data.is_dir() and any(data.iterdir()):
        return "present"
    dvc_file = root / f"{data_root}.dvc"
    if dvc_file.is_file() and default_remote(root):
        echo(f"{data_root}/ is absent: dvc pull {dvc_file.name}")
        proc = subprocess.run([*dvc_command(), "pull", dvc_file.name], cwd=root, env=stage_env(),
                              capture_output=True, text=True)
        if proc.returncode == 0 and data.is_dir() and any(data.iterdir()):
            return "pulled"
        echo(f"{data_root}/ is not on the remote yet: writing the embedded sample data")
    else:
        echo(f"{data_root}/ is absent: writing the embedded sample data")
    exe = Path(sys.executable).parent / "segstyle"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "segstyle.pipelines.cli"]
    proc = subprocess.run([*cmd, "data", "sample", "--root", data_root], cwd=root, env=stage_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise SegstyleError(f"could not write the sample data: {lines[-1] if lines else proc.returncode}")
    if dvc_file.is_file():
        _cache_sample(root, dvc_file, echo)
    return "sampled"


def _cache_sample(root: Path, dvc_file: Path, echo) -> None:
    """Put the freshly written sample into DVC's cache when it is exactly what ``data.dvc`` records,
    so ``dvc push`` sends it to the remote and the next clone pulls instead of regenerating."""
    from segstyle.pipelines.stages import DVC_LOCK, _open_repo, dvc_command, stage_env

    with DVC_LOCK:
        repo = _open_repo(root)
        try:
            st = repo.status(targets=[str(dvc_file.resolve())])
        finally:
            repo.close()
    changes = [v for entries in st.values() for e in entries for v in (e.get("changed outs") or {}).values()]
    if changes and all(c == "not in cache" for c in changes):
        subprocess.run([*dvc_command(), "commit", "--force", dvc_file.name], cwd=root, env=stage_env(),
                       capture_output=True, text=True)
    elif changes:
        echo(f"warning: the sample data differs from {dvc_file.name} ({', '.join(sorted(set(changes)))}); "
             f"`dvc add {dvc_file.stem}` records the new version")
