"""Semantic inpainting with the trained DCGAN (Yeh et al. 2017, "Semantic Image Inpainting with Deep
Generative Models"): ``segstyle inpaint --method gan``.

Telea and Navier-Stokes fill a hole from its border; they cannot invent what the border does not
show. Yeh et al. instead search the generator's latent space for the ``z`` whose image ``G(z)`` best
matches the *known* pixels around the hole, and take the hole from ``G(z)``:

- **contextual loss**: ``|| W * (G(z) - y) ||_1`` over the window, where a known pixel's weight is
  the share of its 7x7 neighbours that are missing (pixels next to the hole matter most; pixels far
  from it barely constrain the fill) and a missing pixel's weight is 0;
- **prior loss**: ``lambda * log(1 - D(G(z)))`` with the trained discriminator, which keeps ``G(z)``
  looking like a training image rather than an over-fitted blur (``lambda`` 0.003, the paper's);
- Adam on ``z`` for ``steps``, from ``restarts`` random starts searched together as one batch; the
  start with the lowest total loss wins;
- **Poisson blending** (``cv2.seamlessClone``): the generated patch's gradients inside the hole,
  the photo's own pixels on its border, so the fill's colours meet the surroundings without a seam.

The generator makes 64x64 images, so each hole is worked on in a square window around it: the
window is the hole's bounding box grown to twice its size (context on every side), at least 64 px,
kept inside the image; it is resized to 64x64 for the search and the patch is resized back. Each
connected hole (after ``--dilate``) gets its own window, in turn, and the result is pasted back at
the input's exact size; every pixel outside the hole is the input's, guaranteed. A hole bigger than
a window of the photo loses detail in proportion (a 256 px window is searched at 64 px): the DCGAN
knows only 64x64 images of what it was trained on (the demo: synthetic pets), so on anything else it
invents plausible colour, not content.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from segstyle.core.errors import SegstyleError

SIZE = 64               # the generator's image size
NEIGHBOURS = 7          # the contextual weights' neighbourhood (the paper's)
SMOOTH = 0.7            # Gaussian sigma (px at 64x64) of the generated patch, see search_latent


@dataclass(frozen=True)
class LatentSearch:
    """How hard the latent search works (``--steps``, ``--restarts``, ``--seed``)."""

    steps: int = 100
    restarts: int = 8
    lr: float = 0.1
    prior_weight: float = 0.003   # lambda of the prior loss (Yeh et al.)
    seed: int = 0


@dataclass
class Dcgan:
    generator: nn.Module
    discriminator: nn.Module
    nz: int
    path: Path


def load_dcgan(path: Path, device: torch.device | str = "cpu") -> Dcgan:
    """The generator and discriminator of a ``segstyle train-gan`` checkpoint (eval mode); one line for
    anything else (a segmentation checkpoint, a generator saved without its discriminator)."""
    from segstyle.models import build_model
    from segstyle.models.checkpoint import load_checkpoint, model_from_checkpoint

    ck = load_checkpoint(path)
    if ck["model"] != "dcgan_generator":
        raise SegstyleError(f"{path}: --gan-checkpoint must be a DCGAN from `segstyle train-gan`, "
                            f"this is a '{ck['model']}' checkpoint")
    if "discriminator" not in ck:
        raise SegstyleError(f"{path}: DCGAN checkpoint without its discriminator (the prior loss needs it)")
    g = model_from_checkpoint(ck).to(device)
    d = build_model("dcgan_discriminator", **ck.get("discriminator_kwargs", {}))
    try:
        d.load_state_dict(ck["discriminator"])
    except RuntimeError as e:
        raise SegstyleError(f"{path}: discriminator weights do not fit: {str(e).splitlines()[0]}") from None
    for net in (g, d.to(device)):
        net.eval().requires_grad_(False)
    return Dcgan(g, d, int(ck["model_kwargs"].get("nz", 100)), Path(path))


def contextual_weights(missing: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Yeh et al.'s importance weights: for a known pixel, the fraction of its ``k`` x ``k``
    neighbours that are missing; 0 on missing pixels (float32, same shape)."""
    m = missing.astype(np.float32)
    share = cv2.boxFilter(m, -1, (k, k), normalize=True, borderType=cv2.BORDER_CONSTANT)
    return np.where(missing, 0.0, share).astype(np.float32)


def windows(hole: np.ndarray) -> list[tuple[int, int, int, int]]:
    """One (x, y, w, h) window per connected component of ``hole``: its bounding box doubled around its
    centre, at least :data:`SIZE` px a side, square where the image allows, inside the image."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=8)
    H, W = hole.shape
    out = []
    for x, y, w, h, _area in stats[1:n]:
        side = max(SIZE, 2 * int(max(w, h)))
        sw, sh = min(side, W), min(side, H)
        cx, cy = x + w / 2, y + h / 2
        x0 = int(np.clip(round(cx - sw / 2), 0, W - sw))
        y0 = int(np.clip(round(cy - sh / 2), 0, H - sh))
        out.append((x0, y0, sw, sh))
    return out


def search_latent(gan: Dcgan, known: np.ndarray, missing: np.ndarray, s: LatentSearch, *, bar=None) -> np.ndarray:
    """The best ``G(z)`` for one 64x64 window: ``known`` uint8 (64, 64, 3), ``missing`` bool (64, 64).
    Returns the generated image as uint8 (64, 64, 3), low-passed at :data:`SMOOTH` px (:func:`low_pass`,
    inside the contextual loss too): a DCGAN trained
    for a minute still carries the transposed convolutions' pixel-scale checkerboard (Odena et al.
    2016, "Deconvolution and Checkerboard Artifacts"), which Poisson blending would keep (it copies
    the patch's gradients). In a one-off comparison while this was written (8 Pet test images, 35 %
    hole, 100 steps; not a committed benchmark) PSNR in the hole was 17.4 dB unsmoothed and 18.8 dB at
    sigma 0.7 in the loss and the paste, the mean fill's 17.7 dB; ``benchmarks/inpaint_gan.md`` has the
    committed figures at this setting."""
    dev = next(gan.generator.parameters()).device
    y = torch.from_numpy(known).permute(2, 0, 1).float().div(127.5).sub(1).to(dev)[None]
    w = torch.from_numpy(contextual_weights(missing)).to(dev)[None, None]
    gen = torch.Generator().manual_seed(s.seed)
    z = torch.randn(s.restarts, gan.nz, generator=gen).to(dev).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=s.lr)

    def losses() -> tuple[torch.Tensor, torch.Tensor]:
        raw = gan.generator(z)
        x = low_pass(raw)                              # what will be pasted is what must match
        contextual = (w * (x - y)).abs().flatten(1).sum(1)
        prior = -F.softplus(gan.discriminator(raw))    # log(1 - sigmoid(logit)): low where D says "real"
        return x, contextual + s.prior_weight * prior

    for _ in range(s.steps):
        _, loss = losses()
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if bar is not None:
            bar.update(1)
    with torch.no_grad():
        x, loss = losses()
    best = x[int(loss.argmin())]
    return ((best.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def low_pass(x: torch.Tensor, sigma: float = SMOOTH) -> torch.Tensor:
    """Gaussian blur of an (N, 3, H, W) batch at ``sigma`` px (7x7 for sigma 1, reflected border as
    ``cv2.GaussianBlur``), differentiable, so the latent search judges the patch it will paste."""
    if sigma <= 0:
        return x
    k = cv2.getGaussianKernel(2 * int(np.ceil(3 * sigma)) + 1, sigma).astype(np.float32)
    kernel = torch.from_numpy(k @ k.T).to(x)[None, None].repeat(x.shape[1], 1, 1, 1)
    r = kernel.shape[-1] // 2
    return F.conv2d(F.pad(x, (r, r, r, r), mode="reflect"), kernel, groups=x.shape[1])


def poisson_blend(rgb: np.ndarray, patch: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``cv2.seamlessClone`` of ``patch`` (same size as ``rgb``) into ``rgb`` inside ``hole``: the
    photo is padded first so the clone's mask never touches the border (OpenCV shifts or rejects
    masks that do), and the clone is placed at its own position (no shift)."""
    pad = 8
    P = lambda a: cv2.copyMakeBorder(a, pad, pad, pad, pad, cv2.BORDER_REFLECT)  # noqa: E731
    region = cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)) * 255   # border ring from the photo
    mask = cv2.copyMakeBorder(region, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    filled = rgb.copy()
    filled[hole] = patch[hole]   # a hole on the image's edge takes its boundary from the mirrored patch
    dst, src = P(filled), P(patch)
    x, y, w, h = cv2.boundingRect(mask)
    centre = (x + w // 2, y + h // 2)
    try:
        # OpenCV works in BGR; the blend is per channel, so RGB in gives RGB out
        out = cv2.seamlessClone(np.ascontiguousarray(src), np.ascontiguousarray(dst), mask, centre, cv2.NORMAL_CLONE)
    except cv2.error as e:
        raise SegstyleError(f"Poisson blending failed: {str(e).strip().splitlines()[-1]}") from None
    return out[pad:-pad, pad:-pad]


def gan_inpaint(rgb: np.ndarray, hole: np.ndarray, gan: Dcgan, s: LatentSearch, *, progress: bool = False,
                desc: str = "latent search") -> np.ndarray:
    """Fill the ``True`` pixels of ``hole`` in ``rgb`` (uint8 H, W, 3) window by window; pixels outside the
    hole stay identical, the output has the input's exact size."""
    if hole.shape != rgb.shape[:2]:
        raise SegstyleError(f"mask is {hole.shape[1]}x{hole.shape[0]}, image is {rgb.shape[1]}x{rgb.shape[0]}")
    if not hole.any():
        return rgb.copy()
    out = rgb.copy()
    wins = windows(hole)
    with tqdm(total=len(wins) * s.steps, desc=desc, unit="step", disable=not progress, leave=False) as bar:
        for i, (x, y, w, h) in enumerate(wins):
            crop, miss = out[y:y + h, x:x + w], hole[y:y + h, x:x + w]
            small = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            small_miss = cv2.resize(miss.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_AREA) > 0
            gen = search_latent(gan, small, small_miss, replace(s, seed=s.seed + i), bar=bar)
            patch = out.copy()
            patch[y:y + h, x:x + w] = cv2.resize(gen, (w, h), interpolation=cv2.INTER_CUBIC)
            win_hole = np.zeros_like(hole)
            win_hole[y:y + h, x:x + w] = miss
            out = poisson_blend(out, patch, win_hole)
            out[~hole] = rgb[~hole]  # the blend may touch the ring around the hole: the next window's context stays the input's
    return out
