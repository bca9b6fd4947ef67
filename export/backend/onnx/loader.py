"""Reading ONNX graphs: load and check, metadata, precision, "is this graph from this network".

Nothing here imports torch or the models, so reading, checking and linting a graph (``segstyle
export lint``, the FP16 converter, TensorRT's build) starts fast and depends on no network code;
exporting a graph from PyTorch is :mod:`segstyle.export.backend.onnx.exporter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from segstyle.core.errors import SegstyleError, first_line
from segstyle.core.io import atomic_path

if TYPE_CHECKING:
    from segstyle.export.backend.pyt.loader import LoadedNet

INPUT_NAME = "input"
OUTPUT_NAMES = {"segmentation": "logits", "style": "image", "generation": "image"}
DIM_NAMES = ("batch", None, "height", "width")


def output_name(task: str) -> str:
    return OUTPUT_NAMES[task]


def round_size(size: Sequence[int], divisor: int) -> tuple[int, int]:
    """Round (H, W) up to a multiple of the model's ``size_divisor``."""
    d = max(1, int(divisor))
    return tuple(int(-(-int(s) // d) * d) for s in size)  # type: ignore[return-value]


def load_onnx(path: str | Path, *, check: bool = True):
    """Read and structurally check an ONNX file; any problem is one :class:`SegstyleError` line."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise SegstyleError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # DecodeError, missing external data, ...
        raise SegstyleError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    if check:
        try:
            onnx.checker.check_model(model)
        except Exception as e:  # ValidationError and friends
            raise SegstyleError(f"{path}: invalid ONNX model ({first_line(e)})") from None
        if not model.graph.node:
            raise SegstyleError(f"{path}: invalid ONNX model (empty graph)")
    return model


def read_metadata(model) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def check_onnx_source(path: str | Path, loaded: LoadedNet) -> dict[str, str]:
    """Refuse a graph that was not exported from ``loaded``: another model, or (when ``loaded`` came
    from a checkpoint) another checkpoint, by the sha256 its metadata records. Returns the metadata.

    The one check behind every command that takes both ``--checkpoint`` and ``--onnx`` (validate,
    bench, bundle): a graph compared with, or shipped beside, the wrong network would prove nothing.
    """
    meta = read_metadata(load_onnx(path))
    other = meta.get("segstyle.model")
    if other != loaded.model:
        raise SegstyleError(f"{path}: ONNX is for model '{other or 'unknown'}', not '{loaded.model}'")
    if loaded.checkpoint_sha256 and meta.get("segstyle.checkpoint_sha256") != loaded.checkpoint_sha256:
        raise SegstyleError(f"{path}: exported from another checkpoint than {loaded.checkpoint} "
                            "(checkpoint sha256 differs); re-export or drop --onnx")
    return meta


#: Ops that only a quantised graph holds (Q/DQ pairs, or ONNX Runtime's integer kernels).
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
             "DynamicQuantizeLinear"}


def graph_precision(model) -> str:
    """The precision a graph runs in: ``int8`` (quantise/dequantise nodes or 8-bit weights: an INT8
    graph, even with FP16 islands), ``fp16`` (FP16 weights, or segstyle's FP16 metadata), else ``fp32``.

    The one answer for validation's row labels, the FP16 converter's refusal of a converted graph and
    TensorRT's typing path.
    """
    import onnx

    t = onnx.TensorProto
    if any(n.op_type in QUANT_OPS for n in model.graph.node) or \
            any(i.data_type in (t.INT8, t.UINT8) for i in model.graph.initializer):
        return "int8"
    if read_metadata(model).get("segstyle.precision", "").startswith("fp16"):
        return "fp16"
    if any(i.data_type == t.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def onnx_precision(path: str | Path) -> str:
    """:func:`graph_precision` of an ONNX file (weights read, no checker run)."""
    return graph_precision(load_onnx(path, check=False))


def int8_target(model) -> str | None:
    """The target an INT8 graph was quantised for (``segstyle.int8_target``: ``trt`` or ``cpu``; an INT8
    graph that does not say, e.g. one quantised elsewhere, counts as ``cpu``); None for a graph that is
    not INT8. The one answer for validation's row keys, the benchmark's names and the bundle's file names."""
    if graph_precision(model) != "int8":
        return None
    return read_metadata(model).get("segstyle.int8_target") or "cpu"


def save_onnx(model, dest: str | Path) -> Path:
    """Atomically write ``model`` as ONE file (never external data)."""
    import onnx

    with atomic_path(dest) as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
    return Path(dest)
