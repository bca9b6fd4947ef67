"""ONNX Runtime sessions: the one place that opens a graph for ORT (threads, providers, one-line errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from segstyle.core.devices import cuda_reason
from segstyle.core.errors import SegstyleError, first_line


def ort_session(path_or_bytes: str | Path | bytes, providers: Iterable[str] = ("CPUExecutionProvider",),
                threads: int | None = None):
    """An ONNX Runtime session; a graph ORT cannot load is one :class:`SegstyleError` line."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    src = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    try:
        return ort.InferenceSession(src, sess_options=so, providers=list(providers))
    except Exception as e:
        raise SegstyleError(f"ONNX Runtime cannot load the graph: {first_line(e, 300)}") from None


def ort_cuda_reason() -> str | None:
    """None when ONNX Runtime's CUDA provider can run here, else the one-line reason."""
    import onnxruntime as ort

    why = cuda_reason()
    if why is not None:
        return why
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    return None
