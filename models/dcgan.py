"""DCGAN (Radford, Metz, Chintala 2015) for 64x64 RGB images: generator and discriminator.

The paper's architecture guidelines, as in pytorch/examples ``dcgan``:

- no pooling: the discriminator downsamples with stride-2 convolutions, the generator upsamples
  with stride-2 transposed convolutions (4x4 kernels, padding 1);
- batch norm in both networks, except the generator's output layer and the discriminator's
  input layer;
- ReLU in the generator (tanh at the output), LeakyReLU(0.2) in the discriminator;
- weights from N(0, 0.02), batch-norm scales from N(1, 0.02) (:func:`init_weights`).

Training (``segstyle train-gan``) uses Adam with lr 2e-4 and beta1 0.5, also from the paper.

I/O conventions:

- generator input: a noise batch (N, nz) (or (N, nz, 1, 1)), float32 from N(0, 1); output
  (N, 3, 64, 64) in -1..1 (tanh). Consumers map to pixels with ``(y + 1) / 2 * 255``; the exported
  ONNX graph does the ``(y + 1) / 2`` itself (``export_postprocess``) and outputs 0..1. The
  registry records ``input_kind="noise"`` and ``noise_dim``, so export and validation feed it a
  fixed noise batch instead of an image.
- discriminator input: (N, 3, 64, 64) in -1..1; output (N,) logits (no sigmoid: training uses
  ``BCEWithLogitsLoss``, which is the numerically stable form). It only exists to train the
  generator and is registered ``deployable=False``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from segstyle.models.registry import register_model
from segstyle.core.errors import SegstyleError

IMAGE_SIZE = 64


def init_weights(m: nn.Module) -> None:
    """The paper's initialisation: conv weights N(0, 0.02); batch-norm weight N(1, 0.02), bias 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """(N, nz) noise -> (N, 3, 64, 64) image in -1..1: project to 4x4, then four x2 upsamplings."""

    def __init__(self, nz: int = 100, ngf: int = 64, channels: int = 3):
        super().__init__()
        self.nz = nz
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),        # 4
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),   # 8
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),   # 16
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),           # 32
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1, bias=False), nn.Tanh(),                                   # 64
        )
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            z = z[:, :, None, None]
        return self.net(z)

    @staticmethod
    def export_postprocess(y: torch.Tensor) -> torch.Tensor:
        """-1..1 (tanh) -> 0..1 RGB: the deployed graph ends here, so a device receives an image in
        the same 0..1 range as every other segstyle image output, and validation judges it with
        the same PSNR/SSIM on 0..1 (:func:`segstyle.export.backend.pyt.loader.export_output` applies it)."""
        return (y + 1.0) * 0.5


class Discriminator(nn.Module):
    """(N, 3, 64, 64) image in -1..1 -> (N,) real/fake logits: four stride-2 convs, then 4x4 -> 1."""

    def __init__(self, ndf: int = 64, channels: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),                                  # 32
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),           # 16
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),       # 8
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True),       # 4
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),                                                               # 1
        )
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"the DCGAN discriminator takes {IMAGE_SIZE}x{IMAGE_SIZE} images, got {tuple(x.shape[-2:])}")
        return self.net(x).flatten()


def _no_weights(name: str) -> None:
    raise SegstyleError(f"{name} has no published weights (train one with `segstyle train-gan`)")


@register_model(
    "dcgan_generator",
    task="generation",
    description="DCGAN generator (Radford et al. 2015): noise (N, nz) -> 64x64 RGB in -1..1",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    input_range="noise (N, nz) float32 ~ N(0, 1); output (N, 3, 64, 64) float RGB in 0..1 (exported graph: tanh mapped)",
    input_kind="noise",
    noise_dim=100,
    export_size=(IMAGE_SIZE, IMAGE_SIZE),
    engine_profile={"min": (1,), "opt": (16,), "max": (64,)},
    default_kwargs={"nz": 100, "ngf": 64},
)
def dcgan_generator(pretrained: bool = False, **kwargs) -> Generator:
    """Build a :class:`Generator` (``nz``: noise size, ``ngf``: width)."""
    if pretrained:
        _no_weights("dcgan_generator")
    return Generator(**kwargs)


@register_model(
    "dcgan_discriminator",
    task="generation",
    description="DCGAN discriminator (training only): 64x64 RGB in -1..1 -> real/fake logit",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    input_range="(N, 3, 64, 64) float in -1..1; output (N,) logits",
    export_size=(IMAGE_SIZE, IMAGE_SIZE),
    deployable=False,
    default_kwargs={"ndf": 64},
)
def dcgan_discriminator(pretrained: bool = False, **kwargs) -> Discriminator:
    """Build a :class:`Discriminator` (``ndf``: width)."""
    if pretrained:
        _no_weights("dcgan_discriminator")
    return Discriminator(**kwargs)
