"""``segstyle data verify``: check every image/mask pair of a dataset and report every problem.

The analogue of keras_segmentation's ``verify_dataset``, for the VOC and Pets layouts: for every id
listed in every split file it checks that the image exists and decodes completely, that the mask
exists, has the right PIL mode (VOC: palette ``P``; Pets: grey ``L``), only holds valid values
(VOC: 0..20 and 255; Pets: 1..3), and has the image's size. It collects *all* problems rather than
stopping at the first, so one run tells a user everything that is wrong with a dataset, and it
counts mask values over all masks (a class-balance histogram). The ``verify`` stage keeps the report
as a plain output, not a DVC metric: its histogram, problem lines and paths are no figures for the
one table ``dvc metrics show`` prints, and the stage itself is the check (it fails on any problem).

Masks are read with Pillow (to see the mode and raw palette indices), images with OpenCV (fast).
A truncated JPEG often still "decodes" in OpenCV with a grey bottom, so a JPEG without its
end-of-image marker is additionally loaded with Pillow, which refuses truncated data.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from segstyle.pipelines.data.layout import Layout
from segstyle.core.errors import SegstyleError

VALID_VALUES = {
    "voc": np.array(list(range(21)) + [255]),
    "pets": np.array([1, 2, 3]),
}
MASK_MODE = {"voc": "P", "pets": "L"}


@dataclass
class PairResult:
    id: str
    problems: list[str] = field(default_factory=list)
    histogram: np.ndarray | None = None   # bincount of mask values (256,), when the mask was readable
    notes: list[str] = field(default_factory=list)  # not problems: facts a user should know


@dataclass
class Report:
    dataset: str
    root: str
    splits: dict[str, dict[str, int]]
    images: int                  # distinct ids over all splits (VOC trainval repeats train + val)
    histogram: dict[str, int]
    problems: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        """Plain JSON: per-split counts, mask-value histogram (value -> pixel count), problems."""
        return {
            "dataset": self.dataset,
            "root": self.root,
            "ok": self.ok,
            "splits": self.splits,
            "images": self.images,
            "histogram": self.histogram,
            "problems": self.problems,
            "notes": self.notes,
        }


def _image_size(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """(width, height) of a fully decodable image, or (None, reason)."""
    import cv2

    if not path.is_file():
        return None, "image file missing"
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        return None, "image file is empty"
    raw = data.tobytes()
    if raw[:2] == b"\xff\xd8" and b"\xff\xd9" not in raw[-4096:]:
        # No end-of-image marker: truncated unless Pillow can still read every scan line.
        try:
            with Image.open(path) as im:
                im.load()
                return im.size, None
        except Exception as e:  # noqa: BLE001 - any decoder failure is the report
            return None, f"truncated or corrupt JPEG ({e})"
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        return None, "cannot decode image (corrupt or not an image)"
    return (img.shape[1], img.shape[0]), None


def check_pair(layout: Layout, id_: str) -> PairResult:
    """All problems of one id (image and mask), each naming its file."""
    res = PairResult(id_)
    ipath, mpath = layout.image_path(id_), layout.mask_path(id_)
    size, why = _image_size(ipath)
    if why:
        res.problems.append(f"{ipath}: {why}")
    if not mpath.is_file():
        res.problems.append(f"{mpath}: mask file missing")
        return res
    try:
        with Image.open(mpath) as im:
            mode, msize = im.mode, im.size
            arr = np.array(im) if mode in ("P", "L") else None
    except Exception as e:  # noqa: BLE001
        res.problems.append(f"{mpath}: cannot decode mask ({e})")
        return res
    want = MASK_MODE[layout.name]
    if mode != want:
        res.problems.append(f"{mpath}: mask mode is {mode}, expected {want}")
    if size is not None and msize != size:
        res.problems.append(f"{mpath}: mask size {msize[0]}x{msize[1]} != image size {size[0]}x{size[1]}")
    turn = _transposing_orientation(ipath) if size is not None else None
    if turn:
        res.notes.append(f"{ipath}: EXIF orientation {turn} would display the image {size[1]}x{size[0]} against its "
                         f"{msize[0]}x{msize[1]} mask; segstyle reads dataset pixels as stored (pair aligned), "
                         "a viewer shows them turned")
    if arr is not None:
        hist = np.bincount(arr.reshape(-1), minlength=256)
        bad = np.setdiff1d(np.flatnonzero(hist), VALID_VALUES[layout.name])
        if bad.size:
            res.problems.append(f"{mpath}: invalid mask values {bad.tolist()} "
                                f"(allowed: {_allowed_text(layout.name)})")
        res.histogram = hist
    return res


def _transposing_orientation(path: Path) -> int | None:
    """The image's EXIF orientation when it swaps width and height (5-8), else None."""
    try:
        with Image.open(path) as im:
            o = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - unreadable images are reported by _image_size
        return None
    return o if o in (5, 6, 7, 8) else None


def _allowed_text(name: str) -> str:
    return "0..20 and 255" if name == "voc" else "1 pet, 2 background, 3 border"


def verify(root: str | Path, dataset: str, splits: list[str] | None = None, *, progress: bool = True,
           workers: int | None = None) -> Report:
    """Check every listed pair of ``dataset`` under ``root`` (the data root, or the dataset folder as
    torchvision takes it: see :meth:`Layout.find`); never raises for data problems."""
    layout = Layout.find(dataset, root)  # data root or torchvision-style dataset folder
    problems: list[str] = []
    names = splits or layout.splits()
    if not names:
        raise SegstyleError(f"{layout.split_dir}: no split files (*.txt)")
    split_ids: dict[str, list[str]] = {}
    for s in names:
        path = layout.split_file(s)
        if not path.is_file():
            problems.append(f"{path}: split file missing")
            continue
        ids = layout.ids(s)
        dup = sorted(k for k, v in Counter(ids).items() if v > 1)
        if dup:
            problems.append(f"{path}: ids listed more than once: {', '.join(dup[:5])}")
        if not ids:
            problems.append(f"{path}: split file lists no ids")
        split_ids[s] = ids
    unique = list(dict.fromkeys(i for ids in split_ids.values() for i in ids))
    results: dict[str, PairResult] = {}
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(unique), desc=f"verify {dataset}", unit="pair",
                                                   disable=None if progress else True, leave=False) as bar:
        for r in pool.map(lambda i: check_pair(layout, i), unique):
            results[r.id] = r
            bar.update()
    hist = np.zeros(256, np.int64)
    notes: list[str] = []
    for r in results.values():
        problems.extend(r.problems)
        notes.extend(r.notes)
        if r.histogram is not None:
            hist += r.histogram
    counts = {
        s: {"ids": len(ids), "ok": sum(1 for i in ids if not results[i].problems),
            "bad": sum(1 for i in ids if results[i].problems)}
        for s, ids in split_ids.items()
    }
    histogram = {str(v): int(hist[v]) for v in np.flatnonzero(hist)}
    return Report(dataset, str(root), counts, len(unique), histogram, problems, notes)
