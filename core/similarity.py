"""SSIM as a per-pixel map (Wang et al. 2004; Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03), numpy + OpenCV.

A map rather than one number, because two users need a region of it: the style-quality figures take
its mean over the image (:func:`segstyle.pipelines.style.quality.ssim`), the inpainting scores its
mean inside the hole only (:mod:`segstyle.pipelines.edit.known_hole`), where a fill is judged.
"""

from __future__ import annotations

import cv2
import numpy as np


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> np.ndarray:
    """The SSIM of every pixel of two single-channel maps of equal shape (``data_range``: the larger maximum)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim needs equal shapes, got {a.shape} and {b.shape}")
    L = data_range if data_range is not None else max(float(a.max()), float(b.max()), 1e-12)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
