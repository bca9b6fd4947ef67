"""Inference backends behind one interface, so validation and benchmarks compare like with like.

Every backend takes a float32 0..1 NCHW tensor and returns the deployment output (segmentation
logits or the stylised image) as a tensor on its own device; :meth:`Backend.sync` waits for it.
``prepare`` moves the input to where the backend reads it, so benchmarks time inference, not the
host-to-device copy. A backend that cannot run here raises one :class:`SegstyleError` line.

Names: ``torch-fp32``, ``torch-fp16``, ``ort-cpu``, ``ort-cuda``, ``tensorrt``; PyTorch variants take
``+channels_last`` and ``+cuda_graph`` suffixes (``torch-fp16+channels_last+cuda_graph``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from segstyle.export.netload import ExportWrapper
from segstyle.pipelines.errors import SegstyleError, first_line

BACKENDS = ("torch-fp32", "torch-fp16", "ort-cpu", "ort-cuda", "tensorrt")
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


class Backend:
    name: str
    device: torch.device = torch.device("cpu")

    def prepare(self, x: torch.Tensor) -> Any:
        return x

    def run(self, prepared: Any) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run and return the output as float32 on the CPU (for metrics)."""
        out = self.run(self.prepare(x))
        self.sync()
        return out.float().cpu()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


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


class OrtBackend(Backend):
    """ONNX Runtime on CPU, or CUDA with I/O bound to torch CUDA tensors."""

    def __init__(self, onnx_path: str | Path, *, cuda: bool, threads: int | None = None):
        import onnxruntime as ort

        from segstyle.export.onnx import ort_session

        self.name = "ort-cuda" if cuda else "ort-cpu"
        if cuda:
            if "CUDAExecutionProvider" not in ort.get_available_providers() or not torch.cuda.is_available():
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


class TensorRTBackend(Backend):
    def __init__(self, engine_path: str | Path):
        from segstyle.export.tensorrt import TRTRunner

        self.name = "tensorrt"
        self.runner = TRTRunner(engine_path)
        self.device = torch.device("cuda")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.to("cuda", dtype=torch.float32).contiguous()

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.runner(x)


def make_backend(spec: str, *, net: torch.nn.Module | None = None, onnx_path: str | Path | None = None,
                 engine_path: str | Path | None = None, device: str | None = None,
                 threads: int | None = None, noise_dim: int | None = None) -> Backend:
    """Build the backend named by ``spec`` from whichever artifact it runs (``noise_dim``: the network
    takes (N, nz) noise, not images)."""
    name, opts = parse_backend(spec)
    if name.startswith("torch"):
        if net is None:
            raise SegstyleError(f"{name} needs the PyTorch model (--checkpoint or --model)")
        return TorchBackend(net, fp16=name == "torch-fp16", options=opts, device=device, noise_dim=noise_dim)
    if name.startswith("ort"):
        if onnx_path is None:
            raise SegstyleError(f"{name} needs an ONNX file (--onnx)")
        return OrtBackend(onnx_path, cuda=name == "ort-cuda", threads=threads)
    if engine_path is None:
        raise SegstyleError("tensorrt needs an engine (--engine, built or rebuilt from --onnx)")
    return TensorRTBackend(engine_path)
