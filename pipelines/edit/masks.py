"""Where an edit applies: masks from a segmentation checkpoint's class names, or from a mask file.

Shared by ``segstyle inpaint`` and region-aware ``segstyle stylize``. Class names come from the
checkpoint itself (``classes``, written by ``segstyle train``), so a VOC network accepts ``person``
and a Pet network ``pet``; an unknown name is one error line listing the valid ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from segstyle.models.classes import label_map
from segstyle.core.errors import SegstyleError, UsageError


def checkpoint_classes(ckpt: dict, path: str | Path) -> list[str]:
    classes = ckpt.get("classes")
    if not classes:
        raise SegstyleError(f"{path}: checkpoint lists no class names (train it with `segstyle train`)")
    return list(classes)


def resolve_classes(names: str | Sequence[str], classes: Sequence[str]) -> list[int]:
    """Comma-separated (or listed) class names -> class indices; unknown names are a UsageError."""
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not wanted:
        raise UsageError(f"no class named; valid classes: {', '.join(classes)}")
    unknown = [n for n in wanted if n not in classes]
    if unknown:
        raise UsageError(f"unknown class '{unknown[0]}'; valid classes: {', '.join(classes)}")
    return sorted({list(classes).index(n) for n in wanted})


def default_foreground(classes: Sequence[str]) -> list[int]:
    """Every class but the background ones ('background', Pet trimap 'border' counts as foreground)."""
    return [i for i, c in enumerate(classes) if c != "background"]


@torch.inference_mode()
def predict_mask(model: torch.nn.Module, rgb: np.ndarray, class_ids: Sequence[int], *, base_size: int | None,
                 device: torch.device | str = "cpu") -> np.ndarray:
    """Boolean (H, W) mask of the pixels whose predicted class is one of ``class_ids``."""
    from segstyle.pipelines.predict import predict_logits

    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].to(device).float().div_(255)
    pred = label_map(predict_logits(model, x, base_size), 1)[0].cpu().numpy()
    return np.isin(pred, np.asarray(list(class_ids)))


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask file (any 8-bit PNG/JPEG; non-zero = selected) as boolean (H, W); size must match ``shape``."""
    path = Path(path)
    if not path.is_file():
        raise SegstyleError(f"{path}: no such mask file")
    m = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise SegstyleError(f"{path}: cannot decode mask (corrupt or not an image)")
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.shape[:2] != tuple(shape):
        raise SegstyleError(f"{path}: mask is {m.shape[1]}x{m.shape[0]}, image is {shape[1]}x{shape[0]}; "
                            "they must be the same size")
    return m > 0


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a boolean mask by ``pixels`` with an elliptical kernel (covers the object's outline:
    segmentation masks stop a pixel or two short of the edge, and a left-over rim would be smeared
    into the hole by inpainting)."""
    if pixels <= 0:
        return mask.copy()
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)
