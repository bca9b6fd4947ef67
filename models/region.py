"""The region blend in torch: the soft class mask, its Gaussian feather and the blend.

One copy of the math, used by ``segstyle stylize --seg-checkpoint`` (through
:mod:`segstyle.pipelines.edit.region`) and by the fused region-style graph
(:mod:`segstyle.models.fused_region_style`), so the deployed graph cannot drift from what the CLI
draws. The blur is a separable convolution with OpenCV's Gaussian kernel and replicated borders
(``cv2.GaussianBlur(..., BORDER_REPLICATE)``), which exports as Pad + Conv, ops every TensorRT runs.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from segstyle.core.errors import SegstyleError

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

    A one-logit (foreground) network's probabilities are ``(1 - sigmoid, sigmoid)`` for its labels
    (background, foreground): the mask of its foreground is its soft alpha matte. A softmax over its
    one channel is 1 everywhere and would stylise the whole photo.
    """
    if region not in REGIONS:
        raise SegstyleError(f"region must be one of {', '.join(REGIONS)}, not '{region}'")
    ids = torch.as_tensor(class_ids, dtype=torch.long, device=logits.device)
    if logits.shape[1] == 1:
        fg = torch.sigmoid(logits)
        probs = torch.cat([1.0 - fg, fg], 1)
    else:
        probs = logits.softmax(1)
    p = probs.index_select(1, ids).sum(1, keepdim=True)
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
