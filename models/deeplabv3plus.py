"""DeepLabV3+ (Chen et al. 2018) from segmentation_models_pytorch, on a ResNet-18 encoder.

The encoder (torchvision's ResNet-18 as smp wraps it, ``layer4`` dilated for output stride 16) feeds
ASPP (atrous rates 12/24/36 and image pooling, separable convolutions); the decoder upsamples that
4x, concatenates the stride-4 ``layer1`` features after a 1x1 convolution to 48 channels, refines
with a 3x3 convolution and the head upsamples 4x again.

smp's model refuses sizes that are not multiples of the output stride (its decoder concatenates two
maps that must then line up). The wrapper zero-pads the normalised input on the bottom/right up to
the next multiple of 16 (zero is the mean colour after normalisation) and crops the logits back, so
any size works and the crop is what an exported graph computes too: the pad is read from the
input's size inside the graph. Imported lazily: smp pulls in timm, seconds of import time.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import ResNet18_Weights

from segstyle.models.normalize import Normalize
from segstyle.models.registry import register_model
from segstyle.models.weights import load_tv_weights

OUTPUT_STRIDE = 16


class DeepLabV3Plus(nn.Module):
    """0..1 RGB in, ``{"out": logits at input size}`` out (normalisation happens inside)."""

    def __init__(self, num_classes: int = 21, pretrained: bool = False):
        super().__init__()
        import segmentation_models_pytorch as smp

        net = smp.DeepLabV3Plus("resnet18", encoder_weights=None, encoder_output_stride=OUTPUT_STRIDE,
                                classes=num_classes)
        if pretrained:  # smp's ResNet encoder is torchvision's ResNet without avgpool/fc
            sd = load_tv_weights(ResNet18_Weights.IMAGENET1K_V1)
            net.encoder.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")})
        self.normalize = Normalize()
        self.encoder, self.decoder, self.head = net.encoder, net.decoder, net.segmentation_head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        x = F.pad(self.normalize(x), (0, (-w) % OUTPUT_STRIDE, 0, (-h) % OUTPUT_STRIDE))
        y = self.head(self.decoder(self.encoder(x)))
        return {"out": y[..., :h, :w]}


@register_model(
    "deeplabv3plus",
    task="segmentation",
    description="DeepLabV3+ (segmentation_models_pytorch): ResNet-18 at stride 16, ASPP, stride-4 low-level decoder",
    weights="ResNet18_Weights.IMAGENET1K_V1",
    default_kwargs={"num_classes": 21},
)
def deeplabv3plus(num_classes: int = 21, pretrained: bool = False, aux_loss: bool = False,
                  **kw) -> DeepLabV3Plus:
    """``pretrained`` loads the ImageNet ResNet-18 encoder; no auxiliary head (``aux_loss`` ignored)."""
    if kw:
        raise TypeError(f"deeplabv3plus: unexpected arguments {sorted(kw)}")
    return DeepLabV3Plus(num_classes=num_classes, pretrained=pretrained)
