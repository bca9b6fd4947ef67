"""Region-aware stylisation: stylise only the segmented foreground (or background), feathered.

``segstyle stylize PHOTO --checkpoint STYLE.pt --seg-checkpoint SEG.pt --region foreground
[--classes cat,dog] [--feather 7]``: the style network stylises the whole photo, the segmentation
network selects the region (``--classes``, default every non-background class of the checkpoint),
and the two are blended with a feathered mask so the seam is a soft transition instead of a
cut-out edge:

    alpha = GaussianBlur(mask, sigma=feather)      (1 inside the region, 0 outside)
    out   = alpha * stylised + (1 - alpha) * photo

Pixels far from the region (more than ~3 sigma) are the photo's own bytes.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from segstyle.pipelines.errors import SegstyleError


def feathered_alpha(mask: np.ndarray, feather: float) -> np.ndarray:
    """Float32 (H, W) alpha in 0..1: the boolean mask blurred by a Gaussian of sigma ``feather`` px."""
    a = mask.astype(np.float32)
    if feather <= 0:
        return a
    k = 2 * int(np.ceil(3 * feather)) + 1
    return np.clip(cv2.GaussianBlur(a, (k, k), feather, borderType=cv2.BORDER_REPLICATE), 0.0, 1.0)


def blend(photo: np.ndarray, stylised: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * stylised + (1 - alpha) * photo`` as uint8 (same shape as ``photo``)."""
    if photo.shape != stylised.shape or alpha.shape != photo.shape[:2]:
        raise SegstyleError(f"blend needs equal sizes, got {photo.shape}, {stylised.shape}, {alpha.shape}")
    a = alpha[..., None]
    out = a * stylised.astype(np.float32) + (1.0 - a) * photo.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def region_mask(seg_model, rgb: np.ndarray, class_ids: Sequence[int], region: str, *, base_size: int | None,
                device) -> np.ndarray:
    """Boolean mask of the region to stylise: the classes' pixels (foreground) or the rest (background)."""
    from segstyle.pipelines.edit.masks import predict_mask

    m = predict_mask(seg_model, rgb, class_ids, base_size=base_size, device=device)
    return m if region == "foreground" else ~m
