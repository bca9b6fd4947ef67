"""FCN with a ResNet-18 body (the d2l "Fully Convolutional Networks" chapter).

ResNet-18 without its pooling/classifier gives 512 channels at stride 32; a 1x1 convolution maps them
to class scores and one transposed convolution (kernel 64, stride 32, padding 16) upsamples by 32.
That transposed convolution starts as bilinear interpolation (d2l's ``bilinear_kernel``) so an
untrained head already produces smooth, aligned maps and training only has to refine them.

For input sizes that are not multiples of 32 the body's output has ``ceil(H/32)`` rows, so the
upsampled map is at least as large as the input and is cropped top-left (where it is aligned).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models import ResNet18_Weights, resnet18

from segstyle.models.normalize import Normalize
from segstyle.models.registry import register_model
from segstyle.models.weights import load_tv_weights


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a ConvTranspose2d perform bilinear upsampling (channel i -> channel i)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = (torch.arange(kernel_size).reshape(-1, 1), torch.arange(kernel_size).reshape(1, -1))
    filt = (1 - torch.abs(og[0] - center) / factor) * (1 - torch.abs(og[1] - center) / factor)
    weight = torch.zeros((in_channels, out_channels, kernel_size, kernel_size))
    n = min(in_channels, out_channels)
    weight[range(n), range(n), :, :] = filt
    return weight


class FCN(nn.Module):
    """0..1 RGB in, ``{"out": logits at input size}`` out (normalisation happens inside)."""

    def __init__(self, num_classes: int = 21, pretrained: bool = False):
        super().__init__()
        body = resnet18(weights=None)
        if pretrained:
            body.load_state_dict(load_tv_weights(ResNet18_Weights.IMAGENET1K_V1))
        self.normalize = Normalize()
        self.body = nn.Sequential(*list(body.children())[:-2])
        self.score = nn.Conv2d(512, num_classes, kernel_size=1)
        self.upsample = nn.ConvTranspose2d(num_classes, num_classes, kernel_size=64, padding=16, stride=32)
        with torch.no_grad():
            self.upsample.weight.copy_(bilinear_kernel(num_classes, num_classes, 64))
            self.upsample.bias.zero_()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        y = self.upsample(self.score(self.body(self.normalize(x))))
        return {"out": y[..., :h, :w]}


@register_model(
    "fcn_resnet18",
    task="segmentation",
    description="FCN (d2l): ResNet-18 body, 1x1 conv, bilinear-initialised transposed conv x32",
    weights="ResNet18_Weights.IMAGENET1K_V1",
    default_kwargs={"num_classes": 21},
)
def fcn_resnet18(num_classes: int = 21, pretrained: bool = False, aux_loss: bool = False, **kw) -> FCN:
    """``pretrained`` loads the ImageNet ResNet-18 body; FCN has no auxiliary head (``aux_loss`` ignored)."""
    if kw:
        raise TypeError(f"fcn_resnet18: unexpected arguments {sorted(kw)}")
    return FCN(num_classes=num_classes, pretrained=pretrained)
