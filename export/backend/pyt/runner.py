"""PyTorch runner: eager FP32/FP16, optionally channels_last and CUDA graphs (``torch-*`` backends)."""

from __future__ import annotations

import copy

import torch

from segstyle.core.errors import SegstyleError, first_line
from segstyle.export.backend.base import Backend
from segstyle.export.backend.pyt.loader import ExportWrapper


class TorchBackend(Backend):
    """Eager PyTorch; FP16 is ``.half()`` weights and inputs (InstanceNorm32 stays FP32 inside)."""

    def __init__(self, net: torch.nn.Module, *, fp16: bool, options: set[str], device: str | None = None,
                 noise_dim: int | None = None):
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if "cuda_graph" in options and dev.type != "cuda":
            raise SegstyleError("+cuda_graph needs a CUDA GPU; none is visible")
        self.name = ("torch-fp16" if fp16 else "torch-fp32") + "".join(f"+{o}" for o in sorted(options))
        self.device = dev
        self.dtype = torch.float16 if fp16 else torch.float32
        self.memory_format = torch.channels_last if "channels_last" in options else torch.contiguous_format
        # a copy: Module.to() works in place, and the FP32 reference may share the same network
        self.net = ExportWrapper(copy.deepcopy(net)).eval().to(dev, dtype=self.dtype,
                                                                memory_format=self.memory_format)
        self.cuda_graph = "cuda_graph" in options
        self._graphs: dict[tuple, tuple] = {}
        if fp16 and dev.type == "cpu":
            try:  # some CPU builds lack FP16 kernels: find out now, in one line
                with torch.no_grad():  # the network's own input kind: (1, nz) noise or a (1, 3, 32, 32) image
                    self.net(torch.zeros((1, noise_dim) if noise_dim else (1, 3, 32, 32), dtype=self.dtype))
            except RuntimeError as e:
                raise SegstyleError(f"torch-fp16 cannot run on this CPU ({first_line(e, 150)}); "
                                    "use a CUDA GPU") from None

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last is a layout of (N, C, H, W) images; a noise network's (N, nz) input keeps its own
        # (the weights inside still go channels_last; an H200 run of the DCGAN generator found this)
        fmt = self.memory_format if x.dim() == 4 else torch.contiguous_format
        return x.to(self.device, dtype=self.dtype).contiguous(memory_format=fmt)

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cuda_graph:
            return self.net(x)
        key = tuple(x.shape)
        if key not in self._graphs:  # capture once per shape after a warm-up on a side stream
            static_in = x.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(2):
                    self.net(static_in)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                static_out = self.net(static_in)
            self._graphs[key] = (g, static_in, static_out)
        g, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        g.replay()
        return static_out
