"""Get the PyTorch network every export command starts from, plus what it must record about it.

A checkpoint is the normal source: its model name, weights and its *training* provenance (data
version, git commit, digest of the parameters as used, CLI overrides: see
:mod:`segstyle.core.provenance`) travel into the ONNX metadata, labelled apart from the export's
own parameters. Without one, ``--model NAME`` builds the registered model with seeded fresh
weights: useless for predictions, but enough to prove the export machinery (parity, lint, bundle)
for every architecture in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from segstyle.core.errors import SegstyleError
from segstyle.core.hashing import sha256_file
from segstyle.models.classes import class_names


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
    noise_dim: int | None = None  # set for input_kind "noise" networks: their input is (N, noise_dim)


def load_net(model: str | None, checkpoint: str | Path | None, *, seed: int = 0) -> LoadedNet:
    """Build the network from ``checkpoint`` (checked against ``model`` when both are given) or fresh.

    Raises :class:`SegstyleError` for a missing/corrupt checkpoint, one for another model, or an
    unknown model name: one line each.
    """
    from segstyle.models import build_model, get_model_meta
    from segstyle.models.checkpoint import load_checkpoint, model_from_checkpoint
    from segstyle.core.provenance import checkpoint_provenance, data_version, git_commit
    from segstyle.core.runtime import seed_everything

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
    loaded.noise_dim = noise_dim(loaded.model, loaded.model_kwargs)
    loaded.net.eval()
    return loaded


def export_output(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The one tensor deployment cares about: ``out`` logits of a segmentation dict, else the output.

    A network whose training output is not what a device should receive declares
    ``export_postprocess`` (the DCGAN generator maps tanh's -1..1 to 0..1 RGB); it is applied here,
    so the ONNX graph, parity, validation and the bundle's golden outputs all see the same tensor.
    """
    y = net(x)
    y = y["out"] if isinstance(y, dict) else y
    post = getattr(net, "export_postprocess", None)
    return post(y) if post is not None else y


def noise_dim(model: str, model_kwargs: dict[str, Any] | None = None) -> int | None:
    """Noise length of a ``noise`` input network (the checkpoint's ``nz`` wins over the registry's); None for images."""
    from segstyle.models import get_model_meta

    meta = get_model_meta(model)
    if meta.input_kind != "noise":
        return None
    return int((model_kwargs or {}).get("nz") or meta.noise_dim)


def example_input(nz: int | None, batch: int, size: Sequence[int] | None, generator: torch.Generator) -> torch.Tensor:
    """A seeded input of the network's declared kind: N(0, 1) noise (N, ``nz``) when ``nz`` is set
    (:attr:`LoadedNet.noise_dim`), else 0..1 images (N, 3, H, W).

    Why one function: export, parity, the FP16 comparison and the bundle each feed the network,
    and a noise network given an image (or the reverse) fails deep inside torch, not here.
    """
    if nz is not None:
        return torch.randn(batch, int(nz), generator=generator)
    h, w = (int(v) for v in size)
    return torch.rand(batch, 3, h, w, generator=generator)


def noise_batch(nz: int, batch: int, seed: int) -> torch.Tensor:
    """The fixed (``batch``, ``nz``) N(0, 1) noise of a seed: a noise network's golden inputs (bundle)
    and validation inputs are this one batch, so both sides of a comparison see the same noise."""
    return example_input(int(nz), batch, None, torch.Generator().manual_seed(seed))


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
