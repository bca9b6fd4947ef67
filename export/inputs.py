"""The inputs a backend is validated on, as data: images with optional labels, or a fixed noise batch.

A small module of its own so that whoever *reads* the inputs (the pipeline:
:mod:`segstyle.pipelines.validation_inputs`) and whoever *uses* them (validation, the bundle)
share the types without importing each other's code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass
class Sample:
    """One validation image: float 0..1 (3, H, W), its label mask (H, W) or None, and its name."""

    name: str
    image: torch.Tensor
    mask: torch.Tensor | None = None


@dataclass
class Inputs:
    samples: list[Sample]
    source: str
    labels: bool


def as_sample(name: str, image, mask) -> Sample:
    img = torch.as_tensor(image)
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    return Sample(name, img.float().contiguous(), None if mask is None else torch.as_tensor(mask).to(torch.uint8))


def noise_inputs(noise_dim: int, count: int, seed: int) -> Inputs:
    """``count`` fixed N(0, 1) noise vectors (seeded) for a noise network, each run as a batch of 1.

    A generator has no validation split: its "images" are a fixed noise batch, the same on every
    run (the seed is the params seed), so a precision regression shows up as a PSNR change.
    """
    from segstyle.export.backend.pyt.loader import noise_batch

    z = noise_batch(noise_dim, count, seed)
    return Inputs([Sample(f"z{i:03d}", z[i]) for i in range(count)],
                  f"fixed noise batch ({count} x {noise_dim}, N(0,1), seed {seed})", False)
