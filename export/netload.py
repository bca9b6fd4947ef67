"""Get the PyTorch network every export command starts from, plus what it must record about it.

A checkpoint is the normal source: its model name, weights and its *training* provenance (data
version, git commit, digest of the parameters as used, CLI overrides: see
:mod:`segstyle.pipelines.provenance`) travel into the ONNX metadata, labelled apart from the export's
own parameters. Without one, ``--model NAME`` builds the registered model with seeded fresh
weights: useless for predictions, but enough to prove the export machinery (parity, lint, bundle)
for every architecture in the registry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from segstyle.pipelines.errors import SegstyleError


@dataclass
class LoadedNet:
    """An eval-mode CPU network and the facts export needs about it."""

    net: nn.Module
    model: str
    task: str
    model_kwargs: dict[str, Any]
    classes: list[str] = field(default_factory=list)
    data_version: str = "untracked"
    git_commit: str = "unknown"
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    training: dict[str, Any] | None = None  # the checkpoint's training moment (None: fresh seeded weights)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed (engines and ONNX files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def class_names(num_classes: int, explicit: list[str] | None = None) -> list[str]:
    """Class names for a segmentation head with ``num_classes`` outputs.

    Checkpoints may carry their own ``classes``; otherwise the count identifies the dataset
    (21 = VOC, 3 = Pets trimap, 2 = Pets binary), the only label sets segstyle trains on.
    """
    from segstyle.pipelines.data.palette import PETS_BINARY_CLASSES, PETS_TRIMAP_CLASSES, VOC_CLASSES

    if explicit:
        return list(explicit)
    known = {len(VOC_CLASSES): VOC_CLASSES, len(PETS_TRIMAP_CLASSES): PETS_TRIMAP_CLASSES,
             len(PETS_BINARY_CLASSES): PETS_BINARY_CLASSES}
    return list(known.get(num_classes, [f"class_{i}" for i in range(num_classes)]))


def load_net(model: str | None, checkpoint: str | Path | None, *, seed: int = 0) -> LoadedNet:
    """Build the network from ``checkpoint`` (checked against ``model`` when both are given) or fresh.

    Raises :class:`SegstyleError` for a missing/corrupt checkpoint, one for another model, or an
    unknown model name: one line each.
    """
    from segstyle.models import build_model, get_model_meta
    from segstyle.pipelines.checkpoint import load_checkpoint, model_from_checkpoint
    from segstyle.pipelines.provenance import checkpoint_provenance, data_version, git_commit
    from segstyle.pipelines.runtime import seed_everything

    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint, model=model)
        net = model_from_checkpoint(ckpt)
        meta = get_model_meta(ckpt["model"])
        training = checkpoint_provenance(ckpt)
        loaded = LoadedNet(
            net=net, model=ckpt["model"], task=meta.task, model_kwargs=dict(ckpt["model_kwargs"]),
            data_version=training["data_version"], git_commit=training["git_commit"],
            checkpoint=str(checkpoint), checkpoint_sha256=sha256_file(checkpoint), training=training,
        )
        explicit = ckpt.get("classes")
    elif model is not None:
        meta = get_model_meta(model)
        seed_everything(seed)
        net = build_model(model, pretrained=False).eval()
        loaded = LoadedNet(net=net, model=model, task=meta.task, model_kwargs=dict(meta.default_kwargs),
                           data_version=data_version(), git_commit=git_commit())
        explicit = None
    else:
        raise SegstyleError("give --checkpoint FILE or --model NAME")
    if loaded.task == "segmentation":
        n = loaded.model_kwargs.get("num_classes")
        if n is None:  # ask the network itself rather than guess
            meta = get_model_meta(loaded.model)
            s = max(32, meta.size_divisor)
            with torch.no_grad():
                n = int(export_output(loaded.net, torch.zeros(1, 3, s, s)).shape[1])
        loaded.classes = class_names(int(n), list(explicit) if explicit else None)
    loaded.net.eval()
    return loaded


def export_output(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The one tensor deployment cares about: ``out`` logits of a segmentation dict, else the output."""
    y = net(x)
    return y["out"] if isinstance(y, dict) else y


class ExportWrapper(nn.Module):
    """Single-output view of a registered model for export and benchmarking.

    Segmentation models return ``{"out": logits, "aux": ...}``; the auxiliary head is a training
    device, so the deployed graph keeps ``out`` only (TensorRT then prunes the aux branch entirely).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return export_output(self.net, x)
