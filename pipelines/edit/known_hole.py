"""Scoring fills against the truth: cut a known hole in a photo, fill it, compare with what was there.

``segstyle inpaint --known-hole FRAC`` (the ``inpaint_gan`` stage, ``benchmarks/inpaint_gan.py``)
removes a centred square of ``FRAC`` x the short side, so the hole's original pixels are known and
every method (and the *mean fill* baseline: the hole painted with the mean colour of its border)
gets a PSNR and an SSIM measured **inside the hole only** (outside it every method returns the input
exactly, which would only inflate the figures). A method that cannot beat the mean fill has learnt
nothing about the picture.
"""

from __future__ import annotations

import numpy as np

from segstyle.core.errors import UsageError


def known_hole(shape: tuple[int, int], frac: float) -> np.ndarray:
    """A centred square hole of ``frac`` x the short side (boolean H, W)."""
    if not 0 < frac < 1:
        raise UsageError(f"--known-hole is a fraction of the short side in (0, 1), got {frac}")
    h, w = shape
    side = max(1, round(frac * min(h, w)))
    y0, x0 = (h - side) // 2, (w - side) // 2
    hole = np.zeros((h, w), bool)
    hole[y0:y0 + side, x0:x0 + side] = True
    return hole


def mean_fill(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The baseline: the hole painted with the mean colour of the 3-px ring of known pixels around it."""
    import cv2

    ring = cv2.dilate(hole.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~hole
    out = rgb.copy()
    out[hole] = (rgb[ring] if ring.any() else rgb[~hole]).mean(axis=0).round().astype(np.uint8)
    return out


def hole_scores(original: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> dict[str, float]:
    """PSNR (dB, 0..255 range, at most 100) over the hole's pixels and the mean SSIM (per channel, 11x11 Gaussian)
    inside the hole, of ``filled`` against ``original``. The SSIM map is computed on the hole's bounding box
    alone (reflected at its edges), so the pixels every method copies from the input never enter it."""
    from segstyle.core.similarity import ssim_map
    from segstyle.export.portable.compare import psnr as psnr_db

    psnr = min(100.0, psnr_db(filled[hole], original[hole], 255.0))  # capped: a perfect fill is 100 dB, not inf
    ys, xs = np.nonzero(hole)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))  # the map sees no pixel beyond the hole's box
    a, b, inside = original[box], filled[box], hole[box]
    ssim = np.mean([ssim_map(a[..., c], b[..., c], 255.0)[inside].mean() for c in range(3)])
    return {"psnr": round(psnr, 3), "ssim": round(float(ssim), 4)}
