"""U-Net with a MobileNetV2 encoder, as TensorFlow's image-segmentation (Oxford Pets) tutorial.

The encoder is torchvision's ``mobilenet_v2().features``; the skips are the activations the tutorial
taps by Keras layer name, found at the same places in torchvision's blocks:

======================  ==========================  ========  ========
Keras layer             torchvision                 stride    channels
======================  ==========================  ========  ========
block_1_expand_relu     features[2].conv[0] output  2         96
block_3_expand_relu     features[4].conv[0] output  4         144
block_6_expand_relu     features[7].conv[0] output  8         192
block_13_expand_relu    features[14].conv[0] output 16        576
block_16_project        features[17] output         32        320
======================  ==========================  ========  ========

The tapped blocks have stride 2 (no residual), so running ``conv[0]`` then ``conv[1:]`` is exactly
the block: no activation is computed twice. The decoder is pix2pix's ``upsample`` (transposed conv
3x3 stride 2, BatchNorm, ReLU) with 512/256/128/64 filters and a final stride-2 transposed conv to
the classes. When a size is not a multiple of 32 the upsampled map is resized to its skip's size
(and the output to the input size), so any input size works.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from segstyle.models.normalize import Normalize
from segstyle.models.registry import register_model
from segstyle.models.weights import load_tv_weights

TAPS = (2, 4, 7, 14)  # blocks whose expansion activation is a skip (block_1/3/6/13_expand_relu)
LAST = 17             # features[17] = block_16 (its projection output is the bottleneck)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _fit(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Resize ``x`` to ``size``. Always interpolates (an identity at equal sizes): a shape test here
    would be frozen by the ONNX exporter at the export size and break other input sizes."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class UNetMobileNetV2(nn.Module):
    """0..1 RGB in, ``{"out": logits at input size}`` out (normalisation happens inside)."""

    def __init__(self, num_classes: int = 21, pretrained: bool = False):
        super().__init__()
        net = mobilenet_v2(weights=None)
        if pretrained:
            net.load_state_dict(load_tv_weights(MobileNet_V2_Weights.IMAGENET1K_V1))
        self.normalize = Normalize()
        self.encoder = net.features[: LAST + 1]
        for i in TAPS:
            assert not self.encoder[i].use_res_connect, "tapped blocks must be stride-2 (no residual)"
        skip_ch = [self.encoder[i].conv[0].out_channels for i in TAPS]  # 96, 144, 192, 576
        bottleneck = self.encoder[LAST].out_channels  # 320
        ups, cin = [], bottleneck
        for cout, skip in zip((512, 256, 128, 64), reversed(skip_ch)):
            ups.append(_up(cin, cout))
            cin = cout + skip
        self.ups = nn.ModuleList(ups)
        self.head = nn.ConvTranspose2d(cin, num_classes, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        x = self.normalize(x)
        skips = []
        for i, block in enumerate(self.encoder):
            if i in TAPS:
                x = block.conv[0](x)
                skips.append(x)
                x = block.conv[1:](x)
            else:
                x = block(x)
        for up, skip in zip(self.ups, reversed(skips)):
            x = torch.cat([_fit(up(x), skip.shape[-2:]), skip], dim=1)
        return {"out": _fit(self.head(x), size)}


@register_model(
    "unet_mobilenetv2",
    task="segmentation",
    description="U-Net (TF pets tutorial): MobileNetV2 encoder taps + pix2pix upsampling decoder",
    weights="MobileNet_V2_Weights.IMAGENET1K_V1",
    default_kwargs={"num_classes": 21},
)
def unet_mobilenetv2(num_classes: int = 21, pretrained: bool = False, aux_loss: bool = False,
                     **kw) -> UNetMobileNetV2:
    """``pretrained`` loads the ImageNet MobileNetV2 encoder; no auxiliary head (``aux_loss`` ignored)."""
    if kw:
        raise TypeError(f"unet_mobilenetv2: unexpected arguments {sorted(kw)}")
    return UNetMobileNetV2(num_classes=num_classes, pretrained=pretrained)
