"""Photos saved the way phones, cameras and decompression bombs save them (the photo-reading tests)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# stored pixels = displayed.transpose(STORE[tag]), so that a viewer honouring the tag shows `displayed`
STORE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def landscape_photo() -> np.ndarray:
    """A landscape RGB photo (H < W), as displayed: a real VOC JPEG where ../shared is present."""
    from conftest import REALDATA

    jpgs = sorted((REALDATA / "voc/VOCdevkit/VOC2012/JPEGImages").glob("*.jpg")) if REALDATA.is_dir() else []
    for p in jpgs:
        with Image.open(p) as im:
            if im.width > im.height:
                return np.asarray(im.convert("RGB"))
    y, x = np.mgrid[0:120, 0:200]
    img = np.stack([x * 255 // 199, y * 255 // 119, (x * y) % 256], -1).astype(np.uint8)
    img[10:40, 10:60] = (255, 0, 0)  # a red block near the top-left corner: any turn or flip moves it
    return img


def save_with_orientation(displayed: np.ndarray, tag: int, dest: Path) -> Path:
    stored = Image.fromarray(displayed).transpose(STORE[tag])
    exif = Image.Exif()
    exif[0x0112] = tag
    stored.save(dest, quality=95, exif=exif.tobytes())
    return dest


def header_only_png(dest: Path, w: int, h: int) -> Path:
    """A valid PNG signature and IHDR declaring ``w`` x ``h`` RGB, then one tiny IDAT: a few bytes on
    disk, gigabytes once decoded (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    dest.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return dest
