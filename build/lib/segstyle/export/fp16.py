"""FP32 ONNX -> mixed-precision FP16 ONNX with FP32 inputs/outputs.

TensorRT 11 removed the weakly typed ``BuilderFlag.FP16``: precision now lives in the graph, so the
FP16 engine is built from a graph whose tensors already are FP16. NVIDIA's recommended converter is
ModelOpt AutoCast (``pip install --extra-index-url https://pypi.nvidia.com nvidia-modelopt[onnx]``),
which is not installable here; ``onnxconverter_common.float16`` does the same conversion with an
explicit operator block list. Kept in FP32:

- the graph inputs/outputs (``keep_io_types``): callers feed the same 0..1 float32 images and the
  bundle's golden data fits both graphs;
- ``InstanceNormalization``: its sum of squares over H*W overflows FP16 (TensorRT #2691,
  onnxruntime #10079), turning the style network's output into NaN;
- every op named in ``params.yaml`` ``export.fp16_keep_fp32`` (Resize: coordinate arithmetic,
  ReduceMean: long sums, Softmax: exp) plus onnxconverter-common's own default block list.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segstyle.export.onnx import load_onnx, ort_session, read_metadata, round_size, save_onnx
from segstyle.pipelines.errors import SegstyleError

ALWAYS_FP32 = ("InstanceNormalization",)


def block_list(keep_fp32: Sequence[str]) -> list[str]:
    from onnxconverter_common import float16

    return sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(ALWAYS_FP32) | set(keep_fp32))


def convert_fp16(model, keep_fp32: Sequence[str]):
    """Return the mixed-precision copy of an FP32 ``ModelProto`` (checked, metadata kept)."""
    import onnx
    from onnxconverter_common import float16

    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise SegstyleError("the graph already holds FP16 weights; give the FP32 ONNX file")
    blocked = block_list(keep_fp32)
    try:
        with warnings.catch_warnings():  # "float32 number ... will be truncated": expected for tiny weights
            warnings.simplefilter("ignore", UserWarning)
            out = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    except Exception as e:
        raise SegstyleError(f"FP16 conversion failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    _force_fp32_outputs(out)
    meta = read_metadata(out)
    meta["segstyle.precision"] = "fp16 mixed (fp32 io)"
    meta["segstyle.fp16_kept_fp32"] = ",".join(sorted(set(ALWAYS_FP32) | set(keep_fp32)))
    meta["segstyle.fp16_converter"] = "onnxconverter_common.float16.convert_float_to_float16"
    del out.metadata_props[:]
    for k, v in meta.items():
        out.metadata_props.add(key=k, value=v)
    out = onnx.shape_inference.infer_shapes(out)
    onnx.checker.check_model(out, full_check=True)
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


def fp32_islands(model, keep_fp32: Sequence[str]) -> dict[str, int]:
    """How many nodes of each kept op type still compute in FP32 (proof for the report)."""
    import onnx

    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in set(ALWAYS_FP32) | set(keep_fp32):
            if node.input and types.get(node.input[0]) == onnx.TensorProto.FLOAT:
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def export_fp16(src: str | Path, dest: str | Path, keep_fp32: Sequence[str]):
    model = load_onnx(src)
    try:
        out = convert_fp16(model, keep_fp32)
    except SegstyleError as e:
        raise SegstyleError(f"{src}: {e}") from None
    save_onnx(out, dest)
    return out


def compare_fp16(reference, fp16_path: str | Path, *, sizes: Sequence[Sequence[int]], batch: int = 2,
                 seed: int = 0, divisor: int = 1, task: str = "segmentation",
                 reference_name: str = "pytorch-fp32") -> dict[str, Any]:
    """ONNX Runtime CPU on the FP16 graph vs an FP32 reference: max/mean abs error and argmax agreement.

    ``reference(x: torch.Tensor) -> np.ndarray`` is PyTorch FP32 when the network is at hand (else
    the FP32 ONNX graph under ORT). Where ORT's CPU provider lacks an FP16 kernel the record says so
    instead of inventing numbers.
    """
    import torch

    base = {"runtime": "onnxruntime CPUExecutionProvider", "reference": reference_name}
    try:
        sess = ort_session(fp16_path)
    except SegstyleError as e:
        return {**base, "ran": False, "reason": str(e)}
    name = sess.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for size in sizes:
        h, w = round_size(size, divisor)
        x = torch.rand(batch, 3, h, w, generator=gen)
        ref = np.asarray(reference(x), dtype=np.float64)
        try:
            got = sess.run(None, {name: x.numpy()})[0]
        except Exception as e:
            return {**base, "ran": False, "reason": str(e).strip().splitlines()[0][:300]}
        err = np.abs(got.astype(np.float64) - ref)
        row = {"size": [h, w], "batch": batch, "max_abs_err": float(err.max()), "mean_abs_err": float(err.mean()),
               "finite": bool(np.isfinite(got).all())}
        if task == "segmentation":
            row["argmax_agreement_pct"] = float((got.argmax(1) == ref.argmax(1)).mean() * 100)
        rows.append(row)
    return {**base, "ran": True, "rows": rows, "max_abs_err": max(r["max_abs_err"] for r in rows)}
