"""Segmentation + style network + feathered blend as ONE module: one photo in, one photo out.

Region-aware stylisation (``segstyle stylize --seg-checkpoint``) runs two networks and a blend in
Python; an edge device should run it as one TensorRT engine instead of juggling two engines and a
host-side blur. This module is that graph:

    logits   = seg(resize(x, short side = base_size)) resized back to H x W   (bilinear)
    stylised = style(x)
    out      = region_blend(x, stylised, logits, class_ids, region, feather)

``region_blend`` is :func:`segstyle.pipelines.edit.region.region_blend`, the very function the
Python path uses, so the mask, the Gaussian feather and the blend cannot drift between the CLI and
the engine. One difference is deliberate and stated: the fused graph shrinks the segmentation
input *without* antialiasing, because TensorRT's Resize has none (``segstyle export lint``
rejects ``antialias=1``); the CLI antialiases. The soft masks can therefore differ slightly at
region edges between ``segstyle stylize`` and the engine.

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
from segstyle.pipelines.errors import SegstyleError

NAME = "fused_region_style"


class FusedRegionStyle(nn.Module):
    """See the module docstring; ``seg_model``/``style_model`` are registry names with their kwargs."""

    def __init__(self, seg_model: str, style_model: str, class_ids: Sequence[int], region: str = "foreground",
                 feather: float = 7.0, base_size: int | None = None, seg_kwargs: dict[str, Any] | None = None,
                 style_kwargs: dict[str, Any] | None = None, classes: Sequence[str] | None = None):
        super().__init__()
        from segstyle.models.registry import build_model, get_model_meta
        from segstyle.pipelines.edit.region import REGIONS, gaussian_kernel

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

    def seg_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Segmentation logits at the input's size; the network sees the short side at ``base_size``."""
        h, w = x.shape[-2:]
        y = x
        if self.base_size:
            short = min(h, w)
            nh = (h * self.base_size + short // 2) // short
            nw = (w * self.base_size + short // 2) // short
            y = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        out = self.seg(y)
        out = out["out"] if isinstance(out, dict) else out
        return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from segstyle.pipelines.edit.region import region_blend

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


def fuse_checkpoints(seg_checkpoint, style_checkpoint, *, classes: str | Sequence[str] | None = None,
                     region: str = "foreground", feather: float = 7.0) -> dict[str, Any]:
    """One checkpoint dict for :class:`FusedRegionStyle` from a segmentation and a style checkpoint.

    Both networks' weights go in as they are (the fused net's ``state_dict`` is ``seg.*`` +
    ``style.*``), so the fused graph computes exactly what the two networks compute. ``classes``
    (names from the segmentation checkpoint; default every non-background class, as ``segstyle
    stylize`` does) and ``base_size`` (the segmentation network's training scale) become model
    kwargs, and each source's training provenance and sha256 is kept under ``sources``: the
    fused engine traces back to both trainings.
    """
    from segstyle.export.netload import sha256_file
    from segstyle.pipelines.checkpoint import load_checkpoint, model_from_checkpoint
    from segstyle.pipelines.edit.masks import checkpoint_classes, default_foreground, resolve_classes
    from segstyle.pipelines.predict import base_size_of
    from segstyle.pipelines.provenance import checkpoint_provenance

    seg_ck = load_checkpoint(seg_checkpoint, task="segmentation")
    style_ck = load_checkpoint(style_checkpoint, task="style")
    if style_ck["model"] == NAME:
        raise SegstyleError(f"{style_checkpoint}: already a fused checkpoint; give the style network's")
    names = checkpoint_classes(seg_ck, seg_checkpoint)
    ids = resolve_classes(classes, names) if classes else default_foreground(names)
    if feather < 0:
        raise SegstyleError(f"--feather must be >= 0 px, got {feather:g}")
    kwargs = {"seg_model": seg_ck["model"], "seg_kwargs": dict(seg_ck["model_kwargs"]),
              "style_model": style_ck["model"], "style_kwargs": dict(style_ck["model_kwargs"]),
              "class_ids": ids, "classes": [names[i] for i in ids], "region": region, "feather": float(feather),
              "base_size": base_size_of(seg_ck)}
    fused = FusedRegionStyle(**kwargs)
    fused.seg.load_state_dict(model_from_checkpoint(seg_ck).state_dict())
    fused.style.load_state_dict(model_from_checkpoint(style_ck).state_dict())
    sources = {}
    for role, ck, path in (("segmentation", seg_ck, seg_checkpoint), ("style", style_ck, style_checkpoint)):
        sources[role] = {"checkpoint": str(path), "sha256": sha256_file(path), "model": ck["model"],
                         **checkpoint_provenance(ck)}
    one = lambda key: (sources["segmentation"][key] if sources["segmentation"][key] == sources["style"][key]  # noqa: E731
                       else f"segmentation {sources['segmentation'][key]}; style {sources['style'][key]}")
    return {"model": NAME, "model_kwargs": kwargs, "state_dict": fused.state_dict(),
            "params": {"segmentation": seg_ck["params"], "style": style_ck["params"]},
            "data_version": one("data_version"), "git_commit": one("git_commit"), "sources": sources,
            "seg_classes": list(names)}
