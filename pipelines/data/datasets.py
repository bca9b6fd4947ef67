"""Pascal VOC 2012 and Oxford-IIIT Pet segmentation datasets (real data and the embedded sample).

Both read the on-disk layout torchvision's ``VOCSegmentation`` / ``OxfordIIITPet`` use, and yield
``(tv_tensors.Image uint8 [3,H,W], tv_tensors.Mask uint8 [H,W])`` of class indices with 255 = ignore,
so the same transforms.v2 pipeline augments image and mask jointly.

- VOC: the mask is the palette-PNG index (0..20, 255 void) unchanged.
- Pets: trimap values 1 pet / 2 background / 3 border become ``trimap`` classes 0/1/2
  (value - 1, as the TF tutorial) or ``binary`` classes background 0 / pet 1 with the border 255.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from torchvision import tv_tensors

from segstyle.pipelines.data.layout import PETS_SUBDIR, VOC_SUBDIR, read_ids, read_mask
from segstyle.models.classes import IGNORE_INDEX, VOC_CLASSES, VOC_PERSON_INDEX, dataset_classes
from segstyle.core.errors import SegstyleError
from segstyle.core.io import read_image

__all__ = ["VOC_SUBDIR", "PETS_SUBDIR", "read_mask", "SegmentationDataset", "VOCSegmentation",
           "OxfordPetSegmentation", "build_dataset"]


class SegmentationDataset(torch.utils.data.Dataset):
    """Common part: ids, file paths, joint transforms. Subclasses define paths and label mapping."""

    classes: tuple[str, ...]
    ids: list[str]

    def __init__(self, transforms: Callable | None = None):
        self.transforms = transforms

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, i: int) -> Path:
        raise NotImplementedError

    def mask_path(self, i: int) -> Path:
        raise NotImplementedError

    def read_raw_mask(self, i: int) -> np.ndarray:
        """The mask exactly as stored (palette indices / trimap values), before class mapping."""
        return read_mask(self.mask_path(i))

    def map_mask(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def __getitem__(self, i: int):
        image = tv_tensors.Image(torch.from_numpy(read_image(self.image_path(i), as_displayed=False)).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(self.map_mask(self.read_raw_mask(i))))
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask


class VOCSegmentation(SegmentationDataset):
    """``root`` holds ``VOCdevkit/VOC2012`` (torchvision's convention); split: train/val/trainval.

    ``mode`` ``classes``: the 21 classes; ``person``: person 1 against every other class 0 (the
    portrait-matting stand-in: the portrait datasets cannot be downloaded here), void 255 kept."""

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None,
                 mode: Literal["classes", "person"] = "classes"):
        super().__init__(transforms)
        if mode not in ("classes", "person"):
            raise SegstyleError(f"unknown VOC mode '{mode}'; choose classes or person")
        self.base = Path(root) / VOC_SUBDIR
        self.split = split
        self.mode = mode
        self.classes = dataset_classes("voc", voc_mode=mode)
        self.ids = read_ids(self.base / "ImageSets" / "Segmentation" / f"{split}.txt")
        self._lut = voc_lut(mode)

    def map_mask(self, raw: np.ndarray) -> np.ndarray:
        return self._lut[raw]

    def image_path(self, i: int) -> Path:
        return self.base / "JPEGImages" / f"{self.ids[i]}.jpg"

    def mask_path(self, i: int) -> Path:
        return self.base / "SegmentationClass" / f"{self.ids[i]}.png"


class OxfordPetSegmentation(SegmentationDataset):
    """``root`` holds ``oxford-iiit-pet`` (torchvision's convention); split: trainval/test."""

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        mode: Literal["trimap", "binary"] = "trimap",
        transforms: Callable | None = None,
    ):
        super().__init__(transforms)
        if mode not in ("trimap", "binary"):
            raise SegstyleError(f"unknown Pets mode '{mode}'; choose trimap or binary")
        self.base = Path(root) / PETS_SUBDIR
        self.split = split
        self.mode = mode
        self.classes = dataset_classes("pets", pets_mode=mode)
        self.ids = read_ids(self.base / "annotations" / f"{split}.txt")
        self._lut = pets_lut(mode)

    def image_path(self, i: int) -> Path:
        return self.base / "images" / f"{self.ids[i]}.jpg"

    def mask_path(self, i: int) -> Path:
        return self.base / "annotations" / "trimaps" / f"{self.ids[i]}.png"

    def map_mask(self, raw: np.ndarray) -> np.ndarray:
        return self._lut[raw]


def pets_lut(mode: str) -> np.ndarray:
    """Trimap value -> class index: 1/2/3 -> pet 0 / background 1 / border 2 (``trimap``), or pet 1 /
    background 0 / border 255 (``binary``); anything else 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    if mode == "trimap":
        lut[1], lut[2], lut[3] = 0, 1, 2
    else:
        lut[1], lut[2] = 1, 0
    return lut


def voc_lut(mode: str) -> np.ndarray:
    """VOC palette index -> class index: itself (``classes``) or person 1 / other classes 0 (``person``)."""
    lut = np.arange(256, dtype=np.uint8)
    if mode == "person":
        lut[: len(VOC_CLASSES)] = 0
        lut[VOC_PERSON_INDEX] = 1
    return lut


def build_dataset(
    name: str, root: str | Path, split: str, *, pets_mode: str = "trimap", voc_mode: str = "classes",
    transforms: Callable | None = None,
) -> SegmentationDataset:
    """``name`` is ``voc`` or ``pets``; ``root`` is the data root (``data/``), not the dataset dir."""
    root = Path(root)
    if name == "voc":
        return VOCSegmentation(root / "voc", split, transforms, voc_mode)  # type: ignore[arg-type]
    if name == "pets":
        return OxfordPetSegmentation(root / "pets", split, pets_mode, transforms)  # type: ignore[arg-type]
    raise SegstyleError(f"unknown dataset '{name}'; choose voc or pets")
