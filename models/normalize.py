"""Input normalisation inside the network, shared by every model that expects ImageNet statistics.

Models take 0..1 RGB so exported ONNX/TensorRT graphs take plain images; the mean/std buffers are
non-persistent (checkpoints hold no copy) and follow the input's dtype (FP16 engines, autocast).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from segstyle.models.registry import IMAGENET_MEAN, IMAGENET_STD


class Normalize(nn.Module):
    """``(x - mean) / std`` over the channel dimension of an NCHW batch."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
