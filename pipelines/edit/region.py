"""Region-aware stylisation: stylise only the segmented foreground (or background), feathered.

``segstyle stylize PHOTO --checkpoint STYLE.pt --seg-checkpoint SEG.pt --region foreground
[--classes cat,dog] [--feather 7]``: the style network stylises the whole photo, the segmentation
network selects the region (``--classes``, default every non-background class of the checkpoint),
and the two are blended with a feathered mask so the seam is a soft transition instead of a
cut-out edge:

    mask  = P(class in classes | pixel)            (softmax; background: 1 - it)
    alpha = GaussianBlur(mask, sigma=feather)      (1 inside the region, 0 outside)
    out   = alpha * stylised + (1 - alpha) * photo

Pixels far from the region (more than ~3 sigma) are the photo's own bytes.

The math lives once, in torch, in :mod:`segstyle.models.region` (``class_mask``, ``feather_alpha``,
``region_blend``): the Python path here and the fused ONNX graph
(:mod:`segstyle.models.fused_region_style`, one engine on the device) both call it, so the
deployed graph cannot drift from what the CLI draws. This module holds the numpy views the CLI
works in (uint8 photos, boolean masks) and the segmentation of a photo into a region mask.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from segstyle.core.errors import SegstyleError
from segstyle.models.region import blend_images, class_mask, feather_alpha


# ---- numpy views for the CLI (uint8 photos, boolean masks) -----------------------------------------

def feathered_alpha(mask: np.ndarray, feather: float) -> np.ndarray:
    """Float32 (H, W) alpha in 0..1: the (boolean or soft 0..1) mask blurred by a Gaussian of sigma ``feather`` px."""
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    with torch.no_grad():
        return feather_alpha(m, feather)[0, 0].numpy()


def blend(photo: np.ndarray, stylised: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * stylised + (1 - alpha) * photo`` as uint8 (same shape as ``photo``)."""
    if photo.shape != stylised.shape or alpha.shape != photo.shape[:2]:
        raise SegstyleError(f"blend needs equal sizes, got {photo.shape}, {stylised.shape}, {alpha.shape}")
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    out = blend_images(t(photo), t(stylised), t(alpha)[..., None]).numpy()
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def region_mask(seg_model, rgb: np.ndarray, class_ids: Sequence[int], region: str, *, base_size: int | None,
                device) -> np.ndarray:
    """Float32 (H, W) soft mask in 0..1 of the region to stylise (:func:`class_mask`): the classes'
    probability (foreground) or one minus it (background)."""
    from segstyle.pipelines.predict import predict_logits

    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].to(device).float().div_(255)
    with torch.inference_mode():
        m = class_mask(predict_logits(seg_model, x, base_size).float(), class_ids, region)
    return m[0, 0].cpu().numpy().astype(np.float32)
