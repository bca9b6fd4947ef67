"""The original U-Net layout at half width for foreground matting (one source's portrait U-Net:
``UNet(in_channels=3, out_channels=1, init_features=32)``, after Ronneberger et al. 2015 as
mateuszbuda/brain-segmentation-pytorch writes it).

Four encoder blocks of two 3x3 conv-BN-ReLU (32, 64, 128, 256 channels) with 2x2 max pooling, a
512-channel bottleneck, four decoder blocks that upsample with a 2x2 stride-2 transposed
convolution, concatenate the encoder block of the same size and convolve twice, and a 1x1
convolution to ``num_classes`` logits: one for the binary task (sigmoid = the alpha matte, 0.5 = the
mask), any other count as an ordinary multi-class U-Net. Odd sizes: the upsampled map is resized
to its skip's size (an identity when they already match), so any size from 16 up works.

No pretrained weights exist for this layout in torchvision (the hub's brain-MRI weights are for
another domain): ``pretrained=True`` is a one-line error, never a silent random start.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from segstyle.core.errors import SegstyleError
from segstyle.models.normalize import Normalize
from segstyle.models.registry import register_model


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """0..1 RGB in, ``{"out": logits at input size}`` out (normalisation happens inside)."""

    def __init__(self, num_classes: int = 1, init_features: int = 32):
        super().__init__()
        f = init_features
        widths = (f, 2 * f, 4 * f, 8 * f)
        self.normalize = Normalize()
        self.encoders = nn.ModuleList(_block(cin, cout) for cin, cout in zip((3,) + widths[:-1], widths))
        self.pool = nn.MaxPool2d(2, 2)
        self.bottleneck = _block(widths[-1], 16 * f)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(2 * c, c, 2, stride=2) for c in reversed(widths))
        self.decoders = nn.ModuleList(_block(2 * c, c) for c in reversed(widths))
        self.head = nn.Conv2d(f, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.normalize(x)
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = F.interpolate(up(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], dim=1))
        return {"out": self.head(x)}


@register_model(
    "unet_binary",
    task="segmentation",
    description="U-Net (Ronneberger et al.) at init_features 32, one output: foreground alpha (binary task)",
    default_kwargs={"num_classes": 1},
)
def unet_binary(num_classes: int = 1, pretrained: bool = False, aux_loss: bool = False, init_features: int = 32,
                **kw) -> UNet:
    """No pretrained weights exist for this layout; no auxiliary head (``aux_loss`` ignored)."""
    if kw:
        raise TypeError(f"unet_binary: unexpected arguments {sorted(kw)}")
    if pretrained:
        raise SegstyleError("unet_binary has no pretrained weights (torchvision has none for the original U-Net); "
                            "use --no-pretrained")
    return UNet(num_classes=num_classes, init_features=init_features)
