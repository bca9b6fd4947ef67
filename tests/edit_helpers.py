"""Segmentation checkpoints with a known answer, and a textured photo: shared by the editing tests
(inpainting, region stylisation) and the fused-graph export tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

VOC = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
       "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def constant_class_checkpoint(path: Path, winner: str) -> Path:
    """A real registered segmentation network whose classifier always predicts ``winner`` (weights
    zeroed, bias one-hot): the mask the command gets is known exactly."""
    from segstyle.models import build_model
    from segstyle.models.checkpoint import save_checkpoint

    net = build_model("fcn_resnet18", num_classes=len(VOC), pretrained=False)
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == len(VOC)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-10.0)
        last.bias[VOC.index(winner)] = 10.0
    save_checkpoint(path, {"model": "fcn_resnet18", "model_kwargs": {"num_classes": len(VOC)},
                           "state_dict": net.state_dict(), "params": {"augment": {"base_size": 64}},
                           "data_version": "test", "classes": list(VOC)})
    return path


def textured(h: int = 60, w: int = 90) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 2) % 256, (yy * 3) % 256, ((xx + yy) * 2) % 256], -1).astype(np.uint8)


def confident_class_checkpoint(path, winner: str):
    """:func:`constant_class_checkpoint` with a 5x larger logit gap: the softmax region mask is then
    1.0 / 0.0 in float32 (the FCN's learned upsampling shrinks its +-10 bias to a gap of ~9, p ~ 0.95)."""
    from segstyle.models.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(constant_class_checkpoint(path, winner))
    key = next(k for k in ck["state_dict"] if k.endswith("score.bias"))
    ck["state_dict"][key] = ck["state_dict"][key] * 5
    save_checkpoint(path, ck)
    return path
