"""PSPNet (Zhao et al. 2017; the keras segmentation guide's scene network): a pyramid pooling module
over a ResNet-18 body.

The body is torchvision's ResNet-18 through ``layer3`` (256 channels at stride 16). The pyramid
averages those features over 1x1, 2x2, 3x3 and 6x6 grids, reduces each to 64 channels with a 1x1
convolution, upsamples each back to the feature size and concatenates them with the features, so
every position sees its whole image at four scales. A 3x3 convolution mixes them, a 1x1 one gives
the classes, upsampled to the input size.

Why not segmentation_models_pytorch's ``PSPNet``: its pyramid is ``nn.AdaptiveAvgPool2d``, and under
ONNX export it switches to ``F.interpolate(mode="area")``, which is adaptive pooling again; neither
exports with dynamic H/W unless the exporter can prove the bins divide the feature size. The pyramid
here pools with :func:`segstyle.models.pooling.adaptive_avg_pool2d` (PyTorch's bins, overlapping
where they do not divide evenly, computed from the size inside the graph), so one graph serves
every input size with the eager figures.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import ResNet18_Weights, resnet18

from segstyle.models.normalize import Normalize
from segstyle.models.pooling import AdaptiveAvgPool2d
from segstyle.models.registry import register_model
from segstyle.models.weights import load_tv_weights

BINS = (1, 2, 3, 6)


def _conv_bn_relu(cin: int, cout: int, k: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class PyramidPooling(nn.Module):
    """Pool to each bin grid, 1x1 conv, upsample back, concatenate with the input (PSPNet's PPM).

    The 1x1 grid has no BatchNorm: one value per channel and image gives no batch statistics at
    batch 1 (segmentation_models_pytorch drops it there too).
    """

    def __init__(self, channels: int, bins: tuple[int, ...] = BINS, reduced: int = 64):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool2d(b), _conv_bn_relu(channels, reduced, 1, norm=b > 1)) for b in bins)
        self.out_channels = channels + reduced * len(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return torch.cat([x] + [F.interpolate(s(x), size=size, mode="bilinear", align_corners=False)
                                for s in self.stages], dim=1)


class PSPNet(nn.Module):
    """0..1 RGB in, ``{"out": logits at input size}`` out (normalisation happens inside)."""

    def __init__(self, num_classes: int = 21, pretrained: bool = False):
        super().__init__()
        body = resnet18(weights=None)
        if pretrained:
            body.load_state_dict(load_tv_weights(ResNet18_Weights.IMAGENET1K_V1))
        self.normalize = Normalize()
        self.body = nn.Sequential(*list(body.children())[:-3])  # conv1 .. layer3: stride 16, 256 channels
        self.ppm = PyramidPooling(256)
        self.head = nn.Sequential(_conv_bn_relu(self.ppm.out_channels, 128, 3), nn.Dropout2d(0.1),
                                  nn.Conv2d(128, num_classes, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        y = self.head(self.ppm(self.body(self.normalize(x))))
        return {"out": F.interpolate(y, size=size, mode="bilinear", align_corners=False)}


@register_model(
    "pspnet",
    task="segmentation",
    description="PSPNet (Zhao et al.): ResNet-18 body to stride 16, pyramid pooling at bins 1/2/3/6 (exact at any size)",
    weights="ResNet18_Weights.IMAGENET1K_V1",
    default_kwargs={"num_classes": 21},
)
def pspnet(num_classes: int = 21, pretrained: bool = False, aux_loss: bool = False, **kw) -> PSPNet:
    """``pretrained`` loads the ImageNet ResNet-18 body; no auxiliary head (``aux_loss`` ignored)."""
    if kw:
        raise TypeError(f"pspnet: unexpected arguments {sorted(kw)}")
    return PSPNet(num_classes=num_classes, pretrained=pretrained)
