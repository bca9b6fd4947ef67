"""Where an artifact came from, taken at one moment: data version, git commit, the parameters used.

Checkpoints, ONNX metadata, engine sidecars and bundles all record this, so every engine on a
device traces back to the data, the config and the code that made it. Two moments matter and are
never mixed:

- **training** (:func:`training_record`, stored in the checkpoint when training starts): the
  parameters *as used*, i.e. ``params.yaml`` with the command-line overrides (``--epochs``,
  ``--data-root``, ``--pretrained``, ``--model``) applied once by :func:`apply_overrides`, their
  digest, the overrides themselves, the data version and the git commit of that moment;
- **export** (:func:`export_record`): the parameters and commit at export time (the export and
  engine sections decide the graph and the engine; training settings no longer can).

:func:`checkpoint_provenance` reads the training moment back from a checkpoint (older checkpoints
without a stored digest get it recomputed from their stored parameters, labelled so);
:func:`metadata_strings` writes both moments, labelled ``segstyle.training.*`` and
``segstyle.export.*``, as ONNX ``metadata_props``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml


def data_version(dvc_file: str | Path = "data.dvc", root: str | Path | None = None) -> str:
    """The md5 DVC recorded for the tracked data directory, or ``"untracked"``.

    With ``root`` (the data root training actually read) the DVC md5 is only claimed when ``root``
    *is* the directory ``data.dvc`` tracks; any other root is ``"untracked: <root>"``.
    """
    try:
        meta = yaml.safe_load(Path(dvc_file).read_text())
        out = meta["outs"][0]
        md5, tracked = str(out["md5"]), out.get("path", "data")
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "untracked" if root is None else f"untracked: {root}"
    if root is not None and Path(root).resolve() != (Path(dvc_file).resolve().parent / tracked).resolve():
        return f"untracked: {root}"
    return md5


def git_state(cwd: str | Path = ".", *, short: bool = False, paths: Sequence[str] = (),
              untracked: bool = False) -> tuple[str, list[str]]:
    """(``HEAD``'s sha, the files that differ from it), ``("unknown", [])`` outside git.

    ``paths`` limits the look to those files and folders; ``untracked`` counts new files too. The
    one git reader of the project: artifacts' provenance and the benchmarks' stamps use it.
    """
    try:
        sha = subprocess.run(["git", "rev-parse", *(["--short"] if short else []), "HEAD"], cwd=cwd,
                             capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", f"--untracked-files={'all' if untracked else 'no'}",
                                 "--", *paths], cwd=cwd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", []
    return sha, sorted(line[3:] for line in status.splitlines() if line.strip())


def git_commit(cwd: str | Path = ".") -> str:
    """``HEAD``'s sha, suffixed ``-dirty`` when tracked files differ; ``"unknown"`` outside git."""
    sha, dirty = git_state(cwd)
    return sha + ("-dirty" if dirty else "")


def params_digest(params_dict: Mapping[str, Any]) -> str:
    """Short sha256 of a resolved parameters dict (same as ``Params.digest()``)."""
    blob = json.dumps(params_dict, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def training_record(params, overrides: Mapping[str, Any] | None = None, *, dvc_file: str | Path = "data.dvc"
                    ) -> dict[str, Any]:
    """What a checkpoint stores about its training moment (call once, when training starts)."""
    return {
        "params": params.to_dict(),
        "params_digest": params.digest(),
        "overrides": dict(overrides or {}),
        "data_version": data_version(dvc_file, root=params.data.root),
        "git_commit": git_commit(),
    }


def checkpoint_provenance(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The training moment recorded in a checkpoint, values as stored (digest recomputed if absent)."""
    stored = ckpt.get("params_digest")
    digest = str(stored) if stored else params_digest(ckpt.get("params", {}))
    return {
        "data_version": str(ckpt.get("data_version", "untracked")),
        "git_commit": str(ckpt.get("git_commit", "unknown")),
        "params_digest": digest,
        "params_digest_source": "checkpoint" if stored else "recomputed from the checkpoint's params",
        "overrides": dict(ckpt.get("overrides", {})),
    }


def export_record(params_digest: str, profile: str) -> dict[str, Any]:
    """The export moment: digest of the parameters at export time, their profile and the commit doing the export."""
    return {"params_digest": params_digest, "git_commit": git_commit(), "profile": profile}


def metadata_strings(training: Mapping[str, Any] | None, export: Mapping[str, Any]) -> dict[str, str]:
    """ONNX ``metadata_props`` for both moments (all values strings, as ONNX requires).

    ``training`` is None for fresh seeded weights (nothing was trained). The unlabelled keys
    ``segstyle.data_version`` / ``git_commit`` / ``params_digest`` carry the training moment too,
    for readers that predate the labelled ones.
    """
    if training is None:
        t = {"data_version": "none (fresh seeded weights)", "git_commit": "none (fresh seeded weights)",
             "params_digest": "none (fresh seeded weights)", "overrides": {}}
    else:
        t = training
    out = {
        "segstyle.training.data_version": str(t["data_version"]),
        "segstyle.training.git_commit": str(t["git_commit"]),
        "segstyle.training.params_digest": str(t["params_digest"]),
        "segstyle.training.overrides": json.dumps(t.get("overrides", {}), sort_keys=True),
        "segstyle.export.params_digest": str(export["params_digest"]),
        "segstyle.export.git_commit": str(export["git_commit"]),
        "segstyle.export.profile": str(export.get("profile", "")),
    }
    out["segstyle.data_version"] = out["segstyle.training.data_version"]
    out["segstyle.git_commit"] = out["segstyle.training.git_commit"]
    out["segstyle.params_digest"] = out["segstyle.training.params_digest"]
    return out
