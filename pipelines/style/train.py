"""``segstyle train-style``: train ``transformer_net`` for one style image (Johnson et al.).

Content images default to the VOC and Pet images under ``data.root`` (any photos work: the network
learns the style, not the classes); ``--content-dir`` replaces them. Each step takes random
``style.image_size`` crops (short side resized to the crop size, random crop, horizontal flip),
runs the network and back-propagates :class:`segstyle.models.perceptual_loss.PerceptualLoss`.

Outputs in ``--out`` (default ``artifacts/style``):

- ``checkpoint.pt``: written atomically after every epoch; holds the model, optimizer, AMP scaler,
  RNG state, loss history and the style image's name and sha256, so ``--resume`` continues exactly
  where it stopped (and refuses a different style image).
- ``metrics.csv``: one row per step, ``step,epoch,content,style,tv,total`` (weighted terms; total is
  their sum), for ``dvc plots``; ``loss.png`` plots the same; ``record.json`` the summary (first/last
  style loss, the relative reduction, style image and sha256, loss net, device) and ``metrics.json`` its
  figures only (the DVC metrics file).
- ``samples/step_NNNNNN.png``: every ``style.sample_every`` steps, a grid of fixed content crops
  and their current stylisation (plus the style image).
- ``stylized/*.jpg``: at the end, a few content images stylised at their own size (max side 512).

The loss network is params ``style.loss_net``: ImageNet VGG (``vgg`` + ``style.pretrained``, the
full profile) or random multi-scale filter banks (``random``, the demo profile: no weights to
download, and its Gram statistics still carry the style's colours and strokes; see
:mod:`segstyle.models.random_features` and benchmarks/style_quality.md for what it achieves on real
photos). No cached output (checkpoint, samples, loss.png) holds a wall-clock value, so a rerun with
the same inputs gives the same bytes on the same machine; the run time goes to ``metrics.json``
(``cache: false``).
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np
import torch
from tqdm.auto import tqdm

from segstyle.core.errors import SegstyleError
from segstyle.pipelines.options import params_options

if TYPE_CHECKING:
    from segstyle.models.perceptual_loss import LossTerms

COLUMNS = ("step", "epoch", "content", "style", "tv", "total")
N_SAMPLES = 4          # content crops shown in the sample grids
N_STYLIZED = 4         # full images stylised at the end
STYLE_FIGURES = ("seconds", "style_reduction", "style_last", "total_last")  # record.json keys that are DVC metrics
STYLIZED_MAX_SIDE = 512


class ContentImages(torch.utils.data.Dataset):
    """Random ``size`` x ``size`` crops of content photos as float 0..1 (3, size, size) tensors.

    Each photo's short side is first resized to ``resize`` (default ``size``: the crop then spans
    the whole short side, fast_neural_style's recipe). A larger ``resize`` trains on crops at the
    scale the network will see at inference (a whole photo a few hundred pixels wide) while each
    step stays as cheap as a small crop.
    """

    def __init__(self, files: list[Path], size: int, train: bool = True, resize: int | None = None):
        from torchvision.transforms import v2

        self.files = files
        crop = v2.RandomCrop(size) if train else v2.CenterCrop(size)
        flips = [v2.RandomHorizontalFlip()] if train else []
        self.tf = v2.Compose([v2.Resize(max(size, resize or size), antialias=True), crop, *flips,
                              v2.ToDtype(torch.float32, scale=True)])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from torchvision import tv_tensors

        from segstyle.core.io import read_image

        rgb = read_image(self.files[i])  # permissive: grey/RGBA content photos are fine as content
        return self.tf(tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1)))


def spread(files: list[Path], n: int) -> list[Path]:
    """``n`` files evenly spaced through the sorted list (so both datasets show up in the pictures)."""
    return [files[i * len(files) // n] for i in range(n)] if len(files) > n else list(files)


def load_style(path: Path, size: int) -> tuple[np.ndarray, torch.Tensor]:
    """Strict-RGB style image, resized so its shorter side is ``size`` (params ``style.style_size``,
    default the crop size). The size sets the scale of the strokes the network learns to paint."""
    import cv2

    from segstyle.pipelines.style.images import read_rgb, to_tensor

    rgb = read_rgb(path, "style image")
    h, w = rgb.shape[:2]
    s = size / min(h, w)
    rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return rgb, to_tensor(rgb)


def content_reference(net, x: torch.Tensor) -> torch.Tensor:
    """What the content loss compares the output with: the content batch itself, or, for a network
    whose last step moves every image onto the style's colour statistics (``colour_match``), the
    content after that same colour step. The content term then asks for the photo's structure
    in the style's palette (which the untrained identity-start network already returns: content
    loss 0 at step 1) instead of fighting the palette change that the colour step makes anyway."""
    if getattr(net, "colour", None) is None:
        return x
    with torch.no_grad():
        return net.colour(x)


def write_metrics(out: Path, history: list[dict]) -> None:
    from segstyle.core.io import write_text
    from segstyle.pipelines.visualize import plot_curves

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in COLUMNS})
    write_text(out / "metrics.csv", buf.getvalue())
    if history:
        plot_curves(out / "loss.png", {k: [r[k] for r in history] for k in ("content", "style", "tv", "total")},
                    xlabel="step", logy=True, title="train-style loss (weighted terms)")


def summarize(history: list[dict]) -> dict:
    """Style loss of the untrained network (step 1, computed before the first update) against the
    mean of the last k steps (k = 10% of the run, 1..10: smooths batch-to-batch noise), and the
    relative reduction. Step 1 rather than an early mean: Adam's first updates make the loss spike,
    and averaging the spike in would flatter the reduction."""
    style = [r["style"] for r in history]
    k = max(1, min(10, len(style) // 10))
    first, last = float(style[0]), float(np.mean(style[-k:]))
    return {"steps": len(style), "style_first": first, "style_last": last,
            "style_reduction": 1.0 - last / first if first > 0 else 0.0,
            "total_last": float(np.mean([r["total"] for r in history[-k:]]))}


def save_samples(dest: Path, net: torch.nn.Module, batch: torch.Tensor, style_rgb: np.ndarray, step: int,
                 device: torch.device) -> None:
    from segstyle.pipelines.style.images import to_uint8
    from segstyle.pipelines.visualize import save_grid

    was_training = net.training
    net.eval()
    with torch.inference_mode():
        y = net(batch.to(device)).float().cpu()
    net.train(was_training)
    rows = [[to_uint8(c), to_uint8(s)] for c, s in zip(batch, y)]
    rows[0].append(style_rgb)
    save_grid(dest, rows, cell=160, titles=["content", f"step {step}", "style"])


def resolve_loss_net(cfg, pretrained: bool, override: str | None = None) -> str:
    """``override`` (``--loss-net``), else params ``style.loss_net``, else VGG only when its ImageNet
    weights are used: a randomly initialised VGG is the loss that turned every photo into a blob."""
    choice = override or getattr(cfg, "loss_net", None)
    return choice or ("vgg" if pretrained else "random")


@dataclass
class StyleTraining:
    """What :func:`setup_style_training` builds (and :func:`resume_style_training` restores): the network, its
    loss and optimiser state, and how far the run is (epoch to start at, steps done, the loss history)."""

    net: torch.nn.Module
    net_kwargs: dict
    loss_fn: torch.nn.Module
    loss_net: str                  # "vgg" or "random" (:func:`resolve_loss_net`)
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: bool
    warmup: int                    # params style.warmup_steps (0: none)
    start_epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)


def setup_style_training(cfg, style_t: torch.Tensor, *, seed: int, device: str | None, pretrained: bool,
                         loss_net: str | None) -> StyleTraining:
    """Seed, then build the TransformerNet (params ``style.network``), the perceptual loss for ``style_t``,
    Adam and the AMP scaler (CUDA only)."""
    from segstyle.models import build_model
    from segstyle.models.perceptual_loss import PerceptualLoss
    from segstyle.core.runtime import pick_device, seed_everything

    seed_everything(seed)
    dev = pick_device(device)
    amp = cfg.amp and dev.type == "cuda"
    # params style.network: TransformerNet kwargs (base_channels, num_residual, residual); {} = the reference net
    net_kwargs = dict(getattr(cfg, "network", None) or {})
    net = build_model("transformer_net", pretrained=False, **net_kwargs).to(dev).train()
    if net.colour is not None:  # params style.network.colour_match: the style's colour statistics
        net.colour.set_target(style_t.to(dev))
    loss_net = resolve_loss_net(cfg, pretrained, loss_net)
    loss_fn = PerceptualLoss(style_t, loss_net=loss_net, vgg=cfg.vgg, pretrained=pretrained and loss_net == "vgg",
                             content_weight=cfg.content_weight, style_weight=cfg.style_weight,
                             tv_weight=cfg.tv_weight, colour_weight=cfg.colour_weight).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    # params style.warmup_steps: a residual (identity-start) network's first full-size Adam steps
    # overshoot (the style loss jumps 10-100x, measured); a short linear warm-up avoids that.
    warmup = int(getattr(cfg, "warmup_steps", 0) or 0)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    return StyleTraining(net=net, net_kwargs=net_kwargs, loss_fn=loss_fn, loss_net=loss_net, opt=opt, scaler=scaler,
                         device=dev, amp=amp, warmup=warmup)


def resume_style_training(t: StyleTraining, out: Path, *, resume: bool, style_path: Path, style_sha: str) -> None:
    """On ``resume`` with a checkpoint in ``out``: restore weights, optimiser, scaler, torch's RNG, epoch, step
    and history into ``t`` (refusing another network or style image). Otherwise a fresh start, which clears the
    sample grids of an older run."""
    import shutil

    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        from segstyle.models.checkpoint import load_checkpoint

        ck = load_checkpoint(ckpt_path, task="style", model="transformer_net")
        if ck.get("model_kwargs", {}) != t.net_kwargs:
            raise SegstyleError(f"{ckpt_path} holds a network built with {ck.get('model_kwargs')}, "
                                f"params style.network is {t.net_kwargs}; drop --resume")
        if ck.get("style_sha256") != style_sha:
            raise SegstyleError(f"{ckpt_path} was trained on style '{ck.get('style_name')}' "
                                f"(sha256 {str(ck.get('style_sha256'))[:12]}), not {style_path}; drop --resume")
        t.net.load_state_dict(ck["state_dict"])
        t.opt.load_state_dict(ck["optimizer"])
        t.scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"])
        t.start_epoch, t.step, t.history = ck["epoch"], ck["step"], list(ck["history"])
        click.echo(f"resuming from {ckpt_path} at epoch {t.start_epoch}, step {t.step}", err=True)
    else:
        if resume:
            click.echo(f"no checkpoint in {out}; starting fresh", err=True)
        shutil.rmtree(out / "samples", ignore_errors=True)  # sample grids of an older run would mislead


def fixed_samples(files: list[Path], size: int) -> torch.Tensor:
    """The content crops every sample grid shows: ``N_SAMPLES`` files spread through ``files``, centre-cropped
    (no randomness), so successive grids differ only by the network's weights."""
    shown = spread(files, N_SAMPLES)
    return torch.stack([ContentImages(shown, size, train=False)[i] for i in range(len(shown))])


def epoch_loader(dataset: ContentImages, batch_size: int, *, seed: int, epoch: int, workers: int,
                 pin_memory: bool) -> torch.utils.data.DataLoader:
    """Epoch ``epoch``'s shuffled loader over full batches."""
    # Per-epoch sampler seed: the shuffle order does not depend on whether the run was resumed.
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
        generator=torch.Generator().manual_seed(seed + epoch), pin_memory=pin_memory)


def train_style_step(t: StyleTraining, x: torch.Tensor, lr: float) -> LossTerms:
    """One optimisation step on the content batch ``x`` (``t.step`` counts it); returns the loss terms."""
    x = x.to(t.device, non_blocking=True)
    if t.warmup:  # linear warm-up, a function of the step alone (so --resume continues it exactly)
        for group in t.opt.param_groups:
            group["lr"] = lr * min(1.0, (t.step + 1) / t.warmup)
    with torch.autocast(t.device.type, dtype=torch.float16, enabled=t.amp):
        terms = t.loss_fn(t.net(x), content_reference(t.net, x))
    t.opt.zero_grad(set_to_none=True)
    t.scaler.scale(terms.total).backward()
    t.scaler.step(t.opt)
    t.scaler.update()
    t.step += 1
    return terms


def train_style_epoch(t: StyleTraining, loader, epoch: int, cfg, *, bar, samples: Path, sample_batch: torch.Tensor,
                      style_rgb: np.ndarray) -> None:
    """The steps of one epoch: a history row per step, and a sample grid every ``style.sample_every`` steps."""
    for x in loader:
        terms = train_style_step(t, x, cfg.lr)
        t.history.append({"step": t.step, "epoch": epoch + 1, **terms.as_floats()})
        bar.update(1)
        bar.set_postfix(style=f"{t.history[-1]['style']:.3g}", content=f"{t.history[-1]['content']:.3g}")
        if t.step % cfg.sample_every == 0:
            save_samples(samples / f"step_{t.step:06d}.png", t.net, sample_batch, style_rgb, t.step, t.device)


def save_style_epoch(out: Path, t: StyleTraining, *, epoch: int, provenance: dict, style_path: Path,
                     style_sha: str, content_images: int, vgg: str, pretrained: bool) -> None:
    """After each epoch: the atomic ``checkpoint.pt`` (everything ``--resume`` needs, torch's RNG included),
    then ``metrics.csv`` and ``loss.png``."""
    from segstyle.models.checkpoint import save_checkpoint

    save_checkpoint(out / "checkpoint.pt", {
        "model": "transformer_net", "model_kwargs": t.net_kwargs, "state_dict": t.net.state_dict(),
        **provenance,
        "epoch": epoch + 1, "step": t.step, "optimizer": t.opt.state_dict(), "scaler": t.scaler.state_dict(),
        "rng": torch.get_rng_state(), "history": t.history,
        "style_name": style_path.name, "style_sha256": style_sha, "content_images": content_images,
        "loss_net": t.loss_net, "vgg": vgg, "vgg_pretrained": pretrained and t.loss_net == "vgg",
    })
    write_metrics(out, t.history)


def finish_style(out: Path, t: StyleTraining, cfg, *, files: list[Path], sample_batch: torch.Tensor,
                 style_rgb: np.ndarray, style_path: Path, style_sha: str, pretrained: bool, t0: float) -> dict:
    """The end of a run: the last sample grid, ``stylized/`` (a few content images at their own size), and the
    summary (returned) in ``record.json`` with its figures in ``metrics.json``."""
    from segstyle.core.io import atomic_dir, read_image, write_dvc_metrics, write_image, write_json
    from segstyle.pipelines.style.stylize import stylize_array

    save_samples(out / "samples" / f"step_{t.step:06d}.png", t.net, sample_batch, style_rgb, t.step, t.device)
    t.net.eval()
    with atomic_dir(out / "stylized") as tmp:
        for f in spread(files, N_STYLIZED):
            rgb = stylize_array(t.net, read_image(f), max_side=STYLIZED_MAX_SIDE, device=t.device)
            write_image(tmp / f"{f.stem}.jpg", rgb)
    summary = {**summarize(t.history), "seconds": round(time.perf_counter() - t0, 2), "epochs": cfg.epochs,
               "content_images": len(files), "style_name": style_path.name, "style_sha256": style_sha,
               "loss_net": t.loss_net, "vgg": cfg.vgg, "vgg_pretrained": pretrained and t.loss_net == "vgg",
               "device": str(t.device), "amp": t.amp}
    write_json(out / "record.json", summary)  # the whole summary with its labels: a plain output
    write_dvc_metrics(out / "metrics.json", {k: summary[k] for k in STYLE_FIGURES})  # figures only
    return summary


def train_style(params, *, style_path: Path, out: Path, content_dirs: tuple[str, ...] = (), resume: bool = False,
                pretrained: bool | None = None, device: str | None = None, progress: bool = True,
                loss_net: str | None = None) -> dict:
    """Train (or resume) and write every artifact listed in the module docstring; returns the summary."""
    from segstyle.pipelines.config import apply_overrides
    from segstyle.core.provenance import training_record
    from segstyle.core.hashing import sha256_file
    from segstyle.pipelines.style.images import find_content_images, select_content

    # CLI overrides applied once: this params object is what trains, is stored in the checkpoint and hashed
    params, overrides = apply_overrides(params, style_pretrained=pretrained)
    provenance = training_record(params, overrides)
    cfg = params.style
    pretrained = cfg.pretrained
    style_path = Path(style_path)
    # params style.style_size / style.content_size (optional; default image_size: fast_neural_style)
    style_size = cfg.style_size or cfg.image_size
    content_size = cfg.content_size or cfg.image_size
    style_rgb, style_t = load_style(style_path, style_size)  # fails early on a bad style image
    style_sha = sha256_file(style_path)
    files = select_content(find_content_images(params.data.root, content_dirs), cfg.max_images, params.seed)
    if len(files) < cfg.batch_size:
        raise SegstyleError(f"{len(files)} content image(s) found; need at least batch_size={cfg.batch_size}")

    t = setup_style_training(cfg, style_t, seed=params.seed, device=device, pretrained=pretrained, loss_net=loss_net)
    resume_style_training(t, out, resume=resume, style_path=style_path, style_sha=style_sha)

    dev = t.device
    workers = min(4, os.cpu_count() or 1) if dev.type == "cuda" else 0
    dataset = ContentImages(files, cfg.image_size, train=True, resize=content_size)
    sample_batch = fixed_samples(files, max(cfg.image_size, content_size))
    steps_per_epoch = len(dataset) // cfg.batch_size
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=t.step, desc="train-style", unit="step",
               disable=not progress, dynamic_ncols=True)
    for epoch in range(t.start_epoch, cfg.epochs):
        loader = epoch_loader(dataset, cfg.batch_size, seed=params.seed, epoch=epoch, workers=workers,
                              pin_memory=dev.type == "cuda")
        train_style_epoch(t, loader, epoch, cfg, bar=bar, samples=out / "samples", sample_batch=sample_batch,
                          style_rgb=style_rgb)
        save_style_epoch(out, t, epoch=epoch, provenance=provenance, style_path=style_path, style_sha=style_sha,
                         content_images=len(files), vgg=cfg.vgg, pretrained=pretrained)
    bar.close()
    if not t.history:
        raise SegstyleError("no training steps were run (check style.epochs and the number of content images)")
    return finish_style(out, t, cfg, files=files, sample_batch=sample_batch, style_rgb=style_rgb,
                        style_path=style_path, style_sha=style_sha, pretrained=pretrained, t0=t0)


@click.command("train-style")
@click.option("--style", "style_path", type=click.Path(path_type=Path), default=None,
              help="Style image (default: params style.style_image).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts/style"),
              show_default=True, help="Output directory (checkpoint.pt, metrics.csv, loss.png, samples/, stylized/).")
@click.option("--content-dir", "content_dirs", multiple=True, type=click.Path(path_type=str),
              help="Content image folder (repeatable); default: VOC + Pet images under data.root.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt (same style image).")
@click.option("--pretrained/--no-pretrained", default=None,
              help="ImageNet VGG weights for the loss (default: params style.pretrained).")
@click.option("--loss-net", type=click.Choice(["vgg", "random"]), default=None,
              help="Loss features: ImageNet VGG or random multi-scale filter banks "
                   "(default: params style.loss_net; without it, vgg when pretrained else random).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available).")
@params_options
def cli(style_path: Path | None, out: Path, content_dirs: tuple[str, ...], resume: bool, pretrained: bool | None,
        loss_net: str | None, device: str | None, params) -> None:
    """Train the feed-forward style network (TransformerNet) on content photos for one style image."""
    s = train_style(params, style_path=style_path or Path(params.style.style_image), out=out,
                    content_dirs=content_dirs, resume=resume, pretrained=pretrained, device=device, loss_net=loss_net)
    click.echo(f"style loss {s['style_first']:.4g} -> {s['style_last']:.4g} "
               f"({100 * s['style_reduction']:.0f}% lower) in {s['steps']} steps, {s['seconds']:.0f}s; "
               f"wrote {out}/checkpoint.pt")
