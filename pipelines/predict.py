"""Inference on images of any size, and ``segstyle predict IMAGES... --checkpoint C --out-dir DIR``.

:func:`predict_logits` is the one inference path used by validation, evaluation and prediction:
the image is resized so its short side is the training ``base_size`` (the scale the network saw;
the size rule is :func:`segstyle.models.resize.scaled_size`, shared with the fused graph),
and the logits are resized back to the original size, so masks are compared or written at full
resolution whatever the input size.

A foreground network (one logit: Pets ``binary``, VOC ``person``) is a matting network too, so
``predict`` also writes its soft alpha matte (``sigmoid(logit)`` as 8-bit grey, the mask is
alpha > 0.5) and a cut-out: the photo as RGBA with that alpha, which drops onto any background.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F

from segstyle.models.classes import label_map
from segstyle.core.errors import SegstyleError
from segstyle.models.resize import scaled_size


def predict_logits(model: torch.nn.Module, image: torch.Tensor, base_size: int | None) -> torch.Tensor:
    """``image``: (N, 3, H, W) float 0..1 on the model's device; returns (N, C, H, W) logits."""
    h, w = image.shape[-2:]
    x = image
    if base_size:
        size = scaled_size(h, w, base_size)
        if size != (h, w):  # antialiased when shrinking (the fused graph cannot: TensorRT's Resize has none)
            x = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=base_size < min(h, w))
    out = model(x)["out"]
    if out.shape[-2:] != (h, w):
        out = F.interpolate(out.float(), size=(h, w), mode="bilinear", align_corners=False)
    return out


def alpha_matte(logits: torch.Tensor) -> np.ndarray:
    """(H, W) uint8 alpha of a one-logit output (1, 1, H, W): ``round(255 * sigmoid(logit))``.

    Rounded, so the matte and the mask agree: alpha >= 128 where the logit is > 0 and <= 127 where
    it is < 0 (a logit of exactly 0 is 128 in the matte and background in the mask).
    """
    if logits.shape[:2] != (1, 1):
        raise ValueError(f"an alpha matte needs (1, 1, H, W) logits, got {tuple(logits.shape)}")
    return (torch.sigmoid(logits[0, 0].float()) * 255).round().to(torch.uint8).cpu().numpy()


def load_for_inference(checkpoint: str | Path, device: torch.device):
    """(model in eval mode on ``device``, checkpoint dict) for a segmentation checkpoint."""
    from segstyle.models.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint, task="segmentation")
    return model_from_checkpoint(ckpt).to(device).eval(), ckpt


def base_size_of(ckpt: dict) -> int | None:
    try:
        return int(ckpt["params"]["augment"]["base_size"])
    except (KeyError, TypeError, ValueError):
        return None


@torch.inference_mode()
def predict_files(images: list[Path], checkpoint: Path, out_dir: Path, device: str | None = None,
                  base_size: int | None = None) -> list[Path]:
    """Write ``<stem>_mask.png`` (VOC colours) and ``<stem>_overlay.png`` per image, and for a
    one-logit (foreground) checkpoint ``<stem>_alpha.png`` and ``<stem>_cutout.png`` (RGBA); return the paths."""
    from tqdm import tqdm

    from segstyle.pipelines.data.palette import colorize
    from segstyle.core.io import read_image, write_image
    from segstyle.core.runtime import pick_device
    from segstyle.pipelines.visualize import overlay

    dev = pick_device(device)
    model, ckpt = load_for_inference(checkpoint, dev)
    size = base_size or base_size_of(ckpt)
    stems = [p.stem for p in images]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise SegstyleError(f"several input images share the name '{dupes[0]}': outputs would overwrite each other")
    written = []
    for path in tqdm(images, desc="predict", unit="img"):
        rgb = read_image(path)  # one-line SegstyleError for missing/corrupt files
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(dev).float().div_(255)
        logits = predict_logits(model, x, size)
        pred = label_map(logits, 1)[0].to(torch.uint8).cpu().numpy()
        written.append(write_image(out_dir / f"{path.stem}_mask.png", colorize(pred)))
        if logits.shape[1] == 1:
            alpha = alpha_matte(logits)
            written.append(write_image(out_dir / f"{path.stem}_alpha.png", alpha))
            written.append(write_image(out_dir / f"{path.stem}_cutout.png", np.dstack([rgb, alpha])))
        written.append(write_image(out_dir / f"{path.stem}_overlay.png",
                                   np.concatenate([rgb, overlay(rgb, pred)], axis=1)))
    return written


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path), help="Segmentation checkpoint.")
@click.option("--out-dir", default=Path("artifacts/predict"), show_default=True, type=click.Path(path_type=Path))
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available).")
@click.option("--base-size", default=None, type=click.IntRange(min=1),
              help="Short side the image is resized to for the network (default: the checkpoint's).")
def cli(images: tuple[Path, ...], checkpoint: Path, out_dir: Path, device: str | None, base_size: int | None) -> None:
    """Predict masks for IMAGES: writes <stem>_mask.png and <stem>_overlay.png (image | overlay); a
    foreground (one-logit) checkpoint also writes <stem>_alpha.png (soft matte) and <stem>_cutout.png (RGBA)."""
    missing = [p for p in images if not p.is_file()]
    if missing:
        raise SegstyleError(f"{missing[0]}: no such image file")
    paths = predict_files(list(images), checkpoint, out_dir, device, base_size)
    click.echo(f"wrote {len(paths)} files to {out_dir}")
