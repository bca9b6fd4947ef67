"""The backends by name: one spelling for validation, benchmarks and the matrix, one factory.

Each backend lives in its own folder with a loader and a runner (``pyt/``, ``onnxrt/``, ``trt/``, ``aoti/``;
``onnx/`` holds the graph tools, which run nothing); :class:`segstyle.export.backend.base.Backend`
is the interface they share. Names: ``torch-fp32``, ``torch-fp16``, ``ort-cpu``, ``ort-cuda``, ``tensorrt``, ``aoti-cpu``, ``aoti-cuda``
(AOTInductor packages); PyTorch variants take
``+channels_last`` and ``+cuda_graph`` suffixes (``torch-fp16+channels_last+cuda_graph``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from segstyle.core.errors import SegstyleError
from segstyle.export.backend.base import Backend

BACKENDS = ("torch-fp32", "torch-fp16", "ort-cpu", "ort-cuda", "tensorrt", "aoti-cpu", "aoti-cuda")
TORCH_OPTIONS = ("channels_last", "cuda_graph")


def parse_backend(spec: str) -> tuple[str, set[str]]:
    name, *opts = spec.strip().split("+")
    if name not in BACKENDS:
        raise SegstyleError(f"unknown backend '{name}'; choose from {', '.join(BACKENDS)}")
    bad = [o for o in opts if o not in TORCH_OPTIONS or not name.startswith("torch")]
    if bad:
        raise SegstyleError(f"backend option(s) {', '.join(bad)} not valid for {name}; "
                            f"torch backends take +{' +'.join(TORCH_OPTIONS)}")
    return name, set(opts)


def make_backend(spec: str, *, net: torch.nn.Module | None = None, onnx_path: str | Path | None = None,
                 engine_path: str | Path | None = None, package_path: str | Path | None = None,
                 device: str | None = None,
                 threads: int | None = None, noise_dim: int | None = None) -> Backend:
    """Build the backend named by ``spec`` from whichever artifact it runs (``noise_dim``: the network
    takes (N, nz) noise, not images)."""
    name, opts = parse_backend(spec)
    if name.startswith("torch"):
        from segstyle.export.backend.pyt.runner import TorchBackend

        if net is None:
            raise SegstyleError(f"{name} needs the PyTorch model (--checkpoint or --model)")
        return TorchBackend(net, fp16=name == "torch-fp16", options=opts, device=device, noise_dim=noise_dim)
    if name.startswith("ort"):
        from segstyle.export.backend.onnxrt.runner import OrtBackend

        if onnx_path is None:
            raise SegstyleError(f"{name} needs an ONNX file (--onnx)")
        return OrtBackend(onnx_path, cuda=name == "ort-cuda", threads=threads)
    if name.startswith("aoti"):
        from segstyle.export.backend.aoti.runner import AotiBackend

        if package_path is None:
            raise SegstyleError(f"{name} needs a package (--package, built or rebuilt from --program)")
        return AotiBackend(package_path, device=name.split("-")[1])
    from segstyle.export.backend.trt.runner import TensorRTBackend

    if engine_path is None:
        raise SegstyleError("tensorrt needs an engine (--engine, built or rebuilt from --onnx)")
    return TensorRTBackend(engine_path)
