"""The sidecar of a compiled artifact (a TensorRT engine, an AOTInductor package): ``<file>.json`` beside it.

Both backends compile for one machine, so both keep the same rule: the sidecar holds the rebuild key the
artifact was built under, and an artifact whose key differs from this machine's in any field is rebuilt
(or refused), never run. The key's fields differ per backend
(:func:`segstyle.export.backend.trt.loader.expected_sidecar`,
:func:`segstyle.export.backend.aoti.loader.expected_sidecar`); reading the file and comparing it are
the same, and live here once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def sidecar_path(artifact: str | Path) -> Path:
    return Path(str(artifact) + ".json")


def read_sidecar(artifact: str | Path) -> dict[str, Any] | None:
    """The sidecar's content, or None when it is missing or unreadable."""
    try:
        return json.loads(sidecar_path(artifact).read_text())
    except (OSError, ValueError):
        return None


def stale_reasons(sidecar: dict[str, Any] | None, expected: dict[str, Any], what: str = "engine") -> list[str]:
    """Why an artifact (``what``: engine, package) may not run here; empty when every field of the key matches."""
    if sidecar is None:
        return ["no readable sidecar"]
    return [f"{key}: {what} has {sidecar.get(key)!r}, here {want!r}"
            for key, want in expected.items() if sidecar.get(key) != want]
