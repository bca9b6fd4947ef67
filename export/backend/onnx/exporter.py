"""PyTorch -> ONNX: one self-contained file, dynamic batch/height/width, provenance in the metadata.

Why each step:

- ``torch.onnx.export(..., dynamo=True)`` is torch's default exporter; it writes external data for
  large models unless told otherwise, and an edge device wants one file, so the proto is saved with
  ``save_as_external_data=False`` (the models here are far below protobuf's 2 GiB limit).
- ``onnx.checker.check_model(full_check=True)`` runs strict shape inference too: a graph that
  passes it is one TensorRT's parser and ONNX Runtime both accept structurally.
- Symbolic dims are renamed ``batch``/``height``/``width`` so ``trtexec --minShapes=input:...`` and
  the bundle README read naturally.
- ``metadata_props`` carry model, task, classes, normalisation and two labelled moments: the
  training provenance from the checkpoint (``segstyle.training.*``: data version, commit, digest of
  the parameters as used, overrides) and the export's own (``segstyle.export.*``), so an engine
  file on a device traces back to what made it without mixing today's params.yaml into it.
- Parity is measured with ONNX Runtime at sizes *not* used for export and at batch 1 and 3: a graph
  that silently baked in the export shape fails there.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from segstyle.core.errors import SegstyleError, first_line
from segstyle.export.backend.onnx.loader import DIM_NAMES, INPUT_NAME, output_name, round_size, save_onnx
from segstyle.export.portable.compare import PARITY, Tolerance, compare_arrays

if TYPE_CHECKING:
    import torch

    from segstyle.export.backend.pyt.loader import LoadedNet
    from segstyle.export.settings import ExportSettings

PARITY_ATOL = PARITY.atol  # the one statement of the tolerance: segstyle.export.portable.compare.PARITY


def build_metadata(loaded: LoadedNet, settings: ExportSettings, *, opset: int, size: Sequence[int]) -> dict[str, str]:
    """The provenance strings written into ``metadata_props`` (all values are strings in ONNX)."""
    import torch

    from segstyle.models import get_model_meta
    from segstyle.core.provenance import export_record, metadata_strings

    meta = get_model_meta(loaded.model)
    return {
        "segstyle.model": loaded.model,
        "segstyle.task": loaded.task,
        "segstyle.model_kwargs": json.dumps(loaded.model_kwargs, sort_keys=True),
        "segstyle.classes": json.dumps(loaded.classes),
        "segstyle.mean": json.dumps(list(meta.mean)),
        "segstyle.std": json.dumps(list(meta.std)),
        "segstyle.input_range": meta.input_range,
        "segstyle.normalisation": ("inside the graph: feed 0..1 RGB NCHW float32" if loaded.noise_dim is None else
                                   f"feed N(0, 1) noise (N, {loaded.noise_dim}) float32; output 0..1 RGB"),
        "segstyle.input_kind": meta.input_kind,
        **({"segstyle.noise_dim": str(loaded.noise_dim)} if loaded.noise_dim is not None else {}),
        "segstyle.input": INPUT_NAME,
        "segstyle.output": output_name(loaded.task),
        "segstyle.export_size": json.dumps(list(size)),
        "segstyle.opset": str(opset),
        "segstyle.profile": settings.profile,
        **metadata_strings(loaded.training, export_record(settings.params_digest, settings.profile)),
        "segstyle.checkpoint_sha256": loaded.checkpoint_sha256 or "none (fresh seeded weights)",
        "segstyle.torch": torch.__version__,
    }


def _rename_dims(model) -> None:
    """Give the exporter's symbolic dims (``s77``...) the names batch/height/width everywhere."""
    rename: dict[str, str] = {}
    for vi in list(model.graph.input) + list(model.graph.output):
        for dim, new in zip(vi.type.tensor_type.shape.dim, DIM_NAMES):
            if new and dim.HasField("dim_param") and dim.dim_param not in rename:
                rename[dim.dim_param] = new
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for dim in vi.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in rename:
                dim.dim_param = rename[dim.dim_param]


def torch_to_onnx_proto(loaded: LoadedNet, *, opset: int, size: Sequence[int]):
    """Export the wrapped network with dynamic batch/H/W and return the in-memory ``ModelProto``.

    A noise network (``loaded.noise_dim``) takes (N, nz): only the batch is dynamic.
    """
    import torch
    from torch.export import Dim

    from segstyle.export.backend.pyt.loader import ExportWrapper, example_input

    wrapper = ExportWrapper(loaded.net).eval()
    dummy = example_input(loaded.noise_dim, 1, size, torch.Generator().manual_seed(0))
    dyn = {"x": {0: Dim.DYNAMIC} if loaded.noise_dim is not None else {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (dummy,), input_names=[INPUT_NAME], output_names=[output_name(loaded.task)],
                opset_version=opset, dynamic_shapes=dyn, dynamo=True, external_data=False,
                verbose=False,
            )
    except Exception as e:
        raise SegstyleError(f"ONNX export of '{loaded.model}' failed: {type(e).__name__}: {first_line(e, 300)}") from None
    return program.model_proto


#: Node metadata the dynamo exporter writes that names files on the exporting machine (Python stack
#: traces with absolute paths): the same code and weights exported from two checkouts gave two
#: different files, so DVC saw a changed output and every downstream stage reran.
PATH_METADATA_KEYS = ("pkg.torch.onnx.stack_trace",)


def strip_source_paths(model) -> None:
    """Drop :data:`PATH_METADATA_KEYS` from every node (subgraphs included); the module hierarchy
    (``namespace``, ``pkg.torch.onnx.name_scopes``) that Netron and Polygraphy show stays."""
    def graphs(g):
        yield g
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    yield from graphs(attr.g)
                for sub in attr.graphs:
                    yield from graphs(sub)

    for g in graphs(model.graph):
        for node in g.node:
            keep = [(p.key, p.value) for p in node.metadata_props if p.key not in PATH_METADATA_KEYS]
            if len(keep) != len(node.metadata_props):
                del node.metadata_props[:]
                for k, v in keep:
                    node.metadata_props.add(key=k, value=v)


def finalize(model, metadata: dict[str, str]):
    """Attach metadata, infer shapes and run the full checker; returns the checked proto."""
    import onnx

    del model.metadata_props[:]
    for k, v in metadata.items():
        model.metadata_props.add(key=k, value=v)
    strip_source_paths(model)
    model.producer_name = "segstyle"
    _rename_dims(model)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(loaded: LoadedNet, settings: ExportSettings, dest: str | Path, *, opset: int | None = None,
                size: Sequence[int] | None = None):
    """Export, annotate, check and atomically save; returns the checked ``ModelProto``."""
    from segstyle.models import get_model_meta

    opset = opset or settings.opset
    meta = get_model_meta(loaded.model)
    size = round_size(size or meta.export_size or settings.size, meta.size_divisor)
    proto = torch_to_onnx_proto(loaded, opset=opset, size=size)
    proto = finalize(proto, build_metadata(loaded, settings, opset=opset, size=size))
    save_onnx(proto, dest)
    return proto


def parity(net: torch.nn.Module, onnx_path: str | Path, *, sizes: Sequence[Sequence[int]],
           batches: Sequence[int] = (1, 3), seed: int = 0, atol: float = PARITY_ATOL,
           divisor: int = 1, noise_dim: int | None = None) -> dict[str, Any]:
    """ONNX Runtime (CPU) vs PyTorch FP32 on seeded random inputs; one row per (size, batch).

    Inputs are 0..1 images at each of ``sizes``, or, for a noise network (``noise_dim``), N(0, 1)
    noise batches (sizes do not apply: one row per batch).
    """
    import torch

    from segstyle.export.backend.onnxrt.loader import ort_session
    from segstyle.export.backend.pyt.loader import example_input, export_output

    from segstyle.export.backend.onnx.routing import is_routed, routed_compare, session_with_switches

    # a routed network's session also returns its switch masks (extra outputs after the logits)
    routed = session_with_switches(onnx_path) if is_routed(net) else None
    sess = routed[0] if routed is not None else ort_session(onnx_path)
    in_name = sess.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for size in (sizes if noise_dim is None else [None]):
        h, w = round_size(size, divisor) if size is not None else (None, None)
        for b in batches:
            x = example_input(noise_dim, b, (h, w), gen)
            with torch.no_grad():
                ref = export_output(net, x).float().numpy()
            try:
                outs = sess.run(None, {in_name: x.numpy()})
                got = outs[0]
            except Exception as e:  # a graph that baked in the export shape can fail outright
                rows.append({"size": [h, w], "input_shape": list(x.shape), "batch": b, "shape_ok": False,
                             "max_abs_err": float("inf"),
                             "error": first_line(e, 200), "ok": False})
                continue
            if got.shape != ref.shape:
                rows.append({"size": [h, w], "input_shape": list(x.shape), "batch": b, "shape_ok": False,
                             "onnx_shape": list(got.shape),
                             "torch_shape": list(ref.shape), "max_abs_err": float("inf"), "ok": False})
                continue
            c = compare_arrays(got, ref, Tolerance(atol=atol, rtol=PARITY.rtol, statistic=PARITY.statistic))
            row = {"size": [h, w], "input_shape": list(x.shape), "batch": b, "shape_ok": True,
                   "max_abs_err": c.max_abs,
                   "mean_abs_err": c.mean_abs, "max_rel_err": c.max_rel, "required_atol": c.required_atol,
                   "ref_abs_max": float(np.abs(ref).max()), "ok": c.passed}
            if routed is not None:  # judged with the graph's own switches (routing.py); the plain error stays shown
                r = routed_compare(net, *routed, x, atol=atol, decision_atol=atol, outputs=outs)
                row.update({"routing": {k: r[k] for k in ("forced_max_abs_err", "flipped_windows", "windows",
                                                          "max_flip_margin", "margin_over_bound", "decision_atol")},
                            "ok": r["passed"]})
            rows.append(row)
    out = {"onnx": str(onnx_path), "runtime": "onnxruntime CPUExecutionProvider", "atol": atol,
           "rows": rows, "max_abs_err": max(r["max_abs_err"] for r in rows),
           "passed": all(r["ok"] for r in rows)}
    if routed is not None:
        out["judged_by"] = ("routed: the graph's own switches forced into PyTorch (export/backend/onnx/routing.py); "
                            f"every flipped window a PyTorch near-tie within {atol:g}")
        out["forced_max_abs_err"] = max(r.get("routing", {}).get("forced_max_abs_err", float("inf")) for r in rows)
    return out
