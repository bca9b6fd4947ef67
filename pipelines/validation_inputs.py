"""The images a backend is validated on: a dataset's validation split, or a folder of the user's photos.

Read here, in the pipeline, and handed to :mod:`segstyle.export.validate` and the bundle writer as
:class:`segstyle.export.inputs.Inputs`, so the export layer never reads a dataset itself.
"""

from __future__ import annotations

from pathlib import Path

import torch

from segstyle.core.errors import SegstyleError
from segstyle.export.inputs import IMAGE_SUFFIXES, Inputs, as_sample


def split_inputs(dataset: str, params, limit: int = 0) -> Inputs:
    """The validation split of ``dataset`` at natural sizes (``limit`` > 0: the first ``limit``)."""
    from segstyle.pipelines.data.datasets import build_dataset

    split = params.data.splits[dataset].val
    ds = build_dataset(dataset, params.data.root, split, pets_mode=params.data.pets_mode, voc_mode=params.data.voc_mode)
    if len(ds) == 0:
        raise SegstyleError(f"{dataset} split '{split}' under {params.data.root} is empty")
    n = len(ds) if limit <= 0 else min(limit, len(ds))
    samples = [as_sample(ds.ids[i], *ds[i]) for i in range(n)]
    return Inputs(samples, f"{dataset} '{split}' split ({params.data.root})", True)


def folder_inputs(folder: str | Path, *, pets_mode: str = "trimap", voc_mode: str = "classes",
                  limit: int = 0) -> Inputs:
    """Every photo in ``folder``; labels where it sits in a VOC or Pet layout, agreement alone otherwise.

    VOC: ``.../JPEGImages`` beside ``SegmentationClass/<id>.png``; Pets: ``.../images`` beside
    ``annotations/trimaps/<id>.png``. Images without a mask in such a layout are used unlabelled
    only if no image has one (mIoU over a mixed set would be over a different set than agreement).
    """
    from segstyle.pipelines.data.datasets import pets_lut, voc_lut
    from segstyle.pipelines.data.layout import read_mask
    from segstyle.core.io import read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise SegstyleError(f"{folder}: no such image folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit > 0:
        files = files[:limit]
    if not files:
        raise SegstyleError(f"{folder}: no .jpg/.png images")
    voc_masks = folder.parent / "SegmentationClass"
    pet_masks = folder.parent / "annotations" / "trimaps"
    layout, mask_dir, lut = "none", None, None
    if folder.name == "JPEGImages" and voc_masks.is_dir():
        layout, mask_dir, lut = "VOC", voc_masks, voc_lut(voc_mode)
    elif folder.name == "images" and pet_masks.is_dir():
        layout, mask_dir, lut = "Pets", pet_masks, pets_lut(pets_mode)
    if mask_dir is not None:
        labelled = [p for p in files if (mask_dir / f"{p.stem}.png").is_file()]
        if labelled:
            files = labelled
        else:
            layout, mask_dir = "none", None
    samples = []
    for p in files:
        # a labelled pair is read as stored (its mask has no EXIF); a plain photo as displayed
        img = torch.from_numpy(read_image(p, as_displayed=mask_dir is None)).permute(2, 0, 1)
        mask = None
        if mask_dir is not None:
            raw = read_mask(mask_dir / f"{p.stem}.png")
            mask = torch.from_numpy(lut[raw] if lut is not None else raw)
            if tuple(mask.shape) != tuple(img.shape[1:]):
                raise SegstyleError(f"{p.name}: image {tuple(img.shape[1:])} and mask {tuple(mask.shape)} "
                                    "differ in size")
        samples.append(as_sample(p.stem, img, mask))
    what = f"{folder} ({layout} layout, labelled)" if mask_dir is not None else f"{folder} (unlabelled)"
    return Inputs(samples, what, mask_dir is not None)
