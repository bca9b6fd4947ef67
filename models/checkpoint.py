"""Checkpoint format shared by training, evaluation, prediction, stylisation and export.

A checkpoint is a plain dict saved with ``torch.save`` and loaded with ``weights_only=True`` (no
pickled code). It always holds ``model`` (registry name), ``model_kwargs``, ``state_dict``,
``params`` (resolved params.yaml), ``data_version`` and ``git_commit``; training adds ``epoch``,
``optimizer``, ``scheduler``, ``scaler`` and RNG state for ``--resume``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from segstyle.core.errors import SegstyleError, first_line
from segstyle.core.io import atomic_path

REQUIRED = ("model", "model_kwargs", "state_dict", "params", "data_version")


def save_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> Path:
    """Atomically write ``ckpt`` (must hold the REQUIRED keys)."""
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint lacks keys: {missing}")
    # Through a buffer, not the temporary path: torch.save names the zip's root folder after the file it
    # writes, so saving to a random temp name made two identical trainings differ in bytes (and hash).
    import io

    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getbuffer())
    return Path(path)


def load_checkpoint(path: str | Path, *, task: str | None = None, model: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely; check it is a segstyle checkpoint of the expected task/model.

    Raises :class:`SegstyleError` with a one-line reason for a missing, corrupt or mismatched file.
    """
    from segstyle.models import get_model_meta

    path = Path(path)
    if not path.is_file():
        raise SegstyleError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise SegstyleError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise SegstyleError(f"{path}: not a segstyle checkpoint (missing {', '.join(REQUIRED)})")
    try:
        meta = get_model_meta(ckpt["model"])
    except SegstyleError:
        raise SegstyleError(f"{path}: checkpoint names unknown model '{ckpt['model']}'") from None
    if task is not None and meta.task != task:
        raise SegstyleError(f"{path}: is a {meta.task} checkpoint ({ckpt['model']}), expected a {task} model")
    if model is not None and ckpt["model"] != model:
        raise SegstyleError(f"{path}: checkpoint is for model '{ckpt['model']}', not '{model}'")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Build the registered model named in ``ckpt`` and load its weights (eval mode, CPU)."""
    from segstyle.models import build_model

    net = build_model(ckpt["model"], **ckpt["model_kwargs"], pretrained=False)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = first_line(e)
        raise SegstyleError(f"checkpoint weights do not fit model '{ckpt['model']}': {first}") from None
    return net.eval()
