"""The frozen feature extractor both style-loss networks are built on (VGG and random filter banks).

Its own module so that :mod:`segstyle.models.perceptual_loss` (which builds either loss network) and
:mod:`segstyle.models.random_features` (one of them) both import it without importing each other.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from segstyle.models.normalize import Normalize


class FrozenFeatures(nn.Module):
    """Base of the loss networks: frozen, always in eval mode, 0..1 RGB in, ``{layer name: map}`` out.

    :class:`VGGFeatures` and :class:`segstyle.models.random_features.RandomFilterBanks` share this
    contract so :class:`PerceptualLoss` and the Gatys optimisation take either: the ImageNet
    normalisation lives inside (``normalized=True`` skips it, for Gatys, which optimises the
    normalised image), no parameter ever needs a gradient, and ``train()`` cannot switch the
    extractor out of eval mode (a loss network must compute the same function in every step).
    Subclasses build their layers, call :meth:`freeze` at the end of ``__init__`` and implement
    :meth:`extract`.
    """

    def __init__(self):
        super().__init__()
        self.normalizer = Normalize()

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenFeatures":
        return super().train(False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalizer(x)

    def forward(self, x: torch.Tensor, *, normalized: bool = False,
                layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """``x``: 0..1 RGB NCHW (or already ImageNet-normalised when ``normalized``); ``layers``: a
        subset of :attr:`layers` to return (a subclass may skip computing the others)."""
        return self.extract(x if normalized else self.normalize(x), self.layers if layers is None else tuple(layers))

    def extract(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """ImageNet-normalised NCHW -> ``{layer name: feature map}`` for (at least) ``layers``."""
        raise NotImplementedError
