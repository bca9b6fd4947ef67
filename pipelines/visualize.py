"""Pictures people would rather look at than read: mask overlays, labelled grids, loss curves.

OpenCV draws (fast, no figure state); matplotlib only plots curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from segstyle.pipelines.data.palette import colorize
from segstyle.core.io import atomic_path, write_image


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the VOC-colour rendering of ``mask`` (H, W) over ``image`` (H, W, 3 uint8 RGB).

    Class 0 (background) and 255 (void) stay transparent so the object outlines read clearly.
    """
    color = colorize(mask)
    out = image.copy()
    fg = (mask != 0) & (mask != 255)
    out[fg] = (alpha * color[fg] + (1 - alpha) * image[fg]).astype(np.uint8)
    return out


def label(tile: np.ndarray, text: str) -> np.ndarray:
    """Draw ``text`` in the top-left corner of a copy of ``tile`` (white on a black strip)."""
    out = np.ascontiguousarray(tile.copy())
    scale = max(0.35, min(out.shape[:2]) / 400)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (w + 4, h + base + 4), (0, 0, 0), -1)
    cv2.putText(out, text, (2, h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def grid(rows: Sequence[Sequence[np.ndarray]], *, cell: int = 160, pad: int = 2,
         titles: Sequence[str] | None = None) -> np.ndarray:
    """Lay out RGB tiles row by row, each resized to fit a ``cell`` x ``cell`` box (aspect kept).

    Each row is as tall as its tallest tile, so landscape images leave no blank bands.
    ``titles`` label the columns of the first row.
    """
    ncols = max(len(r) for r in rows)
    scaled: list[list[np.ndarray]] = []
    for r, row in enumerate(rows):
        out_row = []
        for c, tile in enumerate(row):
            h, w = tile.shape[:2]
            s = cell / max(h, w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            interp = cv2.INTER_NEAREST if s > 1 else cv2.INTER_AREA
            t = cv2.resize(tile, (nw, nh), interpolation=interp)
            if titles and r == 0 and c < len(titles):
                t = label(t, titles[c])
            out_row.append(t)
        scaled.append(out_row)
    heights = [max(t.shape[0] for t in row) for row in scaled]
    canvas = np.full((sum(heights) + pad * (len(rows) + 1), ncols * (cell + pad) + pad, 3), 255, np.uint8)
    y = pad
    for row, h in zip(scaled, heights):
        for c, t in enumerate(row):
            x = pad + c * (cell + pad)
            canvas[y:y + t.shape[0], x:x + t.shape[1]] = t
        y += h + pad
    return canvas


def save_grid(dest: str | Path, rows: Sequence[Sequence[np.ndarray]], **kw) -> Path:
    return write_image(dest, grid(rows, **kw))


def plot_curves(dest: str | Path, series: Mapping[str, Sequence[float]], *, x: Sequence[float] | None = None,
                xlabel: str = "epoch", title: str = "", logy: bool = False) -> Path:
    """Plot named curves against ``x`` (default: 1, 2, ... their index) into a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, ys in series.items():
        xs = list(x) if x is not None else range(1, len(ys) + 1)
        ax.plot(xs, list(ys), label=name, marker="o" if len(ys) < 30 else None)
    ax.set_xlabel(xlabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(dest)
