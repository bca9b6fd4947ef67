"""TensorRT runner: a deserialised engine executed on torch CUDA buffers (the ``tensorrt`` backend).

TensorRT is imported lazily (:func:`segstyle.export.backend.trt.loader.require_tensorrt`): it is
absent on most machines, and nothing here fakes a result without it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from segstyle.core.errors import SegstyleError
from segstyle.export.backend.base import Backend
from segstyle.export.backend.trt.loader import require_cuda, require_tensorrt


class TensorRTBackend(Backend):
    def __init__(self, engine_path: str | Path):
        self.name = "tensorrt"
        self.runner = TRTRunner(engine_path)
        self.device = torch.device("cuda")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.to("cuda", dtype=torch.float32).contiguous()

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.runner(x)


class TRTRunner:
    """Run a single-input, single-output engine on torch CUDA tensors."""

    def __init__(self, engine_path: str | Path):
        trt = require_tensorrt()
        torch = require_cuda()
        self.trt, self.torch = trt, torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise SegstyleError(f"{engine_path}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        # enqueueV3 on the legacy default stream makes TensorRT add cudaStreamSynchronize calls
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise SegstyleError(f"{engine_path}: expected 1 input and 1 output, found {self.inputs} / {self.outputs}")

    def _torch_dtype(self, name: str):
        trt, torch = self.trt, self.torch
        table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                 trt.int8: torch.int8, trt.bool: torch.bool}
        if hasattr(trt, "int64"):
            table[trt.int64] = torch.int64
        if hasattr(trt, "bfloat16"):
            table[trt.bfloat16] = torch.bfloat16
        return table[self.engine.get_tensor_dtype(name)]

    def __call__(self, x):
        """Enqueue in order with torch's current stream; the caller synchronises (CUDA events or ``.cpu()``)."""
        torch = self.torch
        name, out_name = self.inputs[0], self.outputs[0]
        x = x.to(device="cuda", dtype=self._torch_dtype(name)).contiguous()
        if not self.context.set_input_shape(name, tuple(x.shape)):
            raise SegstyleError(f"input shape {tuple(x.shape)} is outside the engine's optimisation profile")
        self.context.set_tensor_address(name, x.data_ptr())
        out = torch.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=self._torch_dtype(out_name),
                          device="cuda")
        self.context.set_tensor_address(out_name, out.data_ptr())
        current = torch.cuda.current_stream()
        self.stream.wait_stream(current)  # x and out are ready on the caller's stream
        x.record_stream(self.stream)  # the caching allocator must not reuse them before TensorRT is done
        out.record_stream(self.stream)
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise SegstyleError("TensorRT execute_async_v3 failed")
        current.wait_stream(self.stream)
        return out
