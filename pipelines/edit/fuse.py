"""``segstyle export fuse``: one checkpoint for the fused region-style network from two trained ones.

The graph itself is :class:`segstyle.models.fused_region_style.FusedRegionStyle`; this is the
pipeline step that reads the two checkpoints, picks the classes and records both provenances.
"""

from __future__ import annotations

from typing import Any, Sequence

from segstyle.core.errors import SegstyleError
from segstyle.core.hashing import sha256_file
from segstyle.core.provenance import checkpoint_provenance
from segstyle.models.checkpoint import load_checkpoint, model_from_checkpoint
from segstyle.models.fused_region_style import NAME, FusedRegionStyle
from segstyle.pipelines.edit.masks import checkpoint_classes, default_foreground, resolve_classes
from segstyle.pipelines.predict import base_size_of


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
