"""Which layers of a TensorRT engine ran FP32, and did every kept op stay FP32: one implementation.

Two places need the same proof: the build (:mod:`segstyle.export.backend.trt.loader` writes the summary
into the engine sidecar, which ``segstyle engine validate`` reads) and the edge bundle's
``check.py --engine`` on the device. The bundle ships this file byte-identical as
``segstyle_layer_precision.py``, so it imports nothing but the standard library (``check.py``
must run with numpy alone) and raises :class:`LayerInfoError`, which segstyle turns into its
one-line :class:`~segstyle.core.errors.SegstyleError`.

Input is the layer information TensorRT writes with ``ProfilingVerbosity.DETAILED``: the engine
inspector's ``get_engine_information(LayerInformationFormat.JSON)`` or trtexec's
``--profilingVerbosity=detailed --exportLayerInfo=F.layers.json`` (the same JSON: ``{"Layers":
[...], "Bindings": [...]}``, each layer with ``Name``, ``LayerType``, ``Inputs``/``Outputs`` whose
tensors carry ``Format/Datatype``, and ``Metadata`` holding ``[ONNX Layer: <node>]`` records).
Fused layers are named ``a + b``; Myelin regions ``{ForeignNode[a...b]}`` hide their members.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

FLOATS = ("fp32", "fp16", "bf16")


class LayerInfoError(ValueError):
    """Layer information that cannot prove anything (missing, names only, no tensor formats)."""


def tensor_dtype(fmt: str) -> str:
    """``Format/Datatype`` text -> fp32 | fp16 | bf16 | int8 | int | unknown.

    With an execution context the inspector writes e.g. "Row major linear FP16 format"; without
    one it abbreviates ("Half", "Float"); a dynamic shape without a context gives "N/A ...".
    """
    f = str(fmt).lower()
    if not f or f.startswith("n/a"):
        return "unknown"
    if "bf16" in f or "bfloat16" in f:
        return "bf16"
    if "fp16" in f or "half" in f:
        return "fp16"
    if "fp32" in f or "float" in f:
        return "fp32"
    if "int8" in f:
        return "int8"
    if "int32" in f or "int64" in f or "bool" in f:
        return "int"
    return "unknown"


_META = re.compile(r"\[ONNX Layer: ([^\]|]+?)\s*(?:\||\])")


def layer_members(layer: Mapping[str, Any]) -> set[str]:
    """ONNX node names a (possibly fused) engine layer covers: ``a + b`` names and ``[ONNX Layer: x]`` metadata."""
    name = str(layer.get("Name", ""))
    members = {p.strip() for p in name.split(" + ") if p.strip()}
    members.update(m.strip() for m in _META.findall(str(layer.get("Metadata", ""))))
    return members


def layer_precision_report(layer_info: Mapping[str, Any] | Sequence[Any],
                           kept: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """What TensorRT actually chose, from engine-inspector / ``trtexec --exportLayerInfo`` JSON.

    ``kept``: op type -> ONNX node names that must compute FP32 (the FP16 graph's kept nodes, which
    are also the weak path's pins). A layer's precision is that of its float tensors: FP32 when any
    is FP32 (a kept op fused with its input Cast reads FP16 and computes/writes FP32). A kept node
    *ran FP16* (or another reduced precision) when no layer holding it has an FP32 tensor. Kept nodes hidden in a
    Myelin ``{ForeignNode[...]}`` cannot be placed and are listed as ``unplaced``, never passed.
    """
    layers = layer_info.get("Layers") if isinstance(layer_info, Mapping) else layer_info
    if not isinstance(layers, (list, tuple)) or not layers:
        raise LayerInfoError("layer information has no 'Layers' list (build with profilingVerbosity=detailed)")
    if any(not isinstance(layer, Mapping) for layer in layers):
        raise LayerInfoError("layer information holds names only; rebuild with profilingVerbosity=detailed")
    rows, unknown = [], 0
    for layer in layers:
        tensors = list(layer.get("Inputs", [])) + list(layer.get("Outputs", []))
        kinds = {tensor_dtype(t.get("Format/Datatype", "")) for t in tensors if isinstance(t, Mapping)}
        floats = kinds & set(FLOATS)
        if "unknown" in kinds and not floats:
            unknown += 1
        prec = next((p for p in FLOATS if p in floats), "other")
        rows.append({"name": str(layer.get("Name", "")), "type": str(layer.get("LayerType", "")),
                     "precision": prec, "members": layer_members(layer)})
    if unknown == len(rows):
        raise LayerInfoError("layer information has no tensor formats (dynamic shapes without an execution "
                             "context, or a build without profilingVerbosity=detailed)")
    by_prec: dict[str, int] = {}
    for r in rows:
        by_prec[r["precision"]] = by_prec.get(r["precision"], 0) + 1
    kept_report: dict[str, dict[str, list[str]]] = {}
    ran_fp16: list[str] = []
    unplaced: list[str] = []
    for op, names in kept.items():
        entry: dict[str, list[str]] = {"fp32": [], "fp16": [], "unplaced": []}
        for n in names:
            holders = [r for r in rows if n in r["members"]]
            if not holders:
                entry["unplaced"].append(n)
                unplaced.append(n)
            elif any(r["precision"] == "fp32" for r in holders):
                entry["fp32"].append(n)
            else:
                entry["fp16"].append(n)
                ran_fp16.append(f"{n} ({op}) in layer '{holders[0]['name']}' ran {holders[0]['precision']}")
        kept_report[op] = entry
    return {"layers": len(rows), "by_precision": by_prec,
            "fp32_layers": [r["name"] for r in rows if r["precision"] == "fp32"],
            "kept": kept_report, "kept_ran_fp16": ran_fp16, "kept_unplaced": unplaced,
            "ok": not ran_fp16}


def summary_lines(report: Mapping[str, Any], *, limit: int = 40) -> list[str]:
    """Human lines: the layers that ran FP32 (first ``limit``), then each kept op type's verdict."""
    fp32 = list(report["fp32_layers"])
    by = ", ".join(f"{k} {v}" for k, v in sorted(report["by_precision"].items()))
    lines = [f"layers: {report['layers']} ({by}); {len(fp32)} ran FP32:"]
    lines += [f"  {name}" for name in fp32[:limit]]
    if len(fp32) > limit:
        lines.append(f"  ... and {len(fp32) - limit} more")
    for op, entry in report["kept"].items():
        total = sum(len(v) for v in entry.values())
        if total:
            lines.append(f"kept {op}: {len(entry['fp32'])}/{total} FP32, {len(entry['fp16'])} FP16, "
                         f"{len(entry['unplaced'])} not placed (inside a fused Myelin region)")
    return lines


def layer_info_candidates(engine: str | Path) -> list[Path]:
    """Where an engine's layer information lives: trtexec's ``F.layers.json`` (the bundle README's
    lines) and segstyle's ``F.engine.layers.json`` (:func:`segstyle.export.backend.trt.loader.build_engine`)."""
    engine = Path(engine)
    return [engine.with_suffix(".layers.json"), Path(str(engine) + ".layers.json")]


def read_layer_info(path: str | Path) -> dict[str, Any]:
    """Load a layer-information JSON file; :class:`LayerInfoError` (one line) when unreadable."""
    path = Path(path)
    try:
        info = json.loads(path.read_text())
    except OSError as e:
        raise LayerInfoError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    except ValueError:
        raise LayerInfoError(f"{path}: not JSON (expected trtexec --exportLayerInfo output)") from None
    if not isinstance(info, (dict, list)):
        raise LayerInfoError(f"{path}: not TensorRT layer information")
    return info


def inspect_engine(trt, blob: bytes, input_name: str, shape: Sequence[int]) -> dict[str, Any]:
    """Engine-inspector JSON of a serialized engine, with formats resolved at ``shape``.

    ``trt`` is the imported ``tensorrt`` module (passed in: this module must import without it).
    A dynamic-shape engine reports no tensor formats unless an execution context with its input
    shape set is attached to the inspector. Layer detail needs an engine built with
    ``ProfilingVerbosity.DETAILED`` (else names only, which :func:`layer_precision_report` refuses).
    """
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(blob)
    if engine is None:
        raise LayerInfoError("TensorRT could not deserialize the engine (built by another TensorRT or GPU?)")
    context = engine.create_execution_context()
    context.set_input_shape(input_name, tuple(int(v) for v in shape))
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    return json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
