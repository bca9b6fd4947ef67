"""TensorRT engines: build (TensorRT 10 and 11 paths), JSON sidecar, staleness, and a torch-buffer runner.

TensorRT is imported lazily and never faked: without it every entry point raises one
:class:`SegstyleError` line saying how to install it and how to use the edge bundle instead.

Why two build paths (chosen by the installed major version):

- **TensorRT 11** removed weak typing (``BuilderFlag.FP16``, ``OBEY_PRECISION_CONSTRAINTS``): every
  network is strongly typed, precision comes from the graph. The FP16 engine is therefore built
  from the mixed-precision ONNX written by :mod:`segstyle.export.fp16` (converted on the fly when given an
  FP32 graph), whose InstanceNorm already is FP32. ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
  is passed only on 10.x, where it is required; 11.x deprecated it (accepted but ignored, every
  network is strongly typed), so there the network is created without flags.
- **TensorRT 10** (JetPack 6 devices) builds the FP32 graph weakly typed: ``BuilderFlag.FP16`` lets
  the builder pick FP16 kernels, and every normalisation layer plus the layers of the ops listed in
  ``export.fp16_keep_fp32`` get ``precision``/output type FP32 with ``OBEY_PRECISION_CONSTRAINTS``
  (InstanceNorm overflows in FP16: TensorRT #2691).

An engine only runs on the GPU model and TensorRT version that built it, so each engine has a
sidecar ``<engine>.json`` (TensorRT version, GPU name + compute capability, ONNX sha256, profiles,
precision). :func:`ensure_engine` rebuilds an engine whose sidecar names anything else instead of
running it. The runner binds torch CUDA tensors (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3`` on its own non-default stream, ordered after and before torch's current
stream, because enqueueV3 on the legacy default stream adds synchronisation): no pycuda.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from segstyle.pipelines.errors import SegstyleError
from segstyle.pipelines.io import atomic_path, write_json

INSTALL_HINT = (
    "TensorRT is not installed: on a machine with an NVIDIA GPU run "
    "`pip install --extra-index-url https://pypi.nvidia.com tensorrt`, or use the edge bundle instead "
    "(`segstyle bundle --checkpoint C --out DIR`, then follow DIR/README.md with trtexec on the device)"
)
PRECISIONS = ("fp16", "fp32")
# ONNX op type -> TensorRT LayerType name kept in FP32 on the weakly typed (TensorRT 10) path
OP_LAYER_TYPES = {"InstanceNormalization": "NORMALIZATION", "LayerNormalization": "NORMALIZATION",
                  "GroupNormalization": "NORMALIZATION", "Resize": "RESIZE", "ReduceMean": "REDUCE",
                  "ReduceSum": "REDUCE", "Softmax": "SOFTMAX"}


def require_tensorrt():
    """Import ``tensorrt`` or raise the one-line install hint."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError:
        raise SegstyleError(INSTALL_HINT) from None
    return trt


def require_cuda():
    import torch

    if not torch.cuda.is_available():
        raise SegstyleError("TensorRT needs a CUDA GPU and none is visible (torch.cuda.is_available() is False)")
    return torch


def trt_major(version: str) -> int:
    return int(str(version).split(".")[0])


def profile_shapes(profiles, channels: int = 3) -> dict[str, tuple[int, int, int, int]]:
    """``params.engine.profiles`` ([batch, H, W] each) -> NCHW min/opt/max shapes for the input."""
    out = {}
    for key in ("min", "opt", "max"):
        b, h, w = getattr(profiles, key) if not isinstance(profiles, dict) else profiles[key]
        out[key] = (int(b), channels, int(h), int(w))
    return out


def gpu_info(device: int = 0) -> dict[str, str]:
    torch = require_cuda()
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu_name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


def expected_sidecar(*, trt_version: str, gpu: dict[str, str], onnx_sha256: str,
                     profiles: dict[str, Sequence[int]], precision: str) -> dict[str, Any]:
    """The fields an engine's sidecar must match to be run as-is."""
    return {"tensorrt_version": str(trt_version), "gpu_name": gpu["gpu_name"],
            "compute_capability": gpu["compute_capability"], "onnx_sha256": onnx_sha256,
            "profiles": {k: list(v) for k, v in profiles.items()}, "precision": precision}


def read_sidecar(engine: str | Path) -> dict[str, Any] | None:
    p = sidecar_path(engine)
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def stale_reasons(sidecar: dict[str, Any] | None, expected: dict[str, Any]) -> list[str]:
    """Why an engine may not be run here (empty list: it matches this GPU, TensorRT, ONNX and profile)."""
    if sidecar is None:
        return ["no readable sidecar"]
    reasons = []
    for key, want in expected.items():
        have = sidecar.get(key)
        if have != want:
            reasons.append(f"{key}: engine has {have!r}, here {want!r}")
    return reasons


def _is_fp16_graph(onnx_path: str | Path) -> bool:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, profiles, workspace_mb: int,
                 timing_cache: str | Path | None, precision: str = "fp16",
                 keep_fp32: Sequence[str] = ("InstanceNormalization",)) -> dict[str, Any]:
    """Build and atomically write an engine + sidecar; returns the sidecar dict."""
    from segstyle.export.onnx import load_onnx

    trt = require_tensorrt()
    require_cuda()
    if precision not in PRECISIONS:
        raise SegstyleError(f"unknown precision '{precision}'; choose {', '.join(PRECISIONS)}")
    onnx_path = Path(onnx_path)
    load_onnx(onnx_path)  # one-line error for a corrupt file before TensorRT sees it
    shapes = profile_shapes(profiles)
    major = trt_major(trt.__version__)
    fp16_graph = _is_fp16_graph(onnx_path)
    if fp16_graph and precision == "fp32":
        raise SegstyleError(f"{onnx_path} is a mixed-precision FP16 graph: a strongly typed build of it is FP16, "
                            "not fp32; give the FP32 ONNX for --precision fp32")
    strongly_typed = major >= 11 or fp16_graph
    source = onnx_path
    tmpdir = None
    if strongly_typed and precision == "fp16" and not fp16_graph:
        import tempfile

        from segstyle.export.fp16 import export_fp16

        tmpdir = tempfile.TemporaryDirectory(prefix="segstyle-fp16-")
        source = Path(tmpdir.name) / (onnx_path.stem + "_fp16.onnx")
        export_fp16(onnx_path, source, keep_fp32)
    try:
        return _build(trt, major, strongly_typed, onnx_path, source, engine_path, shapes=shapes,
                      workspace_mb=workspace_mb, timing_cache=timing_cache, precision=precision, keep_fp32=keep_fp32)
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()


def _build(trt, major: int, strongly_typed: bool, onnx_path: Path, source: Path, engine_path, *, shapes,
           workspace_mb: int, timing_cache, precision: str, keep_fp32: Sequence[str]) -> dict[str, Any]:
    from segstyle.export.netload import sha256_file

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # 10.x: EXPLICIT_BATCH is deprecated/implicit, STRONGLY_TYPED opts in; 11.x: always strongly typed
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed and major < 11 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SegstyleError(f"{source}: TensorRT's ONNX parser failed: {errs[:400]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    constrained = []
    if not strongly_typed and precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        keep_types = {getattr(trt.LayerType, OP_LAYER_TYPES[op]) for op in set(keep_fp32) | {"InstanceNormalization"}
                      if op in OP_LAYER_TYPES}
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type in keep_types and layer.num_outputs and layer.get_output(0).dtype == trt.float32:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
                constrained.append(layer.name)
    inp = network.get_input(0)
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    cache_file = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file and cache_file.is_file() else b"")
    # a cache file from another GPU/TensorRT is refused (None / False): start an empty one instead
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SegstyleError(f"TensorRT failed to build an engine from {source} (see the builder log above)")
    build_s = time.perf_counter() - t0
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache_file:
        with atomic_path(cache_file) as tmp:
            tmp.write_bytes(bytes(cache.serialize()))
    sidecar = expected_sidecar(trt_version=trt.__version__, gpu=gpu_info(), onnx_sha256=sha256_file(onnx_path),
                               profiles=shapes, precision=precision)
    sidecar.update({
        "engine_sha256": sha256_file(engine_path), "onnx": str(onnx_path), "input": inp.name,
        "build_path": "strongly-typed" if strongly_typed else
        "weakly-typed (BuilderFlag.FP16 + constraints)" if precision == "fp16" else "weakly-typed (FP32)",
        "built_from": str(source.name), "fp32_layers": constrained, "workspace_mb": int(workspace_mb),
        "timing_cache": str(cache_file) if cache_file else None, "build_seconds": round(build_s, 1),
    })
    write_json(sidecar_path(engine_path), sidecar)
    return sidecar


def ensure_engine(onnx_path: str | Path | None, engine_path: str | Path, *, profiles, workspace_mb: int,
                  timing_cache: str | Path | None, precision: str = "fp16",
                  keep_fp32: Sequence[str] = ("InstanceNormalization",), force: bool = False) -> tuple[dict, list[str]]:
    """Return (sidecar, reasons it was rebuilt); an engine not matching this machine is rebuilt, never run."""
    from segstyle.export.netload import sha256_file

    trt = require_tensorrt()
    engine_path = Path(engine_path)
    reasons: list[str] = []
    if onnx_path is None:
        side = read_sidecar(engine_path)
        if side is None or not engine_path.is_file():
            raise SegstyleError(f"{engine_path}: no engine with a sidecar here; give --onnx to build one")
        onnx_path = side.get("onnx")
        if not onnx_path or not Path(onnx_path).is_file():
            raise SegstyleError(f"{engine_path}: its sidecar names ONNX '{onnx_path}', which is missing; give --onnx")
    expected = expected_sidecar(trt_version=trt.__version__, gpu=gpu_info(), onnx_sha256=sha256_file(onnx_path),
                                profiles=profile_shapes(profiles), precision=precision)
    if force:
        reasons = ["--force"]
    elif not engine_path.is_file():
        reasons = ["no engine file"]
    else:
        reasons = stale_reasons(read_sidecar(engine_path), expected)
    if reasons:
        side = build_engine(onnx_path, engine_path, profiles=profiles, workspace_mb=workspace_mb,
                            timing_cache=timing_cache, precision=precision, keep_fp32=keep_fp32)
    else:
        side = read_sidecar(engine_path)
    return side, reasons


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
