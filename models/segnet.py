"""SegNet (Badrinarayanan et al. 2017; the keras segmentation guide's encoder-decoder).

The encoder is VGG16-BN's 13 convolutions in five blocks (at ``width`` 1.0; the registry's default
0.25 keeps the layout at a quarter of the channels, 16..128, so the demo trains on two CPU cores:
at full width one step of batch 8 took over 30 s there), each closed by 2x2 max pooling that
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

from segstyle.core.errors import SegstyleError
from segstyle.models.normalize import Normalize
from segstyle.models.pooling import max_pool_switches, max_unpool
from segstyle.models.registry import register_model
from segstyle.models.weights import load_tv_weights

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
DECODER = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,))  # out channels per conv


def _conv(cin: int, cout: int) -> list[nn.Module]:
    """conv 3x3 (with a bias, as VGG16-BN's) - BN - ReLU."""
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SegNet(nn.Module):
    """0..1 RGB in, ``{"out": logits at input size}`` out (normalisation happens inside)."""

    def __init__(self, num_classes: int = 21, pretrained: bool = False, width: float = 1.0):
        super().__init__()
        if pretrained and width != 1.0:
            raise SegstyleError(f"segnet: ImageNet VGG16-BN weights exist only at width 1.0 (asked {width}); "
                                "pass width=1.0 or use --no-pretrained")
        ch = lambda c: max(8, int(c * width))  # noqa: E731
        self.normalize = Normalize()
        if width == 1.0:
            vgg = vgg16_bn(weights=None)
            if pretrained:
                vgg.load_state_dict(load_tv_weights(VGG16_BN_Weights.IMAGENET1K_V1))
            layers = list(vgg.features)
        else:  # the same layout (torchvision's VGG16-BN "D" config) at fewer channels
            layers, cin = [], 3
            for v in VGG16:
                if v == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += _conv(cin, ch(v))
                    cin = ch(v)
        blocks, block = [], []
        for layer in layers:  # conv-bn-relu ... MaxPool2d, five times
            if isinstance(layer, nn.MaxPool2d):
                blocks.append(nn.Sequential(*block))
                block = []
            else:
                block.append(layer)
        self.encoder = nn.ModuleList(blocks)
        dec, cin = [], ch(512)
        for outs in DECODER:
            convs = []
            for cout in outs:
                convs += _conv(cin, ch(cout))
                cin = ch(cout)
            dec.append(nn.Sequential(*convs))
        self.decoder = nn.ModuleList(dec)
        self.classifier = nn.Conv2d(cin, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.routed(x)[0]}

    def routed(self, x: torch.Tensor, switches: list[torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The logits and, per encoder level, (the activations it pooled, the switches it used).

        ``switches`` (one per level, as returned) replaces the network's own decisions: a switch is
        an argmax, so two runtimes whose arithmetic differs in the last bits can pick different cells
        of a near-tied window and move a value by a pixel. Running PyTorch with a graph's own switches
        separates that from a wrong graph (:mod:`segstyle.export.portable.routing`)."""
        h, w = x.shape[-2:]
        x = F.pad(self.normalize(x), (0, (-w) % 32, 0, (-h) % 32))
        levels = []
        for i, block in enumerate(self.encoder):
            pre = block(x)
            x, s = max_pool_switches(pre)
            if switches is not None:
                s = switches[i].to(s.dtype)
            levels.append((pre, s))
        for block, (_, s) in zip(self.decoder, reversed(levels)):
            x = block(max_unpool(x, s))
        return self.classifier(x)[..., :h, :w], levels


@register_model(
    "segnet",
    task="segmentation",
    description="SegNet (Badrinarayanan et al.): VGG16-BN encoder, decoder un-pooling with the encoder's max switches",
    weights="VGG16_BN_Weights.IMAGENET1K_V1",
    default_kwargs={"num_classes": 21, "width": 0.25},
)
def segnet(num_classes: int = 21, pretrained: bool = False, aux_loss: bool = False, width: float = 0.25,
           **kw) -> SegNet:
    """``pretrained`` (``width=1.0`` only) loads the ImageNet VGG16-BN encoder; no auxiliary head."""
    if kw:
        raise TypeError(f"segnet: unexpected arguments {sorted(kw)}")
    return SegNet(num_classes=num_classes, pretrained=pretrained, width=width)
