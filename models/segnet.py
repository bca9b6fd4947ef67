"""SegNet (Badrinarayanan et al. 2017; the keras segmentation guide's encoder-decoder).

The encoder is VGG16-BN's 13 convolutions in five blocks, each closed by 2x2 max pooling that
remembers where every maximum was; the decoder mirrors it: each block un-pools its input back to
those positions (zeros elsewhere), then convolves, so boundaries come back from the encoder's own
switches, with no skip connections and no learnt upsampling. A 3x3 convolution gives the classes.

The pooling/unpooling pair is :func:`segstyle.models.pooling.max_pool_switches` /
:func:`~segstyle.models.pooling.max_unpool`: the same numbers as ``MaxPool2d(return_indices=True)``
and ``MaxUnpool2d`` (tests compare them, ties and odd sizes included) from ops TensorRT parses;
the indices route exports a MaxPool ``Indices`` output and a ScatterND, which it does not. The
normalised input is zero-padded on the bottom/right to the next multiple of 32 (zero is the mean
colour) and the logits cropped back, so every pooling halves exactly and any size works: without
the pad the pair still matches the PyTorch ops at odd sizes (tests), but ``torch.export`` spent
minutes on the five levels' nested floor expressions.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import VGG16_BN_Weights, vgg16_bn

from segstyle.models.normalize import Normalize
from segstyle.models.pooling import max_pool_switches, max_unpool
from segstyle.models.registry import register_model
from segstyle.models.weights import load_tv_weights

DECODER = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,))  # out channels per conv


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SegNet(nn.Module):
    """0..1 RGB in, ``{"out": logits at input size}`` out (normalisation happens inside)."""

    def __init__(self, num_classes: int = 21, pretrained: bool = False):
        super().__init__()
        vgg = vgg16_bn(weights=None)
        if pretrained:
            vgg.load_state_dict(load_tv_weights(VGG16_BN_Weights.IMAGENET1K_V1))
        self.normalize = Normalize()
        blocks, block = [], []
        for layer in vgg.features:  # conv-bn-relu ... MaxPool2d, five times
            if isinstance(layer, nn.MaxPool2d):
                blocks.append(nn.Sequential(*block))
                block = []
            else:
                block.append(layer)
        self.encoder = nn.ModuleList(blocks)
        dec, cin = [], 512
        for outs in DECODER:
            layers = []
            for cout in outs:
                layers += _conv(cin, cout)
                cin = cout
            dec.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(dec)
        self.classifier = nn.Conv2d(cin, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        x = F.pad(self.normalize(x), (0, (-w) % 32, 0, (-h) % 32))
        switches = []
        for block in self.encoder:
            x, s = max_pool_switches(block(x))
            switches.append(s)
        for block, s in zip(self.decoder, reversed(switches)):
            x = block(max_unpool(x, s))
        return {"out": self.classifier(x)[..., :h, :w]}


@register_model(
    "segnet",
    task="segmentation",
    description="SegNet (Badrinarayanan et al.): VGG16-BN encoder, decoder un-pooling with the encoder's max switches",
    weights="VGG16_BN_Weights.IMAGENET1K_V1",
    default_kwargs={"num_classes": 21},
)
def segnet(num_classes: int = 21, pretrained: bool = False, aux_loss: bool = False, **kw) -> SegNet:
    """``pretrained`` loads the ImageNet VGG16-BN encoder; no auxiliary head (``aux_loss`` ignored)."""
    if kw:
        raise TypeError(f"segnet: unexpected arguments {sorted(kw)}")
    return SegNet(num_classes=num_classes, pretrained=pretrained)
