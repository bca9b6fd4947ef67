"""The deployment matrix: network x backend x precision -> the figures that decide shipping, one table.

It is built only from validation records (``segstyle engine validate --out``), never by running
anything, so records made elsewhere join it: point ``--records`` at the CPU run's
``artifacts/validate`` and at a folder copied back from a GPU box or a Jetson, and the TensorRT rows
appear beside the ONNX Runtime ones. Where two records hold the same (network, backend, precision),
a row that ran wins over a "not run" row, and among rows that ran the newest file wins.

Columns: agreement (% argmax pixels equal to PyTorch FP32), delta mIoU (points), explained share of
disagreeing pixels (under the precision's fixed logit tolerance), max abs logit error (segmentation)
or PSNR / SSIM (style), the graph's file size, p50 latency at the record's latency size, verdict
(PASS / FAIL with the broken bound / "not run: <reason>" / "not deployable" for an INT8 graph that
``params.yaml`` ``export.int8.not_deployable`` lists and that fails its bounds). The TensorRT INT8
graph's row under ONNX Runtime CPU is an accuracy stand-in for its engine (its speed there says
nothing about TensorRT). Per-class IoU deltas of the INT8 rows follow the table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from segstyle.core.errors import SegstyleError

COLUMNS = ("network", "backend", "precision", "agreement %", "delta mIoU pt", "explained %",
           "max logit err / PSNR dB, SSIM", "size MB", "p50 ms", "verdict")


def find_records(dirs: Iterable[str | Path]) -> list[Path]:
    """Every validation record under ``dirs`` (JSON files holding ``network`` and ``rows``)."""
    found: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            found.append(d)
            continue
        if not d.is_dir():
            raise SegstyleError(f"{d}: no such records folder")
        for p in sorted(d.rglob("*.json")):
            try:
                doc = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and "network" in doc and isinstance(doc.get("rows"), list):
                found.append(p)
    return found


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def matrix_rows(records: Sequence[Path]) -> list[dict[str, Any]]:
    """One row per (network, backend, precision), merged over ``records`` (see module doc)."""
    best: dict[tuple[str, str, str, str], tuple[tuple[int, float], dict[str, Any]]] = {}
    for path in records:
        try:
            rec = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise SegstyleError(f"{path}: not a readable validation record ({type(e).__name__})") from None
        if not isinstance(rec, dict) or "rows" not in rec or "network" not in rec:
            raise SegstyleError(f"{path}: not a validation record (no network/rows)")
        mtime = Path(path).stat().st_mtime
        lat = (rec.get("latency") or {}).get("size")
        for r in rec["rows"]:
            key = (rec["network"], r["backend"], r["precision"], r.get("graph") or "")
            row = {"network": rec["network"], "model": rec.get("model"), "task": rec.get("task"),
                   "backend": r["backend"], "precision": r["precision"], "graph": r.get("graph"),
                   "not_deployable": r.get("not_deployable"), "classes": rec.get("classes") or [],
                   "ran": bool(r.get("ran")),
                   "reason": r.get("reason"), "figures": r.get("figures") or {}, "violations": r.get("violations") or [],
                   "passed": r.get("passed"), "latency_size": lat, "images": (rec.get("inputs") or {}).get("images"),
                   "source": (rec.get("inputs") or {}).get("source"), "record": str(path)}
            rank = (int(row["ran"]), mtime)
            if key not in best or rank > best[key][0]:
                best[key] = (rank, row)
    order = {"ort-cpu": 0, "torch-fp16": 1, "ort-cuda": 2, "tensorrt": 3}
    prec = {"fp32": 0, "fp16": 1, "int8": 2}
    return [row for _, (_, row) in sorted(best.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 9),
                                                                        prec.get(kv[0][2], 9), kv[0][3]))]


def cells(row: dict[str, Any]) -> list[str]:
    """The table cells of one row (strings)."""
    f = row["figures"]
    backend = row["backend"] + (" (trt graph: accuracy stand-in)" if row.get("graph") == "trt" else "")
    if not row["ran"]:
        return [row["network"], backend, row["precision"], "", "", "", "", "", "",
                f"not run: {row['reason']}"]
    if row["task"] == "segmentation":
        err = _fmt(f.get("max_abs_logit_err"), ".3g")
        if f.get("alpha_identical"):
            err += ", alpha identical"
        elif "alpha_psnr_db_min" in f:  # a one-logit network's soft matte
            err += f", alpha {_fmt(f.get('alpha_psnr_db_min'), '.2f')} dB"
        delta = _fmt(f.get("delta_miou_pts"), "+.3f") if "delta_miou_pts" in f else "no labels"
        agree, expl = _fmt(f.get("agreement_pct"), ".3f"), _fmt(f.get("explained_pct"), ".1f")
    else:
        err = f"{_fmt(f.get('psnr_db_min'), '.2f')} dB, {_fmt(f.get('ssim_min'), '.4f')}"
        agree = delta = expl = "-"
    p50 = _fmt(f.get("p50_ms"), ".1f")
    if p50 != "n/a" and row.get("latency_size"):
        p50 += f" @{row['latency_size'][0]}x{row['latency_size'][1]}"
    verdict = "PASS" if row["passed"] else "FAIL: " + "; ".join(row["violations"])
    if row.get("not_deployable") and not row["passed"]:
        verdict = "not deployable: " + "; ".join(row["violations"])
    size = _fmt(f.get("size_mb"), ".1f") if "size_mb" in f else ""
    return [row["network"], backend, row["precision"], agree, delta, expl, err, size, p50, verdict]


def to_markdown(rows: Sequence[dict[str, Any]], records: Sequence[Path]) -> str:
    lines = ["# Deployment matrix", "",
             "Every backend against PyTorch FP32 on real validation images, bounds from params.yaml `validate`. ",
             "Built by `segstyle engine matrix` from: " + ", ".join(f"`{p}`" for p in records) + ".", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells(r)) + " |")
    per_class = [r for r in rows if r["ran"] and r["precision"] == "int8" and r["figures"].get("delta_iou_pts")]
    if per_class:
        lines += ["", "Per-class IoU delta of the INT8 rows (points; n/a: class in neither labels nor predictions):", ""]
        for r in per_class:
            names = list(r.get("classes") or [])
            deltas = r["figures"]["delta_iou_pts"]
            names += [str(i) for i in range(len(names), len(deltas))]
            d = ", ".join(f"{n} {_fmt(v, '+.2f')}" for n, v in zip(names, deltas))
            lines.append(f"- {r['network']} {cells(r)[1]}: {d}")
    sources = sorted({(r["network"], r["source"], r["images"]) for r in rows if r["ran"]}, key=str)
    if sources:
        lines += ["", "Inputs: " + "; ".join(f"{n}: {i} image(s) of {s}" for n, s, i in sources) + "."]
    return "\n".join(lines) + "\n"


def print_matrix(rows: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Deployment matrix (vs PyTorch FP32, real images)")
    for c in COLUMNS:
        t.add_column(c, overflow="fold")
    for r in rows:
        style = None if not r["ran"] else ("green" if r["passed"] else "red")
        t.add_row(*cells(r), style=style)
    Console(stderr=True, width=160).print(t)


def build_matrix(record_dirs: Sequence[str | Path], out_md: str | Path | None) -> dict[str, Any]:
    """Read records, write ``out_md`` and its ``.json`` sibling atomically; returns the JSON document."""
    from segstyle.core.io import write_json, write_text

    records = find_records(record_dirs)
    if not records:
        raise SegstyleError(f"no validation records under {', '.join(map(str, record_dirs))} "
                            "(run segstyle engine validate --out DIR/record.json first)")
    rows = matrix_rows(records)
    doc = {"records": [str(p) for p in records], "columns": list(COLUMNS),
           "rows": [{k: v for k, v in r.items() if k != "record"} | {"record": r["record"]} for r in rows]}
    if out_md:
        out_md = Path(out_md)
        write_text(out_md, to_markdown(rows, records))
        write_json(out_md.with_suffix(".json"), doc)
    return doc
