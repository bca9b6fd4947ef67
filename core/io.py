"""Atomic file output and image input with one-line errors.

Every artifact segstyle writes goes through :func:`atomic_path` (or the helpers built on it): the
data is written next to the destination under a temporary name and renamed into place, so a crash
or Ctrl-C never leaves a half-written file that a later stage (or DVC) would trust.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from segstyle.core.errors import SegstyleError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it over ``dest`` only if the block succeeds.

    The temporary name keeps the destination's suffix so libraries that infer the format from the
    extension (PIL, cv2, torch) still work.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix or dest.suffix or ".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give artifacts the usual umask-based mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_named_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path`, but the temporary file has ``dest``'s own name (in a temporary folder beside it).

    For writers that record the file name inside the file: ``torch.export.save`` and AOTInductor name
    their archive's top folder after the file, so a ``.model.ep.pt2.x1y2`` temporary name would end up
    inside the artifact (and differ on every write).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    tmp_path = folder / dest.name
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dest)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``dest`` and swap it into place on success.

    An existing ``dest`` is replaced only after the new tree is complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 directories
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old."))
            os.replace(dest, old / "x")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(dest: str | os.PathLike, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for DVC metrics)."""
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_dvc_metrics(dest: str | os.PathLike, figures: Mapping[str, Any]) -> Path:
    """Write a DVC metrics file (a path under a ``metrics:`` key of ``dvc.yaml``): figures only.

    Why a writer of its own: ``dvc metrics show`` prints ONE table whose columns are the union of every
    metrics file's keys, and ``dvc metrics diff`` subtracts values between commits. A string, path, list
    or histogram in any metrics file becomes columns that say nothing (and cannot be diffed); that is
    how the table reached 141 columns. So this writer refuses them: every leaf must be a finite number,
    nested string-keyed dicts are allowed (``a.b`` columns). Booleans are written as 0/1 (a verdict is
    a figure, and ``dvc metrics diff`` can subtract 0/1 but not true/false); NaN, infinity and None are
    refused (strict JSON, and an undefined figure must be left out by the caller, not written as a
    hole). Everything else a stage reports (provenance, paths, per-row lists) goes to a plain JSON
    record beside the metrics file (``outs: ... cache: false`` in ``dvc.yaml``). Checked before anything
    is written; the write is atomic like every artifact's. Raises :class:`SegstyleError` naming the
    file and the key.
    """
    if not isinstance(figures, Mapping):
        raise SegstyleError(f"{dest}: DVC metrics must be a mapping of figures, not a {type(figures).__name__}")
    clean = _figures(figures, dest, "")
    return write_json(dest, clean)


def _figures(node: Any, dest: Any, where: str) -> Any:
    if isinstance(node, Mapping):
        out = {}
        for k, v in node.items():
            if not isinstance(k, str):
                raise SegstyleError(f"{dest}: metrics key {where + repr(k)} is not a string")
            out[k] = _figures(v, dest, f"{where}{k}.")
        return out
    key = where[:-1] or "(top level)"
    if isinstance(node, (bool, np.bool_)):
        return int(node)
    if isinstance(node, (int, float, np.integer, np.floating)):
        value = node.item() if isinstance(node, np.generic) else node
        if isinstance(value, float) and not math.isfinite(value):
            raise SegstyleError(f"{dest}: metrics key '{key}' is {value}; DVC metrics hold finite numbers only "
                                f"(leave an undefined figure out)")
        return value
    shown = repr(node) if len(repr(node)) <= 40 else repr(node)[:37] + "..."
    raise SegstyleError(f"{dest}: metrics key '{key}' is a {type(node).__name__} ({shown}); DVC metrics files "
                        f"hold numbers only (write it to the plain record beside it)")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


#: The pixel limit of an image read from a user (width x height), checked from the header before any
#: decoding: far above any camera (a 100 MP medium-format sensor), far below what a decompression
#: bomb declares. ``SEGSTYLE_MAX_PIXELS`` overrides it (e.g. for gigapixel scans).
DEFAULT_MAX_PIXELS = 150_000_000
#: EXIF orientation -> the numpy steps that show the stored pixels as the photo is displayed.
_ORIENT = {2: ("fliplr",), 3: ("rot180",), 4: ("flipud",), 5: ("transpose",), 6: ("rot270",),
           7: ("transpose", "rot180"), 8: ("rot90",)}


def max_pixels() -> int:
    """The pixel limit in force (``SEGSTYLE_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`)."""
    raw = os.environ.get("SEGSTYLE_MAX_PIXELS")
    try:
        return int(raw) if raw else DEFAULT_MAX_PIXELS
    except ValueError:
        raise SegstyleError(f"SEGSTYLE_MAX_PIXELS={raw!r}: expected a whole number of pixels") from None


_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_open(path: Path):
    """``Image.open(path)`` with Pillow's decompression-bomb guard off: the limit is ours
    (:func:`max_pixels`), and Pillow's error would not name the setting a user can change.

    The guard is a module global of Pillow, so it is switched under a lock: two threads reading at
    once could otherwise restore each other's ``None`` and leave it off for good.
    """
    from PIL import Image

    with _PIL_LIMIT_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(path) as im:
                yield im
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _header(path: Path) -> tuple[int, bytes | None, str]:
    """(EXIF orientation, ICC profile, format) from the header; an image above :func:`max_pixels` is
    refused here, before any pixel is decoded. A PNG's EXIF is taken from its header chunks only
    (Pillow's ``getexif()`` decodes the whole image to look for a late eXIf chunk).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with _pillow_open(path) as im:
            w, h, fmt = im.width, im.height, str(im.format)
            limit = max_pixels()
            if w * h > limit:
                raise SegstyleError(f"{path}: {w}x{h} pixels ({w * h / 1e6:.0f} MP) exceeds the limit of "
                                    f"{limit / 1e6:.0f} MP (set SEGSTYLE_MAX_PIXELS to allow larger images)")
            if fmt == "PNG":
                exif = Image.Exif()
                if im.info.get("exif"):
                    exif.load(im.info["exif"])
            else:
                exif = im.getexif()
            return int(exif.get(0x0112, 1) or 1), im.info.get("icc_profile"), fmt
    except UnidentifiedImageError:
        head = path.read_bytes()[:32]
        if b"ftypheic" in head or b"ftypheix" in head or b"ftypmif1" in head:
            raise SegstyleError(f"{path}: HEIC image; convert it to JPEG or PNG first (or install pillow-heif, "
                                "whose plugin Pillow then uses)") from None
        raise SegstyleError(f"{path}: cannot decode image (corrupt, truncated or not an image)") from None
    except (OSError, ValueError, SyntaxError):
        raise SegstyleError(f"{path}: cannot decode image (corrupt, truncated or not an image)") from None


def _to_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    """8-bit as it is; 16-bit by full-range scaling (65535 -> 255, never by the image's own maximum)."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return np.round(img.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    raise SegstyleError(f"{path}: unsupported sample type {img.dtype} (8- and 16-bit images are read); "
                        "convert it to an 8-bit PNG or JPEG first")


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    for step in _ORIENT.get(orientation, ()):
        if step == "fliplr":
            img = img[:, ::-1]
        elif step == "flipud":
            img = img[::-1]
        elif step == "transpose":
            img = img.swapaxes(0, 1)
        else:  # rot90 / rot180 / rot270: counter-clockwise quarter turns
            img = np.rot90(img, {"rot90": 1, "rot180": 2, "rot270": 3}[step])
    return np.ascontiguousarray(img)


def _to_srgb(rgb: np.ndarray, icc: bytes | None) -> np.ndarray:
    """Pixels in an embedded colour profile other than sRGB (Display P3 from phones, Adobe RGB from
    cameras) converted to sRGB with Pillow's LittleCMS; sRGB or no profile: unchanged."""
    if not icc:
        return rgb
    import io

    from PIL import Image, ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(src).lower().replace(" ", ""):
            return rgb
        out = ImageCms.profileToProfile(Image.fromarray(rgb), src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):  # a broken profile: the pixels as stored
        return rgb
    return np.asarray(out, dtype=np.uint8)


def read_image(path: str | os.PathLike, *, strict: bool = False, as_displayed: bool = True) -> np.ndarray:
    """Decode an image file to an RGB ``uint8`` array of shape (H, W, 3), as the user sees it.

    - The header is read first (Pillow, no pixels decoded) and an image above :func:`max_pixels` is
      refused in one line naming its size and the limit: a few-KB PNG declaring 40000x40000 never
      allocates 4.8 GB.
    - ``as_displayed`` (default): the EXIF orientation tag is applied, so a phone's portrait shot stored
      landscape comes out portrait and every mask, overlay and stylised output lies on the photo as
      displayed, and an embedded non-sRGB colour profile is converted to sRGB. Dataset readers pass
      ``as_displayed=False`` (the pixels as stored): a label mask has no EXIF, and rotating the
      image alone would misalign the pair (``segstyle data verify`` reports such files instead).
    - 16-bit PNG/TIFF are scaled to 8-bit over the full range; palette, grey, CMYK and alpha images
      become RGB (grey and alpha raise under ``strict``: stylisation refuses to guess how to
      composite alpha or colour grey).

    Pixels are decoded by OpenCV where it reads the format (fast, keeps 16-bit), else by Pillow
    (AVIF). Every failure is one :class:`SegstyleError` naming the file.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise SegstyleError(f"{path}: no such image file")
    orientation, icc, fmt = _header(path)
    img = None
    if fmt not in ("AVIF",):
        data = np.fromfile(path, dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        img = _pil_decode(path)
    else:
        img = _to_uint8(img, path)
        if img.ndim == 3 and img.shape[2] in (3, 4):
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if strict and (img.ndim == 2 or img.shape[2] != 3):
        kind = "grayscale" if img.ndim == 2 or img.shape[2] == 1 else f"{img.shape[2]}-channel (alpha)"
        raise SegstyleError(f"{path}: {kind} image; expected 3-channel RGB, convert it first "
                            f"(e.g. PIL: Image.open(f).convert('RGB').save(out))")
    if img.ndim == 2 or img.shape[2] == 1:
        img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = np.ascontiguousarray(img[..., :3])
    if not as_displayed:
        return img
    return _to_srgb(_orient(img, orientation), icc)


def _pil_decode(path: Path) -> np.ndarray:
    """Pixels through Pillow (formats OpenCV does not read), as RGB/RGBA/L ``uint8``."""
    try:
        with _pillow_open(path) as im:  # the size was checked from the header already
            if im.mode not in ("RGB", "RGBA", "L"):
                im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError):
        raise SegstyleError(f"{path}: cannot decode image (corrupt, truncated or not an image)") from None


def write_image(dest: str | os.PathLike, rgb: np.ndarray, *, quality: int = 95) -> Path:
    """Atomically write an RGB (H, W, 3), RGBA (H, W, 4) or grey (H, W) ``uint8`` array; the format
    follows the extension (RGBA needs one with an alpha channel, e.g. PNG)."""
    import cv2

    dest = Path(dest)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if dest.suffix.lower() in {".jpg", ".jpeg"} else []
    arr = np.ascontiguousarray(rgb)
    if arr.ndim == 3 and arr.shape[2] == 4:
        if dest.suffix.lower() in {".jpg", ".jpeg"}:
            raise SegstyleError(f"{dest}: JPEG has no alpha channel; write an RGBA image as PNG")
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    else:
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
    ok, buf = cv2.imencode(dest.suffix or ".png", bgr, params)
    if not ok:
        raise SegstyleError(f"{dest}: cannot encode image")
    with atomic_path(dest) as tmp:
        buf.tofile(tmp)
    return dest
