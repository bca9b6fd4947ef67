"""Segmentation + style network + feathered blend as ONE module: one photo in, one photo out.

Region-aware stylisation (``segstyle stylize --seg-checkpoint``) runs two networks and a blend in
Python; an edge device should run it as one TensorRT engine instead of juggling two engines and a
host-side blur. This module is that graph:

    logits   = seg(resize(x, short side = base_size)) resized back to H x W   (bilinear)
    stylised = style(x)
    out      = region_blend(x, stylised, logits, class_ids, region, feather)

``region_blend`` is :func:`segstyle.models.region.region_blend`, the very function the
Python path uses, so the mask, the Gaussian feather and the blend cannot drift between the CLI and
the engine. One difference is deliberate and stated: the fused graph shrinks the segmentation
input *without* antialiasing, because TensorRT's Resize has none (``segstyle export lint``
rejects ``antialias=1``); the CLI antialiases. The soft masks can therefore differ slightly at
region edges between ``segstyle stylize`` and the engine. The segmentation *size* is the same in
both: one rule, :func:`segstyle.models.resize.scaled_size` (``tests/test_resize.py``).

Input (N, 3, H, W) 0..1 float RGB, output the same shape. Batch, H and W stay dynamic in ONNX; the
size constraint is the sub-networks': H and W >= 8 (the style network's 9x9 reflection pad), and
the segmentation scale is computed from the input's short side inside the graph. The engine
profile is params ``engine.profiles`` (min 128 px) like every image network.

Built from a checkpoint written by ``segstyle export fuse`` (both source checkpoints' weights,
models, classes and provenance in one file), so every export stage keeps taking one
``--checkpoint``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from segstyle.models.registry import register_model
from segstyle.models.resize import scaled_size
from segstyle.core.errors import SegstyleError

NAME = "fused_region_style"


class FusedRegionStyle(nn.Module):
    """See the module docstring; ``seg_model``/``style_model`` are registry names with their kwargs."""

    def __init__(self, seg_model: str, style_model: str, class_ids: Sequence[int], region: str = "foreground",
                 feather: float = 7.0, base_size: int | None = None, seg_kwargs: dict[str, Any] | None = None,
                 style_kwargs: dict[str, Any] | None = None, classes: Sequence[str] | None = None):
        super().__init__()
        from segstyle.models.registry import build_model, get_model_meta
        from segstyle.models.region import REGIONS, gaussian_kernel

        if get_model_meta(seg_model).task != "segmentation":
            raise SegstyleError(f"fused region style: '{seg_model}' is not a segmentation model")
        if get_model_meta(style_model).task != "style":
            raise SegstyleError(f"fused region style: '{style_model}' is not a style model")
        if region not in REGIONS:
            raise SegstyleError(f"fused region style: region must be one of {', '.join(REGIONS)}, not '{region}'")
        if not class_ids:
            raise SegstyleError("fused region style: no class selected")
        self.seg = build_model(seg_model, **(seg_kwargs or {}), pretrained=False)
        self.style = build_model(style_model, **(style_kwargs or {}), pretrained=False)
        self.class_ids = [int(i) for i in class_ids]
        self.region = region
        self.feather = float(feather)
        self.base_size = int(base_size) if base_size else None
        # a buffer, so it is one initializer in ONNX, not re-derived per call; not persistent: it follows feather
        self.register_buffer("kernel", gaussian_kernel(self.feather) if self.feather > 0 else torch.ones(1),
                             persistent=False)
        # the class ids as a device tensor too: built from the list inside forward, they were a host-to-device
        # copy per call, which breaks CUDA-graph capture (found by benchmarks/gpu_bench.sh on an H200)
        self.register_buffer("class_index", torch.tensor(self.class_ids, dtype=torch.long), persistent=False)

    def seg_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the segmentation network sees: ``x`` with its short side at ``base_size``, by the same
        size rule as :func:`segstyle.pipelines.predict.predict_logits` (:func:`segstyle.models.resize.scaled_size`)."""
        if not self.base_size:
            return x
        h, w = x.shape[-2:]
        return F.interpolate(x, size=scaled_size(h, w, self.base_size), mode="bilinear", align_corners=False)

    def seg_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Segmentation logits at the input's size; the network sees the short side at ``base_size``."""
        h, w = x.shape[-2:]
        out = self.seg(self.seg_input(x))
        out = out["out"] if isinstance(out, dict) else out
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from segstyle.models.region import region_blend

        stylised = self.style(x)
        logits = self.seg_logits(x)
        return region_blend(x, stylised, logits, self.class_index, self.region, self.feather, self.kernel)


@register_model(
    NAME,
    task="style",
    description="segmentation + TransformerNet + feathered blend in one graph (region-aware stylisation)",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    input_range="0..1 float RGB, NCHW, H/W >= 8; output 0..1 float RGB, same shape",
    default_kwargs={"seg_model": "unet_mobilenetv2", "style_model": "transformer_net",
                    "seg_kwargs": {"num_classes": 21}, "class_ids": [15], "region": "foreground",
                    "feather": 7.0, "base_size": 128},
)
def fused_region_style(pretrained: bool = False, **kwargs) -> FusedRegionStyle:
    """Build a :class:`FusedRegionStyle`; its weights only come from ``segstyle export fuse``."""
    if pretrained:
        raise SegstyleError(f"{NAME} has no pretrained weights (fuse two checkpoints with `segstyle export fuse`)")
    return FusedRegionStyle(**kwargs)
