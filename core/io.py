"""Atomic file output and image input with one-line errors.

Every artifact segstyle writes goes through :func:`atomic_path` (or the helpers built on it): the
data is written next to the destination under a temporary name and renamed into place, so a crash
or Ctrl-C never leaves a half-written file that a later stage (or DVC) would trust.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from segstyle.core.errors import SegstyleError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it over ``dest`` only if the block succeeds.

    The temporary name keeps the destination's suffix so libraries that infer the format from the
    extension (PIL, cv2, torch) still work.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix or dest.suffix or ".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give artifacts the usual umask-based mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``dest`` and swap it into place on success.

    An existing ``dest`` is replaced only after the new tree is complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 directories
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old."))
            os.replace(dest, old / "x")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(dest: str | os.PathLike, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for DVC metrics)."""
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_dvc_metrics(dest: str | os.PathLike, figures: Mapping[str, Any]) -> Path:
    """Write a DVC metrics file (a path under a ``metrics:`` key of ``dvc.yaml``): figures only.

    Why a writer of its own: ``dvc metrics show`` prints ONE table whose columns are the union of every
    metrics file's keys, and ``dvc metrics diff`` subtracts values between commits. A string, path, list
    or histogram in any metrics file becomes columns that say nothing (and cannot be diffed); that is
    how the table reached 141 columns. So this writer refuses them: every leaf must be a finite number,
    nested string-keyed dicts are allowed (``a.b`` columns). Booleans are written as 0/1 (a verdict is
    a figure, and ``dvc metrics diff`` can subtract 0/1 but not true/false); NaN, infinity and None are
    refused (strict JSON, and an undefined figure must be left out by the caller, not written as a
    hole). Everything else a stage reports (provenance, paths, per-row lists) goes to a plain JSON
    record beside the metrics file (``outs: ... cache: false`` in ``dvc.yaml``). Checked before anything
    is written; the write is atomic like every artifact's. Raises :class:`SegstyleError` naming the
    file and the key.
    """
    if not isinstance(figures, Mapping):
        raise SegstyleError(f"{dest}: DVC metrics must be a mapping of figures, not a {type(figures).__name__}")
    clean = _figures(figures, dest, "")
    return write_json(dest, clean)


def _figures(node: Any, dest: Any, where: str) -> Any:
    if isinstance(node, Mapping):
        out = {}
        for k, v in node.items():
            if not isinstance(k, str):
                raise SegstyleError(f"{dest}: metrics key {where + repr(k)} is not a string")
            out[k] = _figures(v, dest, f"{where}{k}.")
        return out
    key = where[:-1] or "(top level)"
    if isinstance(node, (bool, np.bool_)):
        return int(node)
    if isinstance(node, (int, float, np.integer, np.floating)):
        value = node.item() if isinstance(node, np.generic) else node
        if isinstance(value, float) and not math.isfinite(value):
            raise SegstyleError(f"{dest}: metrics key '{key}' is {value}; DVC metrics hold finite numbers only "
                                f"(leave an undefined figure out)")
        return value
    shown = repr(node) if len(repr(node)) <= 40 else repr(node)[:37] + "..."
    raise SegstyleError(f"{dest}: metrics key '{key}' is a {type(node).__name__} ({shown}); DVC metrics files "
                        f"hold numbers only (write it to the plain record beside it)")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_image(path: str | os.PathLike, *, strict: bool = False) -> np.ndarray:
    """Decode an image file to an RGB ``uint8`` array of shape (H, W, 3).

    OpenCV is used for speed; grey and alpha images are converted to RGB, unless ``strict`` is set:
    then they raise (stylisation refuses to guess how to composite alpha or colour grey). Raises
    :class:`SegstyleError` naming the file when it is missing or cannot be decoded (truncated JPEG,
    not an image).
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise SegstyleError(f"{path}: no such image file")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise SegstyleError(f"{path}: cannot decode image (corrupt, truncated or not an image)")
    if img.dtype != np.uint8:
        raise SegstyleError(f"{path}: unsupported bit depth {img.dtype}; expected 8-bit")
    if strict and (img.ndim == 2 or img.shape[2] != 3):
        kind = "grayscale" if img.ndim == 2 or img.shape[2] == 1 else f"{img.shape[2]}-channel (alpha)"
        raise SegstyleError(f"{path}: {kind} image; expected 3-channel RGB, convert it first "
                            f"(e.g. PIL: Image.open(f).convert('RGB').save(out))")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(dest: str | os.PathLike, rgb: np.ndarray, *, quality: int = 95) -> Path:
    """Atomically write an RGB ``uint8`` (H, W, 3) array; the format follows the extension."""
    import cv2

    dest = Path(dest)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if dest.suffix.lower() in {".jpg", ".jpeg"} else []
    arr = np.ascontiguousarray(rgb)
    bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
    ok, buf = cv2.imencode(dest.suffix or ".png", bgr, params)
    if not ok:
        raise SegstyleError(f"{dest}: cannot encode image")
    with atomic_path(dest) as tmp:
        buf.tofile(tmp)
    return dest
