"""Pooling written so an exported graph keeps every input size: exact adaptive average pooling and
max-unpooling without an indices tensor.

Why not the PyTorch ops. ``nn.AdaptiveAvgPool2d(b)`` exports to ONNX only when the exporter can see
that H and W divide by ``b`` (then it becomes a fixed-kernel AveragePool, silently wrong at any other
size) or ``b == 1`` (GlobalAveragePool). ``MaxPool2d(return_indices=True)`` exports a MaxPool with
a second ``Indices`` output, which TensorRT's ONNX parser rejects, and ``MaxUnpool2d`` exports as
ScatterND over those indices (``segstyle export lint`` names both). The functions here compute the
same numbers from ops every runtime we target has: matrix products for the pooling bins, compares
and a depth-to-space interleave for the unpool, all with shapes read from the input at run time.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def pool_matrix(size, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, size) averaging weights of adaptive pooling along one axis (PyTorch's bin rule).

    Bin ``i`` covers ``[floor(i*size/bins), ceil((i+1)*size/bins))``; bins overlap when ``bins``
    does not divide ``size``, exactly as ``F.adaptive_avg_pool2d``. ``size`` may be symbolic
    (``x.shape[-1]`` under ``torch.export``): only integer tensor arithmetic is used.
    """
    i = torch.arange(bins, device=like.device)
    # truncating division (all operands are >= 0, so it is the floor): the exporter lowers ``//`` with
    # a sign fix-up, an Equal over BOOL inputs, a type TensorRT's ONNX matrices do not list
    start = torch.div(i * size, bins, rounding_mode="trunc")
    end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode="trunc")
    pos = torch.arange(size, device=like.device)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def adaptive_avg_pool2d(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, bins)`` for an NCHW ``x`` of any H, W, as ``P_h @ x @ P_w^T``.

    The pooling is separable (each output cell is a row-interval x column-interval mean), so two
    small matrix products give it; the sums run in another order than PyTorch's kernel, so results
    agree to float rounding (tests: 1e-6), not bit for bit.
    """
    h, w = x.shape[-2:]
    return pool_matrix(h, bins, x) @ x @ pool_matrix(w, bins, x).transpose(0, 1)


class AdaptiveAvgPool2d(nn.Module):
    """Drop-in for ``nn.AdaptiveAvgPool2d(bins)`` (square bins) that exports with dynamic H/W."""

    def __init__(self, bins: int):
        super().__init__()
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d(x, self.bins)

    def extra_repr(self) -> str:
        return f"bins={self.bins}"


def window_cells(x: torch.Tensor) -> list[torch.Tensor]:
    """The four cells of every 2x2 window of ``x`` (an odd last row/column dropped), row-major, each
    (N, C, H//2, W//2). Through ``pixel_unshuffle`` and channel slices: the graph's sizes stay
    ``H//2``, where cropping and strided spatial slices gave nested floor/ceil expressions that
    ``torch.export``'s symbolic shapes took minutes to simplify over SegNet's five levels. The crop is
    ``narrow`` (its size is exactly ``2 * (H // 2)``): a slice's size is ``min(H, 2 * (H // 2))``, which
    torch 2.11's export could not simplify, made an unbacked size of and then failed on in
    ``pixel_unshuffle`` (seen on an H200 machine's torch 2.11; torch 2.14 simplifies it)."""
    h2, w2 = x.shape[-2] // 2, x.shape[-1] // 2
    x = x.narrow(-2, 0, 2 * h2).narrow(-1, 0, 2 * w2)
    u = F.pixel_unshuffle(x, 2)  # channel c * 4 + (row * 2 + column)
    return [u[:, k::4] for k in range(4)]


def max_pool_switches(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2 stride-2 max pooling of ``x`` and its "switches": a one-hot (N, C, 4, H/2, W/2) mask of
    which cell of each window held the maximum.

    This is what ``MaxPool2d(2, 2, return_indices=True)`` computes, in another form: the first
    maximum in row-major order wins a tie (PyTorch's kernels keep the first one they meet), which
    matters after a ReLU, where whole windows are 0. An odd last row/column is dropped, as
    ``MaxPool2d`` (floor mode) does.
    """
    cells = window_cells(x)
    pooled = torch.maximum(torch.maximum(cells[0], cells[1]), torch.maximum(cells[2], cells[3]))
    # a cell wins if it holds the maximum and no earlier cell of its window did
    won, taken = [], None
    for c in cells:
        is_max = c == pooled
        won.append(is_max if taken is None else is_max & ~taken)
        taken = is_max if taken is None else taken | is_max
    return pooled, torch.stack(won, dim=2)


def max_unpool(values: torch.Tensor, switches: torch.Tensor, size=None) -> torch.Tensor:
    """``MaxUnpool2d(2, 2)(values, indices, output_size=size)`` from :func:`max_pool_switches`' mask.

    Each value goes back to the cell its window's maximum came from, every other cell is 0; a row or
    column that pooling dropped (odd sizes) comes back as zeros. ``size=None``: exactly twice the
    pooled size (a caller whose sizes are all even, as SegNet after its padding, skips a pad whose
    symbolic size ``torch.export`` must otherwise reason about).
    """
    h2, w2 = values.shape[-2:]
    cells = values.unsqueeze(2) * switches.to(values.dtype)  # (N, C, 4, H/2, W/2)
    out = F.pixel_shuffle(cells.flatten(1, 2), 2)            # channel c * 4 + k -> cell k of window
    if size is None:
        return out
    h, w = size
    return F.pad(out, (0, w - w2 * 2, 0, h - h2 * 2))
