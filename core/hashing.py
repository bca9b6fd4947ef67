"""Content hashes: the one ``sha256`` of a file that checkpoints, ONNX graphs, engines and bundles
are recorded and checked by (sidecars, manifests, ``SHA256SUMS``)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed (engines and ONNX files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
