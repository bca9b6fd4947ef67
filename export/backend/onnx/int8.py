"""FP32 ONNX -> calibrated INT8 Q/DQ ONNX, for TensorRT (``trt``) or for ONNX Runtime CPU (``cpu``): the one INT8 recipe.

One Q/DQ graph cannot serve both runtimes, so there are two targets, both written by ONNX
Runtime's ``quantize_static`` (QDQ format, per-channel signed weights, post-training calibration on
a seeded draw of training images; NVIDIA's ModelOpt knows TensorRT's placements too, but pins an
older ``onnxruntime-gpu`` that would replace the project's ``onnxruntime`` module):

- ``trt``: signed *symmetric* INT8 activations and weights (TensorRT's explicit quantization takes
  nothing else), Q/DQ on the **inputs** of the ops TensorRT fuses in INT8 (Conv, ConvTranspose,
  Gemm/MatMul, the residual Add, Concat, pooling) and never on a weighted op's output, so
  TensorRT fuses conv+bias+ReLU and the residual add into one INT8 kernel (TensorRT developer
  guide, "Explicit Quantization", Q/DQ placement): a residual Add keeps its conv operand float (Q/DQ
  on the other operand only), biases stay float (TensorRT has no INT32 dequantize). Everything
  outside the INT8 layers is then FP16 (the FP16 recipe of :mod:`segstyle.export.backend.onnx.fp16`;
  the Q/DQ nodes and their scales stay FP32: small per-channel weight scales are FP16 subnormals),
  so a strongly typed build runs INT8 + FP16 with no builder flags (TensorRT 10.x/11.x). Not built
  on a TensorRT device here (no TensorRT on these machines): whether the builder fuses every
  ``DQ -> Cast -> Conv`` is not measured;
- ``cpu``: the graph ONNX Runtime CPU runs fastest: unsigned activations, signed per-channel
  weights (U8S8, which its QDQ-to-QLinearConv fusion turns into integer kernels), and on x86 CPUs
  without VNNI ``reduce_range`` (7-bit weights: ONNX Runtime's guidance against U8S8 saturation in
  ``vpmaddubsw``). ConvTranspose, which that provider has no integer kernel for, is first rewritten
  exactly as Conv + DepthToSpace (:mod:`segstyle.export.backend.onnx.subpixel`); one the rewrite
  does not cover stays float.

Both keep the FP16 recipe's float ops (``export.fp16_keep_fp32``: InstanceNorm, Resize, ReduceMean,
Softmax) and the per-network node selectors of ``export.int8.keep_float`` in FP32. The graph is
byte-identical on a rerun with the same graph, images and parameters (a test), and the
calibration record (image ids, method, every quantised tensor's range, read back from the graph's
own Q nodes) is written beside it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from segstyle.core.errors import SegstyleError, first_line
from segstyle.export.backend.onnx.loader import graph_precision, load_onnx, read_metadata, save_onnx

TARGETS = ("trt", "cpu")
#: Ops whose inputs get Q/DQ in the TensorRT graph (and whose outputs never do).
TRT_INT8_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Concat", "MaxPool", "AveragePool",
                "GlobalAveragePool")
#: The cpu target's ops: those ONNX Runtime's CPU provider fuses with their Q/DQ into integer kernels
#: (QLinearConv, QLinearMatMul, QLinearAdd, QLinearConcat, QLinearPool); elementwise and norm ops of the
#: style network's colour step stay float rather than round-trip through 8 bits.
CPU_INT8_OPS = ("Conv", "Gemm", "MatMul", "Add", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu", "DepthToSpace",
                "Clip")
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Kept FP32 in the TensorRT graph's FP16 conversion: FP16 scales are wrong for small weights (a per-channel
#: weight scale below 6.1e-5 is an FP16 subnormal): pets' FCN fell to 71 % argmax agreement with them, 99.7 % without.
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
QUANTISER = "onnxruntime.quantization.quantize_static (QDQ)"


@dataclass(frozen=True)
class Int8Recipe:
    """Everything that decides an INT8 graph besides the source graph and the calibration images."""

    target: str
    method: str
    percentile: float
    float_ops: tuple[str, ...]        # op types kept float (fp16_keep_fp32)
    float_nodes: tuple[str, ...]      # node selectors kept float (first:Conv, last:Conv, names)
    reduce_range: bool
    activations: str                  # "int8 symmetric" | "uint8 asymmetric"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``: x86 ``flags``, ARM ``Features``); empty where it does not exist."""
    from segstyle.core.devices import cpuinfo

    return set((cpuinfo("flags") or cpuinfo("Features") or "").split())


def needs_reduce_range(flags: Iterable[str] | None = None, machine: str | None = None) -> bool:
    """ONNX Runtime's advice for U8S8 on x86: 7-bit weights where the CPU lacks VNNI (AVX2/AVX-512
    without it saturate in ``vpmaddubsw``); VNNI CPUs and ARM (which has no such instruction) use 8 bits."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i686", "x86"):
        return False
    flags = set(cpu_flags() if flags is None else flags)
    return not ({"avx512_vnni", "avx_vnni", "avx512vnni"} & flags)


def make_recipe(int8: dict[str, Any], keep_fp32: Sequence[str], target: str, network: str | None,
                *, reduce_range: bool | None = None) -> Int8Recipe:
    """The recipe of ``target`` from ``params.yaml`` ``export.int8`` (as a plain dict) and the FP16 keep list."""
    if target not in TARGETS:
        raise SegstyleError(f"INT8 target must be one of {', '.join(TARGETS)}, not {target!r}")
    cal = int8["calibration"]
    ops = set(keep_fp32)
    nodes = tuple((int8.get("keep_float") or {}).get(network or "", []))
    rr = False if target == "trt" else (needs_reduce_range() if reduce_range is None else bool(reduce_range))
    return Int8Recipe(target=target, method=str(cal["method"]), percentile=float(cal.get("percentile", 99.999)),
                      float_ops=tuple(sorted(ops)), float_nodes=nodes, reduce_range=rr,
                      activations="int8 symmetric" if target == "trt" else "uint8 asymmetric")


def select_nodes(model, selectors: Sequence[str]) -> list[str]:
    """Node names for ``first:<Op>`` / ``last:<Op>`` (the first / last node of that type), ``op:<Op>``
    (every node of that type) or a node name; a selector that matches nothing is an error, not a
    silent no-op."""
    nodes = list(model.graph.node)
    names = []
    for sel in selectors:
        kind, _, op = sel.partition(":")
        if kind in ("first", "last", "op") and op:
            hits = [n.name for n in nodes if n.op_type == op]
            if not hits:
                raise SegstyleError(f"export.int8.keep_float: {sel}: the graph has no {op} node")
            names += hits if kind == "op" else [hits[0] if kind == "first" else hits[-1]]
        elif any(n.name == sel for n in nodes):
            names.append(sel)
        else:
            raise SegstyleError(f"export.int8.keep_float: no node named {sel!r} (use first:<Op>, last:<Op>, op:<Op> "
                                "or a name)")
    return names


class ArrayReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of input arrays, one batch each."""

    def __init__(self, input_name: str, arrays: Sequence[np.ndarray]):
        self.input_name, self.arrays, self._i = input_name, list(arrays), 0

    def get_next(self):
        if self._i >= len(self.arrays):
            return None
        self._i += 1
        return {self.input_name: np.ascontiguousarray(self.arrays[self._i - 1], dtype=np.float32)}

    def rewind(self) -> None:
        self._i = 0

    def __len__(self) -> int:
        return len(self.arrays)


def _method(recipe: Int8Recipe):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[recipe.method]


def quantize_int8(src: str | Path, calibration: Sequence[np.ndarray], recipe: Int8Recipe, *,
                  calibration_ids: Sequence[str] = (), calibration_source: str = ""):
    """Return ``(ModelProto, record)``: the INT8 graph of ``src`` under ``recipe``, calibrated on ``calibration``.

    Every quantiser, converter or checker failure is one :class:`SegstyleError` line naming ``src``.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = load_onnx(src)
    precision = graph_precision(model)
    if precision != "fp32":
        raise SegstyleError(f"{src}: the graph is already {precision.upper()}; give the FP32 ONNX file")
    if not calibration:
        raise SegstyleError(f"{src}: no calibration inputs")
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="segstyle-int8-") as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # ONNX Runtime's own pre-processing (constant folding, BN fusion, shape inference) before
                # quantising, as its docs ask; symbolic shape inference cannot follow our dynamic H/W
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
                prepared = onnx.load(str(pre))
                trt = recipe.target == "trt"
                subpixel: dict[str, Any] = {}
                if not trt:  # no integer (and a slow float) ConvTranspose kernel on ONNX Runtime CPU
                    from segstyle.export.backend.onnx.subpixel import convtranspose_to_conv

                    prepared, done, skipped = convtranspose_to_conv(prepared)
                    subpixel = {"rewritten": done, "left": [f"{n}: {why}" for n, why in skipped]}
                    onnx.save(prepared, str(pre))
                keep_nodes = select_nodes(prepared, recipe.float_nodes)
                left_float = {"ConvTranspose"} if not trt else set()
                exclude = sorted({n.name for n in prepared.graph.node if n.op_type in set(recipe.float_ops) | left_float}
                                 | set(keep_nodes))
                extra = {"ActivationSymmetric": trt, "WeightSymmetric": True,
                         "CalibPercentile": recipe.percentile}
                if trt:  # no Q/DQ on weighted ops' outputs; biases stay float (TensorRT has no INT32 dequantize)
                    extra["OpTypesToExcludeOutputQuantization"] = list(TRT_INT8_OPS)
                    extra["QuantizeBias"] = False
                quantize_static(
                    str(pre), str(q), ArrayReader(input_name, calibration), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(TRT_INT8_OPS if trt else CPU_INT8_OPS), per_channel=True,
                    reduce_range=recipe.reduce_range,
                    activation_type=QuantType.QInt8 if trt else QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude, calibrate_method=_method(recipe),
                    calibration_providers=["CPUExecutionProvider"], extra_options=extra)
            out = onnx.load(str(q))
        except SegstyleError:
            raise
        except Exception as e:
            raise SegstyleError(f"{src}: INT8 quantisation failed: {type(e).__name__}: {first_line(e, 200)}") from None
    residual_adds: list[str] = []
    if trt:  # TensorRT's residual rule, then FP16 outside the INT8 layers (the FP16 recipe; kept nodes by name too)
        from segstyle.export.backend.onnx.fp16 import convert_mixed

        residual_adds = _unquantize_conv_branch_of_adds(out)
        out = convert_mixed(out, list(recipe.float_ops) + list(QDQ_OPS), node_block_list=keep_nodes, name=str(src))
    ranges = tensor_ranges(out)
    if not ranges:
        raise SegstyleError(f"{src}: INT8 quantisation quantised nothing (every op kept float?)")
    meta = read_metadata(model)
    meta.update({
        "segstyle.precision": "int8 " + ("Q/DQ + fp16 (trt)" if trt else "Q/DQ (cpu)"),
        "segstyle.int8_target": recipe.target,
        "segstyle.int8_recipe": json.dumps(recipe.to_dict(), sort_keys=True),
        "segstyle.int8_quantiser": QUANTISER,
        "segstyle.int8_calibration": f"{len(calibration)} inputs, {calibration_source}, ids sha256 "
                                     f"{ids_digest(calibration_ids)}",
        "segstyle.int8_calibration_ids": json.dumps(list(calibration_ids)),
    })
    del out.metadata_props[:]
    for k, v in meta.items():
        out.metadata_props.add(key=k, value=v)
    try:
        onnx.checker.check_model(out, full_check=True)
    except Exception as e:
        raise SegstyleError(f"{src}: the INT8 graph fails the ONNX checker: {first_line(e, 200)}") from None
    counts: dict[str, int] = {}
    for n in out.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    record = {
        "source": str(src), "target": recipe.target, "recipe": recipe.to_dict(), "quantiser": QUANTISER,
        "calibration": {"inputs": len(calibration), "source": calibration_source, "ids": list(calibration_ids),
                        "shape": list(np.asarray(calibration[0]).shape), "method": recipe.method},
        "float_nodes": keep_nodes, "excluded_nodes": len(exclude), "convtranspose_to_subpixel_conv": subpixel,
        "residual_adds_fused": residual_adds, "op_counts": dict(sorted(counts.items())),
        "int8_ops": int8_consumers(out, exclude), "tensor_ranges": ranges,
    }
    return out, record


def _unquantize_conv_branch_of_adds(model) -> list[str]:
    """TensorRT's residual rule: an Add fed by a conv keeps that operand float (Q/DQ only on the other,
    residual, operand), so the builder fuses conv + add (+ ReLU) into one INT8 kernel. ONNX Runtime's QDQ
    quantiser puts a Q/DQ pair on both operands; the pair on the conv side is bypassed here (when nothing
    else reads it). Returns the Add nodes changed."""
    producer = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    dead, changed = set(), []
    for add in (n for n in model.graph.node if n.op_type == "Add"):
        for k, name in enumerate(add.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            src = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            if src is None or src.op_type not in WEIGHTED or readers.get(dq.output[0]) != 1 \
                    or readers.get(q.output[0]) != 1:
                continue
            add.input[k] = q.input[0]
            dead |= {id(q), id(dq)}
            changed.append(add.name)
    if dead:
        keep = [n for n in model.graph.node if id(n) not in dead]
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return changed


def calibration_record(model) -> dict[str, Any]:
    """What a graph says about its own calibration (metadata + the ranges of its Q nodes): the bundle's
    ``calibration.json``, readable without the pipeline's records."""
    meta = read_metadata(model)
    return {"target": meta.get("segstyle.int8_target"), "quantiser": meta.get("segstyle.int8_quantiser"),
            "recipe": json.loads(meta.get("segstyle.int8_recipe", "{}")),
            "calibration": meta.get("segstyle.int8_calibration"),
            "ids": json.loads(meta.get("segstyle.int8_calibration_ids", "[]")),
            "tensor_ranges": tensor_ranges(model)}


def ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def tensor_ranges(model) -> dict[str, list[float]]:
    """Each quantised tensor's calibrated range ``[lo, hi]``, read back from its QuantizeLinear's
    scale and zero point (per-tensor activations; weights are stored already quantised)."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def const(name):
        if name in inits:
            return inits[name]
        node = producer.get(name)
        if node is not None and node.op_type == "Cast" and node.input[0] in inits:
            return inits[node.input[0]]
        return None

    out: dict[str, list[float]] = {}
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        scale, zp = const(n.input[1]), const(n.input[2]) if len(n.input) > 2 else None
        if scale is None or np.asarray(scale).size != 1:
            continue
        zp_arr = np.zeros((), np.uint8) if zp is None else np.asarray(zp)
        info = np.iinfo(zp_arr.dtype)
        s, z = float(np.asarray(scale, dtype=np.float64).reshape(())), float(zp_arr.reshape(()))
        out[n.input[0]] = [round((info.min - z) * s, 8), round((info.max - z) * s, 8)]
    return dict(sorted(out.items()))


def int8_consumers(model, float_nodes: Iterable[str] = ()) -> dict[str, int]:
    """Op type -> how many of its nodes compute on INT8 data: not kept float (``float_nodes``), the
    activation comes from a DequantizeLinear (through the FP16 recipe's Casts) and, for a weighted op,
    the weight does too. An op left float between Q/DQ pairs (e.g. ConvTranspose on the cpu target,
    or an InstanceNorm after a quantised conv) is not counted, nor is Shape."""
    skip = set(float_nodes)
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    producer = {o: n for n in model.graph.node for o in n.output}

    def from_dq(name: str) -> bool:
        while name not in dq and name in producer and producer[name].op_type == "Cast":
            name = producer[name].input[0]
        return name in dq

    out: dict[str, int] = {}
    for n in model.graph.node:
        if (n.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast", "Shape") or n.name in skip or not n.input
                or not from_dq(n.input[0])):
            continue
        if n.op_type in WEIGHTED and (len(n.input) < 2 or not from_dq(n.input[1])):
            continue
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return dict(sorted(out.items()))


def export_int8(src: str | Path, dest: str | Path, calibration: Sequence[np.ndarray], recipe: Int8Recipe, **kw):
    """Quantise ``src`` into ``dest`` (atomic) and return the calibration record (``sha256`` of both files added)."""
    from segstyle.core.hashing import sha256_file

    out, record = quantize_int8(src, calibration, recipe, **kw)
    save_onnx(out, dest)
    record.update({"out": str(dest), "source_sha256": sha256_file(src), "sha256": sha256_file(dest),
                   "size_bytes": Path(dest).stat().st_size, "source_size_bytes": Path(src).stat().st_size})
    return record
