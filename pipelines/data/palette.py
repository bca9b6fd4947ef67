"""Class names and the Pascal VOC colour map (also used to draw Pet masks)."""

from __future__ import annotations

import numpy as np


def voc_colormap(n: int = 256) -> np.ndarray:
    """The (n, 3) uint8 colour map of the VOC devkit (bit-interleaved class index); 255 is cream."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def colorize(mask: np.ndarray) -> np.ndarray:
    """Map an (H, W) array of class indices (255 = void) to an (H, W, 3) RGB image."""
    return voc_colormap()[np.asarray(mask, dtype=np.uint8)]
