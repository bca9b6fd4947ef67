"""DeepLabV3 (atrous MobileNetV3-Large backbone + ASPP) from torchvision's builder.

Pretrained weights: with 21 classes, torchvision's ``COCO_WITH_VOC_LABELS_V1`` segmentation weights
(whole network, VOC label set); otherwise only the ImageNet MobileNetV3-Large backbone, since the
classifier cannot fit another class count. From scratch, BatchNorm momentum is raised to PyTorch's
default 0.1 (see below). The wrapper normalises 0..1 RGB inside ``forward`` so
exported graphs take plain images, and returns a plain dict (``out`` and, with ``aux_loss``, ``aux``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models import MobileNet_V3_Large_Weights
from torchvision.models.segmentation import DeepLabV3_MobileNet_V3_Large_Weights, deeplabv3_mobilenet_v3_large

from segstyle.models.normalize import Normalize
from segstyle.models.registry import register_model
from segstyle.models.weights import load_tv_weights

VOC_NUM_CLASSES = 21


class DeepLabV3MobileNet(nn.Module):
    def __init__(self, num_classes: int = 21, pretrained: bool = False, aux_loss: bool = False):
        super().__init__()
        full_weights = pretrained and num_classes == VOC_NUM_CLASSES
        # The segmentation weights include the aux classifier: build with it, drop it afterwards.
        net = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes,
                                           aux_loss=aux_loss or full_weights)
        if full_weights:
            net.load_state_dict(load_tv_weights(DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1))
        elif pretrained:
            # net.backbone is an IntermediateLayerGetter over mobilenet_v3_large(dilated=True).features:
            # its keys are the features' keys without the "features." prefix.
            sd = load_tv_weights(MobileNet_V3_Large_Weights.IMAGENET1K_V1)
            net.backbone.load_state_dict({k[len("features."):]: v for k, v in sd.items()
                                          if k.startswith("features.")})
        if not aux_loss:
            net.aux_classifier = None
        if not pretrained:
            # torchvision's MobileNetV3 uses BatchNorm momentum 0.01, tuned for fine-tuning pretrained
            # statistics over long schedules. From scratch, a short run leaves the running statistics near
            # their init (mean 0, var 1) and eval-mode output collapses to one class; PyTorch's default
            # 0.1 tracks them within a few dozen steps. Inference is unaffected (momentum is train-only).
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = 0.1
        self.normalize = Normalize()
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(self.net(self.normalize(x)))


@register_model(
    "deeplabv3_mobilenet_v3_large",
    task="segmentation",
    description="DeepLabV3 (torchvision): dilated MobileNetV3-Large + ASPP, optional aux head",
    weights="DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
    default_kwargs={"num_classes": 21},
)
def deeplabv3_mobilenet(num_classes: int = 21, pretrained: bool = False, aux_loss: bool = False,
                        **kw) -> DeepLabV3MobileNet:
    """``pretrained``: VOC-label segmentation weights at 21 classes, else ImageNet backbone weights."""
    if kw:
        raise TypeError(f"deeplabv3_mobilenet_v3_large: unexpected arguments {sorted(kw)}")
    return DeepLabV3MobileNet(num_classes=num_classes, pretrained=pretrained, aux_loss=aux_loss)
