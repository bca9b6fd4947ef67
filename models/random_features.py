"""Random multi-scale shallow filter banks: a style-loss network that needs no trained weights.

Ustyuzhaninov, Brendel, Gatys, Bethge ("What does it take to generate natural textures?",
ICLR 2017) showed that Gram matrices of a *single* convolutional layer with *random* filters at
several scales (3 .. 55 px, 128 filters each, ReLU) synthesise textures close to VGG's. That is
what the demo profile needs: ImageNet VGG cannot be downloaded here, and a randomly initialised
deep VGG gives Gram statistics dominated by a few colours (the old demo turned every photo into a
green-brown blob). A shallow random bank keeps each filter's response tied to a local colour /
edge pattern of a known size, so matching its Gram matrices moves both the palette and the
strokes toward the style image.

:class:`RandomFilterBanks` has the interface of
:class:`segstyle.models.perceptual_loss.VGGFeatures` (``forward(x) -> {name: map}``, ``normalize``,
``normalizer``), so :class:`~segstyle.models.perceptual_loss.PerceptualLoss` and the Gatys
optimisation take either. Layer names are ``bank<k>`` for ``k`` x ``k`` filters at full resolution and
``bank<k>s<d>`` for the same on the image average-pooled by ``d``.

The filters are a pure function of ``seed`` (drawn on the CPU with their own generator, whatever
the global RNG state), so a checkpoint records the loss network by its seed and banks, and a
metric that must be *independent* of the loss (:mod:`segstyle.pipelines.style.quality`) uses another
seed, other kernel sizes and another filter count.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F

from segstyle.models.frozen_features import FrozenFeatures

# Demo loss network: banks of 128 random 3x3, 5x5 and 7x7 filters on an image pyramid (x1, and 7x7
# also at /2, /4, /8): receptive fields of 3..56 px, the range of the paper's 3..55 px banks, at an
# eighth of the cost of 23x23 (or 55x55) kernels at full resolution; each (kernel, downsample) pair is one bank.
DEFAULT_BANKS: tuple[tuple[int, int], ...] = ((3, 1), (5, 1), (7, 1), (7, 2), (7, 4), (7, 8))
DEFAULT_FILTERS = 128
DEFAULT_SEED = 0
# Content is compared on the finest banks: they keep edges and shapes where they are, while the
# coarse banks are free to move colour and texture toward the style.
DEFAULT_CONTENT = ("bank3", "bank5")


def bank_name(kernel: int, downsample: int = 1) -> str:
    """``bank<k>`` at full resolution, ``bank<k>s<d>`` on the image average-pooled by ``d``."""
    return f"bank{kernel}" if downsample == 1 else f"bank{kernel}s{downsample}"


class RandomFilterBanks(FrozenFeatures):
    """Frozen single-layer random conv banks, each followed by ReLU; ``forward`` -> ``{name: map}``.

    ``banks`` is a sequence of ``(kernel, downsample)``: the bank convolves the input average-pooled
    by ``downsample`` (1 = full resolution), so a 7x7 bank at /4 sees 28 px of the image. Each
    filter is drawn from N(0, 1), made zero-mean and scaled to unit L2 norm, so every bank responds
    to patterns (edges, colour contrasts) rather than to the average brightness, and banks are
    comparable in scale whatever their size; biases are small uniform values that vary the ReLU
    threshold across filters. Input is ImageNet-normalised like VGG's (so the Gatys code that
    optimises the normalised image works unchanged). Padding is reflective ('same' size, no dark
    frame in the features).
    """

    def __init__(self, banks: Iterable[tuple[int, int] | int] = DEFAULT_BANKS, filters: int = DEFAULT_FILTERS,
                 seed: int = DEFAULT_SEED, layers: Iterable[str] | None = None):
        super().__init__()
        self.banks = tuple((int(b), 1) if isinstance(b, int) else (int(b[0]), int(b[1])) for b in banks)
        if not self.banks or any(k < 1 or d < 1 for k, d in self.banks):
            raise ValueError(f"banks must be (kernel >= 1, downsample >= 1) pairs, got {self.banks}")
        self.filters, self.seed = int(filters), int(seed)
        names = [bank_name(k, d) for k, d in self.banks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate banks in {self.banks}")
        self.layers = tuple(dict.fromkeys(layers if layers is not None else names))
        unknown = [n for n in self.layers if n not in names]
        if unknown:
            raise ValueError(f"random banks {self.banks} have no layer(s) {unknown}")
        g = torch.Generator().manual_seed(self.seed)
        for (k, d), name in zip(self.banks, names):
            w = torch.randn(self.filters, 3, k, k, generator=g)
            w = w - w.mean(dim=(1, 2, 3), keepdim=True)
            w = w / w.flatten(1).norm(dim=1).clamp_min(1e-8).view(-1, 1, 1, 1)
            b = (torch.rand(self.filters, generator=g) - 0.5) / (3 * k * k) ** 0.5
            self.register_buffer(f"{name}_weight", w)
            self.register_buffer(f"{name}_bias", b)
        self.freeze()

    def extract(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """ImageNet-normalised NCHW -> ``{bank name: ReLU map}``; banks not in ``layers`` are not computed."""
        out: dict[str, torch.Tensor] = {}
        pooled: dict[int, torch.Tensor] = {1: x}
        for k, d in self.banks:
            name = bank_name(k, d)
            if name not in layers:
                continue
            if d not in pooled:
                pooled[d] = F.avg_pool2d(x, d, ceil_mode=True)
            xi = pooled[d]
            p = k // 2
            if k > 1:
                # Reflection needs pad < size; tiny (pooled) inputs fall back to replicate padding.
                mode = "reflect" if min(xi.shape[-2:]) > max(p, k - 1 - p) else "replicate"
                xi = F.pad(xi, (p, k - 1 - p, p, k - 1 - p), mode=mode)
            w, b = getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias")
            out[name] = F.relu(F.conv2d(xi, w.to(xi.dtype), b.to(xi.dtype)))
        return out
