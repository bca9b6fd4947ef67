"""FP32 ONNX -> mixed-precision FP16 ONNX with FP32 inputs/outputs: the one precision recipe.

TensorRT 11 removed the weakly typed ``BuilderFlag.FP16`` and 10.x deprecated it (10.12): precision
lives in the graph, so the FP16 engine is built **strongly typed** from the graph this module
writes, on every TensorRT. NVIDIA's recommended converter is ModelOpt AutoCast, which is not
installable here; ``onnxconverter_common.float16`` does the same conversion with an explicit
operator block list.

The recipe is ONE list: ``params.yaml`` ``export.fp16_keep_fp32``. It is passed to the converter
as its whole ``op_block_list`` (the converter's own hidden default list of 28 ops is *not*
added; an op it would have blocked and that a graph needs in FP32 is written into params.yaml),
written into the graph's metadata, and it is what the TensorRT fallback pins
(:func:`segstyle.export.backend.trt.loader.fp32_pins`) and the bundle's trtexec lines are derived from.
Why each op of today's list stays FP32:

- ``InstanceNormalization``: its sum of squares over H*W overflows FP16 (TensorRT #2691,
  onnxruntime #10079), turning the style network's output into NaN;
- ``Resize``: coordinate arithmetic (source index = scale * destination index) loses whole pixels
  at large sizes in FP16;
- ``ReduceMean``: long sums; ``Softmax``: ``exp``.

"Kept" means kept: the initializers feeding a kept op (InstanceNorm scale/bias) stay the FP32
tensors of the source graph, bit for bit. The converter itself would round them to FP16 and cast
them back up when the exporter lists initializers in ``value_info`` (torch's dynamo exporter
does), so those entries are dropped first and the result is checked tensor by tensor.

Graph inputs/outputs stay FP32 (``keep_io_types``): callers feed the same 0..1 float32 images and
the bundle's golden data fits both graphs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segstyle.export.backend.onnx.loader import graph_precision, load_onnx, read_metadata, round_size, save_onnx
from segstyle.export.backend.onnxrt.loader import ort_session
from segstyle.core.errors import SegstyleError, first_line

CONVERTER = "onnxconverter_common.float16.convert_float_to_float16"


def keep_list(keep_fp32: Sequence[str]) -> list[str]:
    """The recipe as a sorted list of distinct op types (one-line error for a malformed entry)."""
    bad = [k for k in keep_fp32 if not isinstance(k, str) or not k or not k[0].isupper()]
    if bad:
        raise SegstyleError(f"export.fp16_keep_fp32 must list ONNX op types (e.g. Resize); got {bad!r}")
    return sorted(set(keep_fp32))


def _drop_initializer_value_info(model) -> int:
    """Remove ``value_info`` entries that name initializers (see the module docstring); returns the count."""
    inits = {t.name for t in model.graph.initializer}
    keep = [vi for vi in model.graph.value_info if vi.name not in inits]
    dropped = len(model.graph.value_info) - len(keep)
    if dropped:
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep)
    return dropped


def convert_fp16(model, keep_fp32: Sequence[str], *, name: str = "graph"):
    """Return the mixed-precision copy of an FP32 ``ModelProto`` (checked, metadata kept).

    Every converter, shape-inference or checker failure is one :class:`SegstyleError` line naming
    ``name`` (the graph's file).
    """
    keep = keep_list(keep_fp32)
    precision = graph_precision(model)
    if precision != "fp32":
        raise SegstyleError(f"{name}: the graph is already {precision.upper()} (FP16 or 8-bit weights); "
                            "give the FP32 ONNX file")
    out = convert_mixed(model, keep, name=name)
    meta = read_metadata(out)
    meta["segstyle.precision"] = "fp16 mixed (fp32 io)"
    meta["segstyle.fp16_kept_fp32"] = ",".join(keep)
    meta["segstyle.fp16_converter"] = f"{CONVERTER}(keep_io_types=True, op_block_list=fp16_kept_fp32)"
    del out.metadata_props[:]
    for k, v in meta.items():
        out.metadata_props.add(key=k, value=v)
    return out


def convert_mixed(model, keep_fp32: Sequence[str], *, node_block_list: Sequence[str] = (), name: str = "graph"):
    """The recipe itself: every float op FP16 except the ``keep_fp32`` op types and ``node_block_list``
    nodes, FP32 graph inputs/outputs, kept initializers bit for bit. Also run on an INT8 Q/DQ graph
    (:mod:`segstyle.export.backend.onnx.int8`, TensorRT target), where it makes everything between the
    INT8 layers FP16; that caller keeps the Q/DQ nodes themselves FP32 by listing them in ``keep_fp32``.

    A ``Cast`` to FLOAT (a boolean mask or an integer count made a float: the pooling bins and
    unpool switches of :mod:`segstyle.models.pooling`) stays FP32, with the converter's own cast to
    FP16 after it: onnxconverter-common retypes such a node's output to FP16 but leaves its ``to``
    attribute FLOAT, a graph shape inference rejects. Values it casts are exact in FP16 anyway
    (0/1 masks, small counts)."""
    import onnx
    from onnxconverter_common import float16

    keep = keep_list(keep_fp32)
    float_casts = [n.name for n in model.graph.node if n.op_type == "Cast"
                   and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    src = onnx.ModelProto()
    src.CopyFrom(model)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    _drop_initializer_value_info(work)
    try:
        with warnings.catch_warnings():  # "float32 number ... will be truncated": expected for tiny weights
            warnings.simplefilter("ignore", UserWarning)
            out = float16.convert_float_to_float16(work, keep_io_types=True, op_block_list=list(keep),
                                                   node_block_list=list(node_block_list) + float_casts)
        _force_fp32_outputs(out)
        changed = kept_initializer_mismatches(src, out, keep)
        if changed:
            raise SegstyleError(f"the converter changed {len(changed)} initializer(s) of kept FP32 ops, "
                                f"first {changed[0]}")
        out = onnx.shape_inference.infer_shapes(out)
        onnx.checker.check_model(out, full_check=True)
    except SegstyleError as e:
        raise SegstyleError(f"{name}: FP16 conversion failed: {e}") from None
    except Exception as e:  # converter bugs, onnx.checker.ValidationError, InferenceError
        raise SegstyleError(f"{name}: FP16 conversion failed: {type(e).__name__}: {first_line(e, 200)}") from None
    return out


def _force_fp32_outputs(model) -> None:
    """Append ``Cast(to=FLOAT)`` to any graph output the converter left FP16.

    ``keep_io_types`` misses outputs produced by a blocked op (e.g. a final Resize); FP32 I/O is the
    contract of the FP16 graph (same golden data, same caller code), so restore it explicitly.
    """
    import onnx
    from onnx import helper

    for out in model.graph.output:
        tt = out.type.tensor_type
        if tt.elem_type != onnx.TensorProto.FLOAT16:
            continue
        inner = out.name + "_fp16"
        for node in model.graph.node:
            node.output[:] = [inner if o == out.name else o for o in node.output]
            node.input[:] = [inner if i == out.name else i for i in node.input]
        model.graph.node.append(helper.make_node("Cast", [inner], [out.name], to=onnx.TensorProto.FLOAT,
                                                 name=out.name + "_to_fp32"))
        tt.elem_type = onnx.TensorProto.FLOAT


def _tensor_types(model) -> dict[str, int]:
    g = model.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def kept_initializer_mismatches(src, out, keep_fp32: Sequence[str]) -> list[str]:
    """Initializers feeding kept ops in ``out`` that are not the source graph's FP32 tensor, bit for bit.

    An input reached through ``Cast`` nodes is followed back to where it comes from, so an
    initializer rounded to FP16 and cast back up (the converter's failure mode) is reported.
    """
    from onnx import numpy_helper

    keep = set(keep_fp32)
    src_inits = {t.name: t for t in src.graph.initializer}
    out_inits = {t.name: t for t in out.graph.initializer}
    producer = {o: n for n in out.graph.node for o in n.output}
    bad = []
    for node in out.graph.node:
        if node.op_type not in keep:
            continue
        for name in node.input:
            seen = name
            while seen in producer and producer[seen].op_type == "Cast" and seen not in out_inits:
                seen = producer[seen].input[0]
            if seen not in out_inits:
                continue
            if seen not in src_inits:
                continue  # created by the converter (never for kept ops today); nothing to compare with
            a, b = numpy_helper.to_array(src_inits[seen]), numpy_helper.to_array(out_inits[seen])
            if seen != name or a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
                bad.append(f"{node.name}:{seen} ({b.dtype}{' behind a Cast' if seen != name else ''})")
    return bad


def kept_nodes(model, keep_fp32: Sequence[str]) -> dict[str, list[str]]:
    """Op type -> names of the nodes of a listed type, in graph order (top-level graph).

    On the FP16 graph these are the nodes that must compute in FP32; on the FP32 graph they are
    what the weakly typed TensorRT fallback pins. Every listed op type appears as a key (an empty
    list when the graph has none), so callers compare counts, not mere presence.
    """
    out: dict[str, list[str]] = {op: [] for op in keep_list(keep_fp32)}
    for node in model.graph.node:
        if node.op_type in out:
            out[node.op_type].append(node.name)
    return out


def fp32_islands(model, keep_fp32: Sequence[str]) -> dict[str, int]:
    """How many nodes of each kept op type compute in FP32: every float input and output is FP32.

    Types come from the graph's own value_info (shape inference); a kept node with an FP16 float
    input or output is not counted, so a recipe that was not applied shows up as a smaller count.
    """
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    types = _tensor_types(model)
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    counts: dict[str, int] = {}
    keep = set(keep_fp32)
    for node in model.graph.node:
        if node.op_type not in keep:
            continue
        ts = [types.get(t) for t in list(node.input) + list(node.output) if t]
        fl = [t for t in ts if t in floats]
        if fl and all(t == onnx.TensorProto.FLOAT for t in fl):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def export_fp16(src: str | Path, dest: str | Path, keep_fp32: Sequence[str]):
    model = load_onnx(src)
    out = convert_fp16(model, keep_fp32, name=str(src))
    save_onnx(out, dest)
    return out


def compare_fp16(reference, fp16_path: str | Path, *, sizes: Sequence[Sequence[int]], batch: int = 2,
                 seed: int = 0, divisor: int = 1, task: str = "segmentation",
                 reference_name: str = "pytorch-fp32", noise_dim: int | None = None) -> dict[str, Any]:
    """ONNX Runtime CPU on the FP16 graph vs an FP32 reference: max/mean abs error and argmax agreement.

    ``reference(x: torch.Tensor) -> np.ndarray`` is PyTorch FP32 when the network is at hand (else
    the FP32 ONNX graph under ORT). Where ORT's CPU provider lacks an FP16 kernel the record says so
    instead of inventing numbers. A noise network (``noise_dim``) gets one seeded N(0, 1) batch
    instead of one image batch per size.
    """
    import torch

    from segstyle.export.backend.pyt.loader import example_input

    base = {"runtime": "onnxruntime CPUExecutionProvider", "reference": reference_name}
    try:
        sess = ort_session(fp16_path)
    except SegstyleError as e:
        return {**base, "ran": False, "reason": str(e)}
    name = sess.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for size in (sizes if noise_dim is None else [None]):
        h, w = round_size(size, divisor) if size is not None else (None, None)
        x = example_input(noise_dim, batch, (h, w), gen)
        ref = np.asarray(reference(x), dtype=np.float64)
        try:
            got = sess.run(None, {name: x.numpy()})[0]
        except Exception as e:
            return {**base, "ran": False, "reason": first_line(e, 200)}
        from segstyle.export.portable.compare import Tolerance, compare_arrays

        # FP16 keeps ~3 significant digits: 1 % of the output's largest magnitude (tests/test_export_onnx.py)
        tol = Tolerance(atol=0.01 * float(np.abs(ref).max()), statistic="max")
        c = compare_arrays(got, ref, tol, argmax_axis=1 if task == "segmentation" else None)
        row = {"size": [h, w], "input_shape": list(x.shape), "batch": batch, "max_abs_err": c.max_abs,
               "mean_abs_err": c.mean_abs,
               "required_atol": c.required_atol, "finite": c.finite, "passed": c.passed}
        if c.argmax_agreement_pct is not None:
            row["argmax_agreement_pct"] = c.argmax_agreement_pct
        rows.append(row)
    return {**base, "ran": True, "rows": rows, "max_abs_err": max(r["max_abs_err"] for r in rows)}
