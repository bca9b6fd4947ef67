"""Joint image/mask augmentation on torchvision.transforms.v2 (``tv_tensors.Mask`` does the joint part).

The train preset follows torchvision's ``references/segmentation`` recipe: random resize of the short
side to ``base_size x U(scale)``, horizontal flip, random crop padded with 0 (image) / 255 (mask,
ignored by the loss), optional colour jitter (image only), then a float 0..1 image and an int64 mask.
v2 resizes ``Mask`` inputs with NEAREST, so labels are never blended.

The eval preset does not resize: masks stay exactly as annotated and inference
(:func:`segstyle.pipelines.predict.predict_logits`) resizes the *image* to ``base_size`` and the logits back,
so metrics are computed at the original resolution.

Models normalise inside ``forward`` (see :class:`segstyle.models.registry.ModelMeta`), so no Normalize here.
Randomness comes from torch's RNG: seed the DataLoader with ``generator`` and
:func:`segstyle.core.runtime.seed_worker` and every worker draws a reproducible stream.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

from segstyle.pipelines.config import AugmentConfig, Params
from segstyle.models.classes import IGNORE_INDEX
from segstyle.pipelines.options import params_options

_TO_TENSORS = [
    T.ToDtype(dtype={tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
    T.ToPureTensor(),
]


def train_transforms(cfg: AugmentConfig) -> T.Compose:
    lo, hi = cfg.scale
    steps: list = [
        T.RandomResize(min_size=max(1, int(lo * cfg.base_size)), max_size=max(2, int(hi * cfg.base_size) + 1),
                       antialias=True),
    ]
    if cfg.hflip_prob > 0:
        steps.append(T.RandomHorizontalFlip(cfg.hflip_prob))
    steps.append(T.RandomCrop(cfg.crop_size, pad_if_needed=True,
                              fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}))
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        steps.append(T.ColorJitter(brightness=j, contrast=j, saturation=j))
    return T.Compose(steps + _TO_TENSORS)


def eval_transforms() -> T.Compose:
    """Float 0..1 image and int64 mask at the original size (see module docstring)."""
    return T.Compose(list(_TO_TENSORS))


def preview(params: Params, dataset: str, index: int, n: int, out: Path, data_root: str | None = None) -> Path:
    """Write a grid: the original (image | mask) then ``n`` augmented (image | mask) pairs, as d2l's ``apply``."""
    from segstyle.pipelines.data.datasets import build_dataset
    from segstyle.pipelines.data.palette import colorize
    from segstyle.core.errors import SegstyleError
    from segstyle.core.runtime import seed_everything
    from segstyle.pipelines.visualize import overlay, save_grid

    ds = build_dataset(dataset, data_root or params.data.root, params.data.splits[dataset].train,
                       pets_mode=params.data.pets_mode, voc_mode=params.data.voc_mode)
    if not 0 <= index < len(ds):
        raise SegstyleError(f"--index {index} out of range: {dataset} train split has {len(ds)} samples")
    seed_everything(params.seed)
    image, mask = ds[index]
    tf = train_transforms(params.augment)
    rows = [[image.permute(1, 2, 0).numpy(), colorize(mask.numpy()), overlay(image.permute(1, 2, 0).numpy(), mask.numpy())]]
    for _ in range(n):
        img, m = tf(image, mask)
        rgb = (img.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        mk = m.to(torch.uint8).numpy()
        rows.append([rgb, colorize(mk), overlay(rgb, mk)])
    return save_grid(out, rows, titles=["image", "mask", "overlay"])


@click.group()
def cli() -> None:
    """Joint image/mask augmentation."""


@cli.command("preview")
@click.option("--dataset", type=click.Choice(["voc", "pets"]), required=True)
@click.option("--index", default=0, show_default=True, help="Sample index in the train split.")
@click.option("-n", "n", default=6, show_default=True, type=click.IntRange(1, 64), help="Augmented versions.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("artifacts/augment/preview.png"),
              show_default=True)
@click.option("--data-root", default=None, help="Data root (default: params data.root).")
@params_options
def preview_cmd(params: Params, dataset: str, index: int, n: int, out: Path, data_root: str | None) -> None:
    """Write a grid of N augmented versions of one training image with its mask."""
    path = preview(params, dataset, index, n, out, data_root)
    click.echo(f"wrote {path}")
