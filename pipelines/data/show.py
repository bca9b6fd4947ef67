"""``segstyle data show``: a PNG grid of image | colour mask | overlay rows (keras_segmentation's
``visualize_dataset``), to eyeball that images and masks belong together before training on them.

Pets trimaps are drawn in the binary view (pet in VOC red, border band cream) so the overlay shows
the pet itself rather than the background class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segstyle.pipelines.data.layout import Layout, read_mask
from segstyle.models.classes import IGNORE_INDEX
from segstyle.pipelines.data.palette import colorize
from segstyle.core.errors import SegstyleError
from segstyle.core.io import read_image
from segstyle.pipelines.visualize import label, overlay, save_grid

DEFAULT_SPLIT = {"voc": "train", "pets": "trainval"}
_PETS_BINARY = np.full(256, IGNORE_INDEX, np.uint8)
_PETS_BINARY[1], _PETS_BINARY[2] = 1, 0


def pick(ids: list[str], n: int) -> list[str]:
    """``n`` ids spread evenly over the split (deterministic, so the picture is reproducible)."""
    if n <= 0:
        raise SegstyleError(f"-n must be positive, got {n}")
    if len(ids) <= n:
        return list(ids)
    return [ids[int(i)] for i in np.linspace(0, len(ids) - 1, n).round()]


def show(root: str | Path, dataset: str, out: str | Path, *, split: str | None = None, n: int = 6,
         cell: int = 200) -> Path:
    """Write the grid for ``n`` ids of ``split`` to ``out`` (PNG, atomically); return ``out``."""
    layout = Layout.find(dataset, root)  # data root or torchvision-style dataset folder
    split = split or DEFAULT_SPLIT[dataset]
    ids = pick(layout.ids(split), n)
    if not ids:
        raise SegstyleError(f"{layout.split_file(split)}: split file lists no ids")
    rows = []
    for id_ in ids:
        image = read_image(layout.image_path(id_), as_displayed=False)
        mask = read_mask(layout.mask_path(id_))
        if mask.shape != image.shape[:2]:
            raise SegstyleError(f"{layout.mask_path(id_)}: mask size {mask.shape[1]}x{mask.shape[0]} "
                                f"!= image size {image.shape[1]}x{image.shape[0]}")
        if dataset == "pets":
            mask = _PETS_BINARY[mask]
        row = [label(image, id_), colorize(mask), overlay(image, mask)]
        if not rows:
            row[1:] = [label(row[1], "mask"), label(row[2], "overlay")]
        rows.append(row)
    return save_grid(out, rows, cell=cell)
