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

The math lives once, in torch (:func:`class_mask`, :func:`feather_alpha`, :func:`region_blend`):
the Python path (``segstyle stylize``) and the fused ONNX graph
(:mod:`segstyle.models.fused_region_style`, one engine on the device) both call it, so the
deployed graph cannot drift from what the CLI draws. The blur is a separable convolution with
OpenCV's Gaussian kernel and replicated borders (``cv2.GaussianBlur(..., BORDER_REPLICATE)``),
which exports as Pad + Conv, ops every TensorRT runs.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from segstyle.pipelines.errors import SegstyleError

REGIONS = ("foreground", "background")


def kernel_size(feather: float) -> int:
    """Odd Gaussian kernel width covering +-3 sigma (OpenCV's choice for 8-bit images is close)."""
    return 2 * int(math.ceil(3 * feather)) + 1


def gaussian_kernel(feather: float) -> torch.Tensor:
    """1-D float32 Gaussian of sigma ``feather`` px, normalised to sum 1 (= ``cv2.getGaussianKernel``)."""
    k = kernel_size(feather)
    x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(x * x) / (2.0 * feather * feather))
    return (g / g.sum()).float()


def class_mask(logits: torch.Tensor, class_ids: Sequence[int] | torch.Tensor, region: str = "foreground") -> torch.Tensor:
    """(N, 1, H, W) soft mask in 0..1: the softmax probability that a pixel is one of ``class_ids``
    (foreground), or one minus it (background).

    Why soft, not ``isin(argmax)``: a hard mask is a step function of the logits, so two runtimes
    whose logits differ by 1e-6 at a near-tie pixel flip it, and after the feather that flip moves
    the output by ~1/(2 pi sigma^2) of the style change -- 3e-3 at sigma 7, thirty times export
    parity's 1e-4 (measured on the trained demo networks). The probability is continuous, equals
    the hard mask wherever the network is confident, and makes a softer seam where it is not.
    Softmax stays FP32 in the FP16 graph (params ``export.fp16_keep_fp32``).
    """
    if region not in REGIONS:
        raise SegstyleError(f"region must be one of {', '.join(REGIONS)}, not '{region}'")
    ids = torch.as_tensor(class_ids, dtype=torch.long, device=logits.device)
    p = logits.softmax(1).index_select(1, ids).sum(1, keepdim=True)
    return p if region == "foreground" else 1.0 - p


def feather_alpha(mask: torch.Tensor, feather: float, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 1, H, W) 0/1 mask -> alpha in 0..1: separable Gaussian blur, replicated borders, clamped."""
    if feather <= 0:
        return mask
    g = (gaussian_kernel(feather) if kernel is None else kernel).to(mask.dtype).to(mask.device)
    r = (g.numel() - 1) // 2
    a = F.pad(mask, (r, r, r, r), mode="replicate")
    a = F.conv2d(a, g.view(1, 1, 1, -1))
    a = F.conv2d(a, g.view(1, 1, -1, 1))
    return a.clamp(0.0, 1.0)


def blend_images(photo: torch.Tensor, stylised: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``alpha * stylised + (1 - alpha) * photo`` (float, any matching N, C, H, W; alpha N, 1, H, W)."""
    return alpha * stylised + (1.0 - alpha) * photo


def region_blend(photo: torch.Tensor, stylised: torch.Tensor, logits: torch.Tensor,
                 class_ids: Sequence[int] | torch.Tensor, region: str, feather: float,
                 kernel: torch.Tensor | None = None) -> torch.Tensor:
    """The whole recipe on float tensors: logits -> region mask -> feathered alpha -> blend."""
    return blend_images(photo, stylised, feather_alpha(class_mask(logits, class_ids, region), feather, kernel))


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
