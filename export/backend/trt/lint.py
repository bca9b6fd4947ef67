"""Static TensorRT compatibility check of an ONNX graph, without TensorRT, per TensorRT release.

TensorRT cannot be installed where the graphs are produced, so the first time an unsupported op
would show up is on the device, after the bundle is shipped. This lint reads the graph and checks
every node (subgraphs included) against onnx-tensorrt's operator support matrix
(``docs/operators.md``) *of the release the device runs*: ``--trt 10.3`` (default: JetPack 6.1+,
the oldest TensorRT we support), ``10.x`` (the newest 10.x, 10.15) or ``11.x``. Each profile is
``export/backend/trt/data/trt_onnx_operators_<profile>.json``; its ``source`` field says exactly which file at
which commit it was read from and what was derived (:func:`write_tables` regenerates them):

- ``10.3``: ``docs/operators.md`` at tag ``release/10.1-GA`` (commit 96e7811, the newest release
  tag in the stored mirror; kept as ``export/backend/trt/data/onnx-tensorrt_release-10.1-GA_operators.md``)
  plus the operator changes the onnx-tensorrt Changelog lists for 10.2 (none) and 10.3 (``Slice``
  accepts tensor ``axes``); opsets 9..20;
- ``10.x``: ``docs/operators.md`` as published for TensorRT 10.15 (opsets 9..24);
- ``11.x``: the 10.15 matrix plus what the TensorRT 11 release notes add (``Swish``, 11.0;
  ``Squeeze`` without ``axes`` and opset 25, 11.5): no 11.x ``operators.md`` was readable here.

Checked besides the op itself, the restrictions the matrix states in prose that matter for vision
graphs:

- Resize: ``mode`` nearest/linear only (no cubic), the listed ``coordinate_transformation_mode``\\ s
  and ``nearest_mode``\\ s, no antialias, ``keep_aspect_ratio_policy`` stretch;
- pooling: 2D/3D only, ``dilations`` empty or all ones, MaxPool without its ``Indices`` output;
- Reduce*/Squeeze/Unsqueeze/CumSum/TopK: axes/axis/K must be build-time constants;
- TopK ``sorted`` = 1, ScatterND ``reduction`` none, LSTM ``input_forget``/``layout`` 0,
  Constant without sparse/string values, Pad ``mode`` one of ONNX's four;
- custom domains need a TensorRT plugin; the opset must be within the matrix's range.

An input type outside the op's listed types is a warning (TensorRT casts some types itself).
Errors make ``segstyle export lint`` exit non-zero.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

DATA = Path(__file__).with_name("data")
PROFILES = ("10.3", "10.x", "11.x")
DEFAULT_PROFILE = "10.3"


def table_path(profile: str) -> Path:
    return DATA / f"trt_onnx_operators_{profile}.json"

RESIZE_COORD = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
RESIZE_MODES = {"nearest", "linear"}
RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
PAD_MODES = {"constant", "reflect", "edge", "wrap"}
REDUCE_OPS = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
              "ReduceProd", "ReduceSum", "ReduceSumSquare"}
POOL_OPS = {"AveragePool", "MaxPool", "LpPool"}

# ONNX TensorProto element type -> the names the support matrix uses
DTYPE_NAMES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE",
               16: "BF16", 17: "FP8", 18: "FP8", 19: "FP8", 20: "FP8", 22: "INT4", 23: "FP4"}


@dataclass
class Issue:
    level: str  # "error" | "warning"
    op: str
    node: str
    message: str


@lru_cache(maxsize=4)
def support_table(profile: str = DEFAULT_PROFILE) -> dict[str, Any]:
    """The operator matrix of one TensorRT profile (one-line error for an unknown profile)."""
    if profile not in PROFILES:
        from segstyle.core.errors import UsageError

        raise UsageError(f"unknown TensorRT lint profile '{profile}'; choose {', '.join(PROFILES)}")
    return json.loads(table_path(profile).read_text())


_ROW = re.compile(r"^\|\s*([A-Za-z0-9]+)\s*\|\s*(Y|N)[^|]*\|?([^|]*)\|?(.*)$")
_HEADER = re.compile(r"TensorRT\s+([0-9.]+)\s+supports operators in the inclusive range of opset\s+(\d+)\s+to opset\s+(\d+)")


def parse_operators_md(text: str) -> dict[str, Any]:
    """onnx-tensorrt ``docs/operators.md`` -> ``{"operators": {op: {supported, types, restrictions}}, opsets}``."""
    ops: dict[str, Any] = {}
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if not m or m.group(1) in ("Operator",):
            continue
        types = [t.strip() for t in m.group(3).split(",") if t.strip()]
        restr = m.group(4).strip().rstrip("|").strip()
        ops[m.group(1)] = {"restrictions": restr, "supported": m.group(2) == "Y", "types": types}
    h = _HEADER.search(text)
    return {"operators": ops, "header_version": h.group(1) if h else None,
            "opset_min": int(h.group(2)) if h else None, "opset_max": int(h.group(3)) if h else None}


def build_tables() -> dict[str, dict[str, Any]]:
    """The three lint profiles from their stored sources plus the documented per-release deltas."""
    import copy

    md101 = (DATA / "onnx-tensorrt_release-10.1-GA_operators.md").read_text()
    t101 = parse_operators_md(md101)
    t103 = {"operators": t101["operators"], "opset_min": 9, "opset_max": 20, "tensorrt_version": "10.3",
            "source": ("onnx/onnx-tensorrt docs/operators.md at tag release/10.1-GA "
                       "(commit 96e781103cfc4adf4a6bb557e94bac8e693f6f4c, "
                       "https://github.com/onnx/onnx-tensorrt/blob/release/10.1-GA/docs/operators.md; Apache-2.0) "
                       "+ docs/Changelog.md entries for 10.2 GA (no operator changes) and 10.3 GA "
                       "('Added support for tensor axes inputs for Slice nodes')"),
            "derived": ["Slice: restriction '`axes` must be an initializer' dropped (10.3 GA changelog)"]}
    t103["operators"]["Slice"]["restrictions"] = ""
    t10x = json.loads(table_path("10.x").read_text())
    t11 = copy.deepcopy(t10x)
    t11.update({"tensorrt_version": "11.x", "opset_max": 25,
                "source": ("the 10.x profile (" + t10x["source"] + ") + TensorRT 11 parser release notes: "
                           "11.0 'Added support for Swish operator' "
                           "(https://github.com/NVIDIA/TensorRT/releases/tag/v11.0), 11.5 'Added support for "
                           "ONNX opset 25' and 'Squeeze when axis input is omitted' "
                           "(https://github.com/onnx/onnx-tensorrt/releases/tag/release%2F11.5-GA)"),
                "derived": ["Swish: supported FP32, FP16, BF16 (11.0)", "opset_max 25 (11.5)",
                            "Squeeze: axes may be omitted (11.5)"]})
    t11.pop("note", None)
    t11["operators"]["Swish"] = {"restrictions": "", "supported": True, "types": ["FP32", "FP16", "BF16"]}
    t11["operators"]["Squeeze"]["restrictions"] = "`axes` must be resolvable to a constant, or omitted."
    return {"10.3": t103, "10.x": t10x, "11.x": t11}


def write_tables() -> list[Path]:
    """Regenerate ``trt_onnx_operators_10.3.json`` and ``..._11.x.json`` (10.x is the stored source)."""
    from segstyle.core.io import write_json

    out = []
    for profile, table in build_tables().items():
        if profile != "10.x":
            write_json(table_path(profile), table)
            out.append(table_path(profile))
    support_table.cache_clear()
    return out


def _attrs(node) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _s(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def _walk(graph, prefix: str = "") -> Iterator[tuple[Any, Any]]:
    """(node, graph it lives in) for every node, descending into If/Loop/Scan bodies."""
    import onnx

    for node in graph.node:
        yield node, graph
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _walk(a.g, prefix + node.name + "/")
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _walk(g, prefix + node.name + "/")


def _constants(model) -> set[str]:
    """Tensor names whose value is known at build time (initializers, Constant outputs)."""
    names = {t.name for t in model.graph.initializer}
    for node, graph in _walk(model.graph):
        names.update(t.name for t in graph.initializer)
        if node.op_type == "Constant":
            names.update(node.output)
    return names


def _types(model) -> dict[str, int]:
    g = model.graph
    t = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.input) + list(g.output)}
    t.update({i.name: i.data_type for i in g.initializer})
    return t


def _check_attributes(node, consts: set[str], restrictions: str = "") -> list[str]:
    """Restriction violations of one node (messages), per the matrix's Restrictions column."""
    op, a, bad = node.op_type, _attrs(node), []
    if op in ("Slice", "Pad") and "`axes` must be an initializer" in restrictions:
        pos = 4 if op == "Slice" else 3
        if len(node.input) > pos and node.input[pos] and node.input[pos] not in consts:
            bad.append(f"{op} axes must be an initializer in this TensorRT release")
    if op == "Resize":
        mode = _s(a.get("mode", "nearest"))
        ctm = _s(a.get("coordinate_transformation_mode", "half_pixel"))
        nm = _s(a.get("nearest_mode", "round_prefer_floor"))
        if mode not in RESIZE_MODES:
            bad.append(f"Resize mode '{mode}' unsupported (nearest, linear)")
        if ctm not in RESIZE_COORD:
            bad.append(f"Resize coordinate_transformation_mode '{ctm}' unsupported")
        if mode == "nearest" and nm not in RESIZE_NEAREST:
            bad.append(f"Resize nearest_mode '{nm}' unsupported")
        if int(a.get("antialias", 0)):
            bad.append("Resize antialias unsupported")
        if _s(a.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
            bad.append("Resize keep_aspect_ratio_policy must be 'stretch'")
        axes = a.get("axes")
        if axes is not None and list(axes) != list(range(len(axes))):
            bad.append("Resize axes must be an iota vector (0..rank-1)")
    elif op == "Pad":
        mode = _s(a.get("mode", "constant"))
        if mode not in PAD_MODES:
            bad.append(f"Pad mode '{mode}' unsupported")
    elif op in POOL_OPS:
        ks = a.get("kernel_shape", [])
        if len(ks) not in (2, 3):
            bad.append(f"{op} is {len(ks)}D; only 2D or 3D pooling is supported")
        if any(d != 1 for d in a.get("dilations", [])):
            bad.append(f"{op} dilations must be empty or all ones")
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            bad.append("MaxPool Indices output unsupported")
    elif op in REDUCE_OPS or op in ("Squeeze", "Unsqueeze"):
        if len(node.input) > 1 and node.input[1] and node.input[1] not in consts:
            bad.append(f"{op} axes must be a build-time constant")
    elif op == "CumSum":
        if len(node.input) > 1 and node.input[1] not in consts:
            bad.append("CumSum axis must be a build-time constant")
    elif op == "TopK":
        if int(a.get("sorted", 1)) != 1:
            bad.append("TopK sorted must be 1")
        if len(node.input) > 1 and node.input[1] not in consts:
            bad.append("TopK K must be an initializer")
    elif op == "ScatterND":
        if _s(a.get("reduction", "none")) != "none":
            bad.append("ScatterND reduction other than 'none' unsupported")
    elif op == "LSTM":
        if int(a.get("input_forget", 0)) or int(a.get("layout", 0)):
            bad.append("LSTM input_forget and layout must be 0")
    elif op == "Constant":
        if any(k in a for k in ("sparse_value", "value_string", "value_strings")):
            bad.append("Constant sparse_value/value_string(s) unsupported")
    elif op == "Dropout":
        if len(node.input) > 2 and node.input[2] and node.input[2] not in consts:
            bad.append("Dropout is_training must be an initializer (False)")
    return bad


def lint_model(model, profile: str = DEFAULT_PROFILE) -> dict[str, Any]:
    """Lint a ``ModelProto`` against one TensorRT profile; returns the JSON-able report (``ok`` false on errors)."""
    import onnx

    table = support_table(profile)
    ops = table["operators"]
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # lint still works on op names without inferred types
        pass
    consts, types = _constants(model), _types(model)
    issues: list[Issue] = []
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not (table["opset_min"] <= imp.version <= table["opset_max"]):
            issues.append(Issue("error", "<opset>", "", f"opset {imp.version} outside TensorRT's "
                                f"{table['opset_min']}..{table['opset_max']}"))
    counts: dict[str, int] = {}
    for node, _ in _walk(model.graph):
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
        if node.domain not in ("", "ai.onnx"):
            issues.append(Issue("error", key, node.name, f"custom domain '{node.domain}' needs a TensorRT plugin"))
            continue
        entry = ops.get(node.op_type)
        if entry is None:
            issues.append(Issue("error", key, node.name, "not in TensorRT's ONNX operator matrix"))
            continue
        if not entry["supported"]:
            issues.append(Issue("error", key, node.name, "unsupported by TensorRT's ONNX parser"))
            continue
        for msg in _check_attributes(node, consts, entry.get("restrictions", "")):
            issues.append(Issue("error", key, node.name, msg))
        if node.input and node.input[0] in types and entry["types"]:
            dt = DTYPE_NAMES.get(types[node.input[0]])
            if dt and dt not in entry["types"] and not (dt == "DOUBLE" and "FP32" in entry["types"]):
                issues.append(Issue("warning", key, node.name,
                                    f"input type {dt} not listed for {key} ({', '.join(entry['types'])})"))
    rows = []
    for op in sorted(counts):
        errs = [i for i in issues if i.op == op and i.level == "error"]
        warns = [i for i in issues if i.op == op and i.level == "warning"]
        entry = ops.get(op, {})
        rows.append({"op": op, "count": counts[op],
                     "status": "error" if errs else ("warning" if warns else "ok"),
                     "restrictions": entry.get("restrictions", ""),
                     "problems": sorted({i.message for i in errs + warns})})
    n_err = sum(i.level == "error" for i in issues)
    return {"profile": profile, "table": table["source"], "tensorrt_table_version": table["tensorrt_version"],
            "opsets": {(i.domain or "ai.onnx"): i.version for i in model.opset_import},
            "ops": rows, "issues": [asdict(i) for i in issues], "errors": n_err,
            "warnings": sum(i.level == "warning" for i in issues), "ok": n_err == 0}


def print_report(report: dict[str, Any], title: str) -> None:
    """The lint table, one row per op type (rich renders to stderr-safe stdout)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"TensorRT {report['tensorrt_table_version']} ONNX support: {title}")
    t.add_column("op")
    t.add_column("nodes", justify="right")
    t.add_column("status")
    t.add_column("notes", overflow="fold")
    style = {"ok": "green", "warning": "yellow", "error": "bold red"}
    for r in report["ops"]:
        t.add_row(r["op"], str(r["count"]), f"[{style[r['status']]}]{r['status']}[/]",
                  "; ".join(r["problems"]) or r["restrictions"][:90])
    Console(width=140).print(t)
    Console().print(f"{report['errors']} error(s), {report['warnings']} warning(s)")
