"""Image helpers shared by the style commands: strict reading, tensors, resizing, content discovery.

Stylisation reads its inputs strictly (3-channel RGB only): a grey or RGBA file is rejected with
one line rather than silently converted, because whether alpha should be composited on white or
black, or a grey image tinted, is the user's call. Training content images are read permissively
(the Pet dataset has a few grey and RGBA files; they are fine as content).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from segstyle.core.errors import SegstyleError
from segstyle.core.io import read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Where `segstyle data` puts the datasets, relative to params `data.root`.
CONTENT_SUBDIRS = ("voc/VOCdevkit/VOC2012/JPEGImages", "pets/oxford-iiit-pet/images")


def read_rgb(path: str | Path, what: str = "image") -> np.ndarray:
    """Strict RGB ``uint8`` (H, W, 3); ``what`` names the role in the error ("style image")."""
    try:
        return read_image(path, strict=True)
    except SegstyleError as e:
        raise SegstyleError(f"{what} {e}") from None


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in 0..1."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float 0..1 -> (H, W, 3) uint8, clamped and rounded."""
    if t.ndim == 4:
        t = t[0]
    return t.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def fit_max_side(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (area interpolation, aspect kept) so the longer side is at most ``max_side``."""
    h, w = rgb.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def find_content_images(data_root: str | Path, content_dirs: tuple[str, ...] = ()) -> list[Path]:
    """Sorted image files in ``content_dirs`` (or the VOC + Pet image folders under ``data_root``)."""
    dirs = [Path(d) for d in content_dirs] or [Path(data_root) / d for d in CONTENT_SUBDIRS]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if content_dirs and missing:
        raise SegstyleError(f"content directory not found: {', '.join(missing)}")
    files = sorted(p for d in dirs if d.is_dir() for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        where = ", ".join(str(d) for d in dirs)
        raise SegstyleError(f"no content images in {where}; run `segstyle data` first or pass --content-dir")
    return files


def select_content(files: list[Path], max_images: int, seed: int) -> list[Path]:
    """A seeded random subset (all when ``max_images`` is 0), sorted for stable reports."""
    if max_images and len(files) > max_images:
        idx = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:max_images]
        files = sorted(files[i] for i in idx.tolist())
    return files
