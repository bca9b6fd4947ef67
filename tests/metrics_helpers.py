"""One assertion for every DVC metrics file a stage writes: figures only (issue 9: a readable
``dvc metrics show``). Each stage's own test calls it on the file it wrote, so a stage that puts a
string, path, list or bool back into its metrics file fails there, not in a reader's table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def figure_leaves(doc: Any, prefix: str = "") -> dict[str, Any]:
    """``a.b -> leaf`` for every leaf of a JSON document (lists and strings are leaves too)."""
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            out.update(figure_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: doc}


def assert_figures_only(path: str | Path) -> dict[str, Any]:
    """The metrics file at ``path`` is a non-empty JSON object whose every leaf is a finite int/float
    (bool is refused: write_dvc_metrics writes verdicts as 0/1). Returns the parsed document."""
    doc = json.loads(Path(path).read_text())
    assert isinstance(doc, dict) and doc, f"{path}: not a non-empty JSON object"
    bad = {k: v for k, v in figure_leaves(doc).items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)}
    assert not bad, f"{path}: metrics leaves that are not finite numbers: {bad}"
    return doc
