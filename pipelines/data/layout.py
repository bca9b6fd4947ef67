"""On-disk layout of Pascal VOC 2012 and Oxford-IIIT Pet, without importing torch.

The same paths serve torchvision's ``VOCSegmentation`` / ``OxfordIIITPet``, our datasets, the sample
generator, ``segstyle data verify`` and ``show``. Keeping them here (torch-free) lets the data
commands start in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from segstyle.core.errors import SegstyleError

VOC_SUBDIR = Path("VOCdevkit/VOC2012")
PETS_SUBDIR = Path("oxford-iiit-pet")
DATASETS = ("voc", "pets")


@dataclass(frozen=True)
class Layout:
    """Where one dataset keeps its images, masks and split lists, below ``base``."""

    name: str
    base: Path

    @classmethod
    def of(cls, name: str, root: str | Path) -> "Layout":
        """``root`` is the data root (``data/``); VOC lives in ``root/voc``, Pets in ``root/pets``."""
        root = Path(root)
        if name == "voc":
            return cls("voc", root / "voc" / VOC_SUBDIR)
        if name == "pets":
            return cls("pets", root / "pets" / PETS_SUBDIR)
        raise SegstyleError(f"unknown dataset '{name}'; choose voc or pets")

    @classmethod
    def find(cls, name: str, root: str | Path) -> "Layout":
        """The dataset below ``root`` given either way a user gives it, or one line naming what was looked for.

        ``root`` may be the data root (``data``, holding ``voc/`` and ``pets/``, what the pipeline
        uses) or the dataset's own folder as torchvision's ``VOCSegmentation(root=...)`` /
        ``OxfordIIITPet(root=...)`` take it (``data/voc`` holding ``VOCdevkit/``, ``data/pets``
        holding ``oxford-iiit-pet/``).
        """
        root = Path(root)
        sub = {"voc": VOC_SUBDIR, "pets": PETS_SUBDIR}.get(name)
        if sub is None:
            raise SegstyleError(f"unknown dataset '{name}'; choose voc or pets")
        candidates = [root / name / sub, root / sub]
        for base in candidates:
            if base.is_dir():
                return cls(name, base)
        raise SegstyleError(f"no {name} dataset under {root}: looked for {candidates[0]} (data root) and "
                            f"{candidates[1]} (dataset folder); run `segstyle data sample --root DATA_ROOT` "
                            f"or `segstyle data fetch {name} --root DATA_ROOT`")

    @property
    def split_dir(self) -> Path:
        return self.base / ("ImageSets/Segmentation" if self.name == "voc" else "annotations")

    @property
    def image_dir(self) -> Path:
        return self.base / ("JPEGImages" if self.name == "voc" else "images")

    @property
    def mask_dir(self) -> Path:
        return self.base / ("SegmentationClass" if self.name == "voc" else "annotations/trimaps")

    def split_file(self, split: str) -> Path:
        return self.split_dir / f"{split}.txt"

    def splits(self) -> list[str]:
        """Split names present on disk (VOC: train/val/trainval; Pets: trainval/test)."""
        if self.name == "voc":
            return sorted(p.stem for p in self.split_dir.glob("*.txt"))
        return [s for s in ("trainval", "test") if self.split_file(s).is_file()]

    def image_path(self, id_: str) -> Path:
        return self.image_dir / f"{id_}.jpg"

    def mask_path(self, id_: str) -> Path:
        return self.mask_dir / f"{id_}.png"

    def ids(self, split: str) -> list[str]:
        return read_ids(self.split_file(split))


def read_ids(path: Path) -> list[str]:
    """First token of every non-empty, non-comment line (Pets lines carry class/species/breed too)."""
    if not path.is_file():
        raise SegstyleError(f"{path}: split file not found")
    ids = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            ids.append(line.split()[0])
    return ids


def read_mask(path: Path) -> np.ndarray:
    """Raw mask values as (H, W) uint8: palette indices for P images, grey values for L images.

    ``np.array`` on a mode-P image yields the indices, not the colours, which is exactly VOC's label.
    """
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise SegstyleError(f"{path}: mask mode is {im.mode}, expected P (palette) or L (grey)")
            return np.array(im)
    except FileNotFoundError:
        raise SegstyleError(f"{path}: mask file missing") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise SegstyleError(f"{path}: cannot decode mask ({e})") from None
