"""The pipeline report (markdown): stage table, metrics, per-class IoU, verdicts, embedded stage pages, pictures.

It is built from what ``dvc.yaml`` declares (each stage's ``metrics:`` and ``plots:`` files, its JSON
outputs and its output directories), not from hard-coded paths, so a stage added to ``dvc.yaml`` shows
up in the report without touching this module.

Figures and verdicts come from different files (issue 9): a DVC metrics file holds figures only
(``write_dvc_metrics``), and the plain JSON record a stage writes beside it (``record.json``, or the
only report of a gate stage such as ``verify_voc.json`` or ``parity.json``) holds the verdict
(``passed`` / ``ok``, a boolean) and its reasons (``violations``). So a stage's verdict row takes its
verdict from the record and its figures from the stage's metrics files (from the record itself when
the stage has none); a stage without a verdict shows its metrics files as figures.

Written to ``artifacts/pipeline_report.md`` and published as a Prefect markdown artifact by the flow.

Every picture a stage declares (an image output, an image in an output folder, an image plot) is shown
inline, at most :data:`MAX_LINKS` per output, with a path relative to the report file, so the report
renders in a clone, on a CI page or in an editor preview. A markdown file a stage writes (issue 9's
``artifacts/matrix.md`` deployment matrix) is included as a section.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from urllib.parse import quote
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from segstyle.pipelines.stages import StageInfo

Status = Literal["ran", "restored", "skipped", "skipped-no-GPU", "failed", "not-run"]


class StageOutcome(BaseModel):
    name: str
    status: Status
    seconds: float = 0.0
    message: str = ""
    log: str = ""


class PipelineReport(BaseModel):
    profile: str
    stages: list[StageOutcome]
    seconds: float
    push: str = ""
    report_path: str = ""

    @property
    def failed(self) -> list[StageOutcome]:
        return [s for s in self.stages if s.status == "failed"]


REPORT_PATH = Path("artifacts") / "pipeline_report.md"
SKIP_GROUPS = ("histogram", "thresholds", "per_class_iou")  # long families, or shown in their own table
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
MAX_LINKS = 6


def _scalars(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Scalar leaves of a JSON document as ``a.b.c -> value`` (lists are left out: too long)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                out.update(_scalars(v, key + "."))
            elif isinstance(v, (int, float, str, bool)) or v is None:
                out[key] = v
    return out


def _numbers(flat: dict[str, Any], max_group: int = 4) -> dict[str, Any]:
    """Numeric leaves, minus big families (per-class IoU, histograms: shown elsewhere or too long)."""
    nums = {k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    groups: dict[str, int] = {}
    for k in nums:
        if "." in k:
            groups[k.split(".")[0]] = groups.get(k.split(".")[0], 0) + 1
    return {k: v for k, v in nums.items()
            if "." not in k or (groups[k.split(".")[0]] <= max_group and k.split(".")[0] not in SKIP_GROUPS)}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rel(path: Path, report_dir: Path) -> str:
    """``path`` relative to the report's folder, URL-quoted: the report renders wherever the repository
    is (a clone, the Prefect UI's artifact, a CI page), which absolute ``file://`` links never did."""
    rel = os.path.relpath(path.resolve(), report_dir.resolve())
    return quote(Path(rel).as_posix())


def _image(path: Path, report_dir: Path, root: Path) -> str:
    alt = Path(os.path.relpath(path, root)).as_posix()
    return f"![{alt}]({_rel(path, report_dir)})"


def _embedded(path: Path) -> list[str]:
    """A stage's own markdown page (e.g. the deployment matrix), headings moved one level down."""
    try:
        text = path.read_text()
    except OSError:
        return []
    return [("#" + ln) if ln.startswith("#") else ln for ln in text.splitlines()]


def build_markdown(report: "PipelineReport", plan: "list[StageInfo]", root: Path,
                   report_dir: Path | None = None) -> str:
    """The report; pictures are inline images with paths relative to ``report_dir`` (default: the
    folder of :data:`REPORT_PATH` under ``root``)."""
    report_dir = report_dir or (root / REPORT_PATH).parent
    lines = [f"# segstyle pipeline — profile `{report.profile}`", ""]
    lines += ["| stage | status | time (s) | note |", "|---|---|---:|---|"]
    for s in report.stages:
        lines.append(f"| `{s.name}` | {s.status} | {s.seconds:.1f} | {s.message.replace('|', '/')} |")
    lines += ["", f"Total: {report.seconds:.1f} s." + (f" DVC: {report.push}." if report.push else ""), ""]

    metric_rows, verdicts, per_class, pictures, pages, bundles, packages = [], [], [], [], [], [], []
    for info in plan:
        rows, checks = _stage_rows(info, root)
        metric_rows += rows
        verdicts += checks
        for p in info.plots:
            path = root / p
            if path.suffix == ".csv" and "class" in path.name and path.is_file():
                per_class.append((info.name, path))
        for o in (*info.outs, *info.plots, *info.metrics):
            path = root / o
            if path.is_dir():
                imgs = sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                imgs = [path]
            else:
                imgs = []
            if imgs:
                pictures.append((info.name, o, imgs))
            if path.is_dir() and isinstance(mf := _read_json(path / "manifest.json"), dict) and "signature" in mf:
                bundles.append((info.name, o, mf["signature"]))
            if o.endswith(".aoti.pt2.json") and isinstance(side := _read_json(path), dict):
                packages.append((info.name, o, side))
            if path.is_file() and path.suffix.lower() == ".md" and path.resolve() != (report_dir / REPORT_PATH.name).resolve():
                pages.append((info.name, path))

    if metric_rows:
        lines += ["## Metrics", "", "| stage | file | metrics |", "|---|---|---|"]
        for name, path, flat in metric_rows:
            lines.append(f"| `{name}` | `{Path(path).name}` | " + ", ".join(f"{k} {_fmt(v)}" for k, v in flat.items())
                         + " |")
        lines.append("")
    if verdicts:
        lines += ["## Checks and validation", "", "| stage | file | verdict | figures |", "|---|---|---|---|"]
        for name, path, ok, flat, violations in verdicts:
            why = f" ({'; '.join(map(str, violations))})" if violations else ""
            figures = ", ".join(f"{k} {_fmt(v)}" for k, v in flat.items())
            lines.append(f"| `{name}` | `{Path(path).name}` | {'PASS' if ok else 'FAIL'}{why} | {figures} |")
        lines.append("")
    if bundles:  # who signed what ships: the key a device must be given to verify it
        lines += ["## Bundles and their signatures", "", "| stage | bundle | signature |", "|---|---|---|"]
        for name, out, sig in bundles:
            signed = (f"signed, key `{sig.get('fingerprint', '?')}` ({sig.get('scheme', '?')})" if isinstance(sig, dict)
                      else "**unsigned**")
            lines.append(f"| `{name}` | `{out}` | {signed} |")
        lines.append("")
    if packages:  # what each compiled engine cost and which machine it is tied to
        lines += ["## AOTInductor packages", "", "| stage | device | precision | compile s | MiB | built for | input |",
                  "|---|---|---|---:|---:|---|---|"]
        for name, out, side in packages:
            where = (f"{side.get('cpu_isa')}, {side.get('cpu_model')}, {side.get('threads')} thread(s)"
                     if side.get("device") == "cpu" else f"{side.get('gpu_name')} sm_{side.get('compute_capability')}")
            lines.append(f"| `{name}` | {side.get('device')} | {side.get('precision')} | {_fmt(side.get('compile_seconds'))} "
                         f"| {_fmt((side.get('size_bytes') or 0) / 2**20)} | {where}, torch {side.get('torch_version')} "
                         f"| {side.get('input', '').replace('|', '/')} |")
        lines.append("")
    for name, path in per_class:
        try:
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
        except OSError:
            continue
        if len(rows) < 2:
            continue
        lines += [f"## Per-class IoU — `{name}`", "", "| " + " | ".join(rows[0]) + " |",
                  "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(_fmt_cell(c) for c in r) + " |" for r in rows[1:]]
        lines.append("")
    for name, path in pages:
        lines += [f"## `{name}`: {path.name}", ""] + _embedded(path) + [""]
    if pictures:
        lines += ["## Pictures", ""]
        for name, out, imgs in pictures:
            more = f" (+{len(imgs) - MAX_LINKS} more in `{out}`)" if len(imgs) > MAX_LINKS else ""
            lines += [f"### `{name}` — `{out}`{more}", ""]
            lines += [_image(f, report_dir, root) for f in imgs[:MAX_LINKS]]
            lines.append("")
    return "\n".join(lines)


def _verdict(doc: dict[str, Any]) -> bool | None:
    """A record's boolean ``passed`` (or ``ok``); None when it carries no verdict."""
    v = doc.get("passed", doc.get("ok"))
    return v if isinstance(v, bool) else None


def _violations(doc: dict[str, Any]) -> list[str]:
    """The reasons of a FAIL: the record's own ``violations``, else those of its rows (a validation
    record keeps them per backend row: ``backend precision: figure out of bounds``)."""
    if doc.get("violations"):
        return [str(v) for v in doc["violations"]]
    rows = doc.get("rows") if isinstance(doc.get("rows"), list) else []
    return [f"{r.get('backend', '?')} {r.get('precision', '')}".strip() + ": " + "; ".join(map(str, r["violations"]))
            for r in rows if isinstance(r, dict) and r.get("violations")]


def _stage_rows(info: "StageInfo", root: Path) -> tuple[list[tuple], list[tuple]]:
    """One stage's metrics rows ``(stage, file, figures)`` and verdict rows ``(stage, file, ok, figures,
    violations)``, pairing its metrics files (figures) with its plain JSON records (verdicts)."""
    metrics = [(m, d) for m in info.metrics if isinstance(d := _read_json(root / m), dict)]
    records = [(o, d) for o in info.outs
               if o.endswith(".json") and isinstance(d := _read_json(root / o), dict)]
    figures: dict[str, Any] = {}
    for _, d in metrics:  # curated figures: every one is shown (no family cut-off)
        figures.update(_numbers(_scalars(d), max_group=99))
    checks = [(info.name, o, v, figures or _numbers(_scalars(d)), _violations(d))
              for o, d in records if (v := _verdict(d)) is not None]
    if not checks:  # a metrics file of a stage without a record: its own 0/1 or boolean verdict
        for m, d in metrics:
            v = d.get("passed")
            if v in (0, 1) and not isinstance(v, float):
                checks.append((info.name, m, bool(v), _numbers(_scalars(d), max_group=99), []))
    if checks:
        return [], checks
    if metrics:
        return [(info.name, m, _numbers(_scalars(d), max_group=99)) for m, d in metrics], []
    # a stage with only plain records and no verdict (e.g. export fp16's comparison): their top figures
    return [(info.name, o, flat) for o, d in records if (flat := _numbers(_scalars(d)))], []


def _fmt_cell(c: str) -> str:
    try:
        return str(int(c))
    except ValueError:
        pass
    try:
        return f"{float(c):.4f}"
    except ValueError:
        return c
