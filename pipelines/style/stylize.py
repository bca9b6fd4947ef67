"""``segstyle stylize``: stylise image files with a trained network or the Gatys optimisation.

Network method (``--checkpoint C``): one forward pass per image at its original size; the output
file has exactly the input's width and height (odd sizes too), 8-bit RGB clamped to 0..255, in the
input's format. ``--max-side N`` runs the network on a downscaled copy (peak memory grows with
pixels: ~0.95 GB per megapixel on CPU, see benchmarks/style_stylize.md) and resizes the result
back to the exact input size.

Region-aware (``--seg-checkpoint SEG --region foreground|background [--classes ..] [--feather 7]``):
only the segmented region is stylised, blended with a feathered mask
(:mod:`segstyle.pipelines.edit.region`).

Optimisation method (``--method optimize --style S``): Gatys/d2l per image (slow; see
:mod:`segstyle.pipelines.style.gatys`); writes the result at the working size (``--max-side``, default
``gatys.max_side``) plus ``<name>_loss.png`` with the loss curves.

Everything that can be wrong with the inputs (unreadable or non-RGB images, a missing style image,
a segmentation checkpoint, two inputs mapping to one output) is checked before the first file is
written, so bad input ends in one ``segstyle: error:`` line and leaves no output behind.
"""

from __future__ import annotations

from pathlib import Path

import click
import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from segstyle.core.errors import SegstyleError, UsageError
from segstyle.pipelines.options import params_options
from segstyle.pipelines.style.images import IMAGE_SUFFIXES, fit_max_side, read_rgb, to_tensor, to_uint8

MIN_SIDE = 8  # below this the 9x9 reflection-padded conv cannot run; such images are edge-padded


def stylize_array(net: torch.nn.Module, rgb: np.ndarray, *, max_side: int | None = None,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """Run the style network on one RGB ``uint8`` image; returns ``uint8`` of the same (H, W, 3)."""
    h, w = rgb.shape[:2]
    work = fit_max_side(rgb, max_side)
    wh, ww = work.shape[:2]
    ph, pw = max(0, MIN_SIDE - wh), max(0, MIN_SIDE - ww)
    if ph or pw:
        work = np.pad(work, ((0, ph), (0, pw), (0, 0)), mode="edge")
    with torch.inference_mode():
        y = net(to_tensor(work).to(device))[..., :wh, :ww].clamp_(0, 1)
    if (wh, ww) == (h, w):
        return to_uint8(y)
    out = y[0].permute(1, 2, 0).float().cpu().numpy()
    out = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def output_paths(images: list[Path], out_dir: Path) -> list[Path]:
    """``out_dir/<stem><suffix>`` per input (PNG when the suffix is not an image format we write)."""
    outs = []
    for p in images:
        suffix = p.suffix.lower() if p.suffix.lower() in IMAGE_SUFFIXES else ".png"
        outs.append(out_dir / f"{p.stem}{suffix}")
    seen: dict[Path, Path] = {}
    for src, dst in zip(images, outs):
        if dst in seen:
            raise UsageError(f"{seen[dst]} and {src} would both be written to {dst}; stylise them separately")
        if dst.resolve() == src.resolve():
            raise UsageError(f"{dst} would overwrite its input; choose another --out-dir")
        seen[dst] = src
    return outs


def check_inputs(images: list[Path]) -> list[tuple[int, int]]:
    """Decode every input once (strict RGB) so bad files fail before any output exists."""
    sizes = []
    for p in tqdm(images, desc="checking inputs", unit="img", disable=len(images) < 8, leave=False):
        sizes.append(read_rgb(p, "input").shape[:2])
    return sizes


def run_network(images: list[Path], checkpoint: Path, out_dir: Path, *, max_side: int | None,
                device: torch.device, seg_checkpoint: Path | None = None, region: str = "foreground",
                classes: str | None = None, feather: float = 7.0) -> list[Path]:
    """Stylise each image; with ``seg_checkpoint`` only its ``region`` (see :mod:`segstyle.pipelines.edit.region`)."""
    from segstyle.models.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint, task="style")
    seg = None
    if seg_checkpoint is not None:
        from segstyle.pipelines.edit.masks import checkpoint_classes, default_foreground, resolve_classes
        from segstyle.pipelines.predict import base_size_of, load_for_inference

        names = checkpoint_classes(load_checkpoint(seg_checkpoint, task="segmentation"), seg_checkpoint)
        ids = resolve_classes(classes, names) if classes else default_foreground(names)
        seg, seg_ck = load_for_inference(seg_checkpoint, device)
    outs = output_paths(images, out_dir)
    check_inputs(images)
    net = model_from_checkpoint(ckpt).to(device)
    from segstyle.core.io import write_image

    for src, dst in zip(tqdm(images, desc="stylize", unit="img", disable=len(images) < 2), outs):
        rgb = read_rgb(src, "input")
        styled = stylize_array(net, rgb, max_side=max_side, device=device)
        if seg is not None:
            from segstyle.pipelines.edit.region import blend, feathered_alpha, region_mask

            mask = region_mask(seg, rgb, ids, region, base_size=base_size_of(seg_ck), device=device)
            styled = blend(rgb, styled, feathered_alpha(mask, feather))
        write_image(dst, styled)
    return outs


def run_optimize(images: list[Path], style: Path, out_dir: Path, params, *, steps: int | None,
                 max_side: int | None, pretrained: bool, device: torch.device) -> list[Path]:
    from segstyle.models.perceptual_loss import LAYERS, VGGFeatures
    from segstyle.core.io import write_image
    from segstyle.pipelines.style.gatys import check_working_size, gatys
    from segstyle.pipelines.visualize import plot_curves

    style_rgb = read_rgb(style, "style image")
    outs = output_paths(images, out_dir)
    cfg = params.gatys
    for src, (h, w) in zip(images, check_inputs(images)):
        s = min(1.0, (max_side or cfg.max_side) / max(h, w))
        try:
            check_working_size(max(1, round(h * s)), max(1, round(w * s)), cfg.vgg)
        except SegstyleError as e:
            raise SegstyleError(f"{src}: {e}") from None
    vgg = VGGFeatures(cfg.vgg, (*LAYERS[cfg.vgg][0], LAYERS[cfg.vgg][1]), pretrained=pretrained)
    for src, dst in zip(tqdm(images, desc="gatys", unit="img", disable=len(images) < 2), outs):
        res = gatys(read_rgb(src, "input"), style_rgb, cfg, steps=steps, max_side=max_side,
                    device=device, vgg=vgg, desc=src.name)
        write_image(dst, res.image)
        plot_curves(dst.with_name(f"{dst.stem}_loss.png"), res.history, xlabel="step", logy=True,
                    title=f"Gatys {src.name} / {style.name}: total {res.history['total'][0]:.3g} -> "
                          f"{res.history['total'][-1]:.3g}")
    return outs


@click.command("stylize")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["network", "optimize"]), default=None,
              help="network (needs --checkpoint) or optimize (Gatys, needs --style); default: from the options given.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="train-style checkpoint.pt.")
@click.option("--style", type=click.Path(path_type=Path), default=None, help="Style image (optimize).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts/stylized"),
              show_default=True)
@click.option("--max-side", type=click.IntRange(min=MIN_SIDE), default=None,
              help="network: run on a copy downscaled to this longer side, then resize back to the input size; "
                   "optimize: working size (default gatys.max_side).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="optimize: steps (default gatys.steps).")
@click.option("--pretrained/--no-pretrained", default=None,
              help="optimize: ImageNet VGG weights (default: style.pretrained of the profile).")
@click.option("--seg-checkpoint", type=click.Path(path_type=Path), default=None,
              help="network: segmentation checkpoint; stylise only --region of its prediction.")
@click.option("--region", type=click.Choice(["foreground", "background"]), default="foreground", show_default=True,
              help="With --seg-checkpoint: stylise the --classes pixels (foreground) or everything else.")
@click.option("--classes", default=None,
              help="With --seg-checkpoint: comma-separated class names (default: every non-background class).")
@click.option("--feather", type=click.FloatRange(min=0), default=7.0, show_default=True,
              help="With --seg-checkpoint: Gaussian sigma (px) of the soft edge between stylised and original.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available).")
@params_options
def cli(images: tuple[Path, ...], method: str | None, checkpoint: Path | None, style: Path | None, out_dir: Path,
        max_side: int | None, steps: int | None, pretrained: bool | None, seg_checkpoint: Path | None, region: str,
        classes: str | None, feather: float, device: str | None, params) -> None:
    """Stylise IMAGES; outputs go to OUT_DIR/<name> with the input's format."""
    from segstyle.core.runtime import pick_device, seed_everything

    if method is None:
        if checkpoint is not None and style is not None:
            raise UsageError("give --checkpoint (network) or --style (optimize), not both, or set --method")
        method = "optimize" if style is not None else "network"
    if method == "network":
        if checkpoint is None:
            raise UsageError("--method network needs --checkpoint (a train-style checkpoint.pt)")
        if style is not None or steps is not None:
            raise UsageError("--style/--steps apply to --method optimize only")
    else:
        if style is None:
            raise UsageError("--method optimize needs --style IMAGE")
        if checkpoint is not None:
            raise UsageError("--checkpoint applies to --method network only")
    if method != "network" and seg_checkpoint is not None:
        raise UsageError("--seg-checkpoint (region-aware stylisation) applies to --method network only")
    if seg_checkpoint is None and classes:
        raise UsageError("--classes needs --seg-checkpoint")
    seed_everything(params.seed)
    dev = pick_device(device)
    paths = list(images)
    if method == "network":
        outs = run_network(paths, checkpoint, out_dir, max_side=max_side, device=dev, seg_checkpoint=seg_checkpoint,
                           region=region, classes=classes, feather=feather)
    else:
        pre = params.style.pretrained if pretrained is None else pretrained
        outs = run_optimize(paths, style, out_dir, params, steps=steps, max_side=max_side, pretrained=pre, device=dev)
    click.echo(f"wrote {len(outs)} image(s) to {out_dir}")
