"""ONNX Runtime runner: CPU, or CUDA with I/O bound to torch CUDA tensors (``ort-*`` backends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from segstyle.core.errors import SegstyleError
from segstyle.export.backend.base import Backend
from segstyle.export.backend.onnxrt.loader import ort_cuda_reason, ort_session


class OrtBackend(Backend):
    """ONNX Runtime on CPU, or CUDA with I/O bound to torch CUDA tensors."""

    def __init__(self, onnx_path: str | Path, *, cuda: bool, threads: int | None = None):
        self.name = "ort-cuda" if cuda else "ort-cpu"
        if cuda:
            if ort_cuda_reason() is not None:
                raise SegstyleError("ort-cuda needs onnxruntime-gpu and a visible CUDA GPU; neither CUDA nor its "
                                    "execution provider is usable here (try ort-cpu)")
            self.device = torch.device("cuda")
            self.sess = ort_session(onnx_path, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
            if self.sess.get_providers()[0] != "CUDAExecutionProvider":
                raise SegstyleError("ONNX Runtime fell back to the CPU: the CUDA execution provider failed to load "
                                    "(CUDA/cuDNN libraries missing?)")
        else:
            self.sess = ort_session(onnx_path, threads=threads)
        self.input = self.sess.get_inputs()[0].name
        self.output = self.sess.get_outputs()[0].name

    def prepare(self, x: torch.Tensor) -> Any:
        if self.device.type == "cuda":
            return x.to("cuda", dtype=torch.float32).contiguous()
        return x.float().contiguous().numpy()

    def run(self, x: Any) -> torch.Tensor:
        if self.device.type != "cuda":
            return torch.from_numpy(self.sess.run([self.output], {self.input: x})[0])
        import numpy as np

        binding = self.sess.io_binding()
        binding.bind_input(self.input, "cuda", 0, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(self.output, "cuda")
        self.sess.run_with_iobinding(binding)
        return torch.from_numpy(binding.copy_outputs_to_cpu()[0])
