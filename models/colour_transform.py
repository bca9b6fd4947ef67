"""Whitening-colouring transform of RGB pixels: every output image takes the style's colour statistics.

A style network trained in a few CPU minutes learns strokes but moves the palette only part of the
way: one network must serve every photo, and a pointwise colour change that suits a dark photo does
not suit a bright one. The classic example-based colour transfer closes that gap per image, with no
learning: whiten the image's pixel colours with their own covariance, colour them with the style's
(the whitening-colouring transform of Li et al., "Universal Style Transfer via Feature Transforms",
NeurIPS 2017, applied to RGB instead of VGG features; a linear colour transfer in the sense of
Pitie and Kokaram, CVMP 2007)::

    out = cov_s^(1/2) @ cov_x^(-1/2) @ (x - mean_x) + mean_s

so the output's per-image colour mean and covariance are the style's, whatever the photo.
:class:`~segstyle.models.transformer_net.TransformerNet` applies it as its last step when built with
``colour_match=True`` (the demo profile), in training too, so the loss sees what inference returns.

Why these choices:

- The per-image inverse square root is computed by coupled Newton-Schulz iterations (Higham, "Functions
  of Matrices", 2008, eq. 6.35): matrix products only, so the exported ONNX graph holds MatMul /
  ReduceMean / elementwise ops that every runtime and TensorRT run, with dynamic H, W; an
  eigendecomposition has no ONNX operator. :data:`ITERATIONS` covers condition numbers up to ~1e4
  (tested against ``torch.linalg.eigh``); the covariance of 0..1 pixels plus ``EPS`` stays under ~750.
- The statistics are float32 whatever the input dtype (like ``InstanceNorm32``): a mean over H*W
  pixels is a long sum. The covariance is a ReduceMean of channel products, not a MatMul over H*W,
  so the FP16 graph keeps that sum in FP32 through the recipe's ``ReduceMean`` entry.
- ``EPS`` (1e-3 in 0..1 units, i.e. a colour spread of ~3 % of the range) is added to the image's
  covariance: a nearly flat image is amplified at most ~10x instead of turning its noise into colour.
- The style's statistics are buffers (``mean``, ``cov_sqrt``) set once from the style image by
  :meth:`ColourTransform.set_target` and saved in the checkpoint's state dict.
"""

from __future__ import annotations

import torch
import torch.nn as nn

ITERATIONS = 15
EPS = 1e-3


def inv_sqrt_newton_schulz(a: torch.Tensor, iterations: int = ITERATIONS) -> torch.Tensor:
    """``a^(-1/2)`` of a batch of symmetric positive definite (B, n, n) matrices, by matrix products only.

    ``a`` is scaled by its Frobenius norm (eigenvalues then lie in (0, 1], where the iteration
    converges); the result is scaled back by ``norm^(-1/2)``. No reshape and no product with an
    unbatched matrix touches the batch dimension, so an exported graph keeps it dynamic.
    """
    # Only batched @ batched products: a product of an unbatched (n, n) with a batched matrix makes
    # torch's export guard the batch to the example's 1, and the ONNX graph then had batch 1 baked
    # into every Resize of the fused region-style graph. The first step starts from z = I.
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    norm = a.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-12)
    y = a / norm
    t = 0.5 * (3.0 * eye - y)
    y, z = y @ t, t
    for _ in range(iterations - 1):
        t = 0.5 * (3.0 * eye - z @ y)
        y, z = y @ t, t @ z
    return z / norm.sqrt()


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, 1, 1) mean and (B, 3, 3) covariance of float32 (B, 3, H, W) pixels."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    d = x - mean
    return mean, (d.unsqueeze(2) * d.unsqueeze(1)).mean(dim=(3, 4))


def colour_stats(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean (B, 3) and covariance (B, 3, 3) of the pixel colours of (B, 3, H, W), in float32."""
    mean, cov = _stats(rgb.float())
    return mean[:, :, 0, 0], cov


class ColourTransform(nn.Module):
    """(B, 3, H, W) RGB in, the same pixels with the style's colour mean and covariance out (same dtype)."""

    def __init__(self, eps: float = EPS, iterations: int = ITERATIONS):
        super().__init__()
        self.eps, self.iterations = float(eps), int(iterations)
        # A neutral target until set_target: mid grey, uncorrelated channels with a uniform 0..1 spread.
        self.register_buffer("mean", torch.full((3,), 0.5))
        self.register_buffer("cov_sqrt", torch.eye(3) / 12 ** 0.5)

    @torch.no_grad()
    def set_target(self, style: torch.Tensor) -> None:
        """Take the colour statistics of a (3, H, W) or (1, 3, H, W) 0..1 RGB style image."""
        style = style if style.dim() == 4 else style.unsqueeze(0)
        mean, cov = colour_stats(style)
        w, v = torch.linalg.eigh(cov[0].double())
        self.mean.copy_(mean[0])
        self.cov_sqrt.copy_(((v * w.clamp_min(0).sqrt()) @ v.T).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        mean, cov = _stats(xf)
        cov = cov + self.eps * torch.eye(3, device=x.device)
        inv = inv_sqrt_newton_schulz(cov, self.iterations)
        # t = cov_sqrt @ inv per image, by broadcasting (see inv_sqrt_newton_schulz on unbatched products)
        t = (self.cov_sqrt[None, :, :, None] * inv[:, None, :, :]).sum(dim=2)        # (B, 3, 3)
        # y_i = sum_j t_ij (x_j - mean_j) + style_mean_i, by broadcasting (no reshape of B, H or W)
        y = (t[:, :, :, None, None] * (xf - mean)[:, None]).sum(dim=2) + self.mean[None, :, None, None]
        return y.to(x.dtype)
