"""TensorRT engines: one strongly typed FP16 build, a documented TensorRT 10 fallback, the sidecar, a runner.

TensorRT is imported lazily and never faked: without it every entry point raises one
:class:`SegstyleError` line saying how to install it and how to use the edge bundle instead. The
parts that decide *what* to build (typing path, FP32 pins, trtexec lines, rebuild key, the check of
the layer precisions TensorRT chose) are pure functions over the ONNX graph and JSON, tested here
without TensorRT.

Typing paths (:func:`typing_path`):

- **strongly typed** (default, TensorRT 10.x and 11.x): the engine is built from the
  mixed-precision graph of :mod:`segstyle.export.backend.onnx.fp16` (converted on the fly when given the FP32
  graph), so the FP16/FP32 split is the one recipe, ``export.fp16_keep_fp32``, and nothing else.
  ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is set on 10.x, where it is required; 11.x
  deprecated and ignores it (every 11.x network is strongly typed), so it is not set there;
  trtexec: ``--stronglyTyped`` (a no-op on 11.x).
- **weakly typed fallback** (``typing="weak"``, TensorRT 10 only, FP32 graph only): for a device
  whose TensorRT 10 cannot build the FP16 graph. ``BuilderFlag.FP16`` +
  ``OBEY_PRECISION_CONSTRAINTS``, and every node of a listed op type is pinned to FP32 by its
  *layer name*. onnx-tensorrt names the layer of a node after the node (``node_of_<output>`` for
  an unnamed one: ``getNodeName`` in its importerUtils.cpp), so :func:`fp32_pins` reads those
  names from the graph and :func:`resolve_pins` checks them against the network's layers. A pin
  that matches no layer is an error (trtexec would silently ignore it). TensorRT 11 removed this
  path (``BuilderFlag.FP16`` and ``OBEY_PRECISION_CONSTRAINTS`` are gone).

After every build the engine inspector (``ProfilingVerbosity.DETAILED``, with an execution
context at the profile's opt shape, because a dynamic-shape engine reports no formats without one)
writes the layer information next to the engine; :func:`layer_precision_report` turns it into the
layers that ran FP32 and the kept ops that ran FP16, and that summary goes into the sidecar. The
pure code lives in :mod:`segstyle.export.portable.layer_precision` (standard library only), which the edge
bundle ships byte-identical so ``check.py --engine`` applies the same proof to trtexec's
``--exportLayerInfo`` file on a device.

An engine only runs on the GPU model and TensorRT version that built it, so each engine has a
sidecar ``<engine>.json``. Its rebuild key (:func:`expected_sidecar`) is TensorRT version, GPU name
+ compute capability, ONNX sha256, profiles, precision, typing path and the kept list:
:func:`ensure_engine` rebuilds an engine whose sidecar differs in any of them instead of running
it. The runner binds torch CUDA tensors (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3`` on its own non-default stream, ordered after and before torch's current
stream, because enqueueV3 on the legacy default stream adds synchronisation): no pycuda.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from segstyle.export.portable import layer_precision as _lp
from segstyle.export.portable.layer_precision import layer_members  # noqa: F401  (re-exported)
from segstyle.core.devices import NO_GPU, cuda_reason
from segstyle.core.errors import SegstyleError
from segstyle.core.io import atomic_path, write_json
from segstyle.export.backend.sidecar import read_sidecar, sidecar_path, stale_reasons  # noqa: F401  (re-exported)

INSTALL_HINT = (
    "TensorRT is not installed: on a machine with an NVIDIA GPU run "
    "`pip install --extra-index-url https://pypi.nvidia.com tensorrt`, or use the edge bundle instead "
    "(`segstyle bundle --checkpoint C --out DIR`, then follow DIR/README.md with trtexec on the device)"
)
PRECISIONS = ("fp16", "fp32")
TYPINGS = ("strong", "weak")
STRONG = "strongly-typed"
WEAK = "weakly-typed (BuilderFlag.FP16 + FP32 pins)"


def require_tensorrt():
    """Import ``tensorrt`` or raise the one-line install hint."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError:
        raise SegstyleError(INSTALL_HINT) from None
    return trt


def require_cuda():
    if cuda_reason() is not None:
        raise SegstyleError("TensorRT needs a CUDA GPU and none is visible (torch.cuda.is_available() is False)")
    import torch

    return torch


def trt_major(version: str) -> int:
    return int(str(version).split(".")[0])


def profile_shapes(profiles, channels: int = 3) -> dict[str, tuple[int, int, int, int]]:
    """``params.engine.profiles`` ([batch, H, W] each) -> NCHW min/opt/max shapes for the input.

    A value that is already a full input shape (a noise network's (batch, nz), or 4-D NCHW) is kept."""
    out = {}
    for key in ("min", "opt", "max"):
        v = getattr(profiles, key) if not isinstance(profiles, dict) else profiles[key]
        if len(v) != 3:
            out[key] = tuple(int(x) for x in v)
            continue
        b, h, w = v
        out[key] = (int(b), channels, int(h), int(w))
    return out


def gpu_info(device: int = 0) -> dict[str, str]:
    torch = require_cuda()
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu_name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


# ----------------------------------------------------------------------------- typing and pins (pure)

def typing_path(major: int, *, fp16_graph: bool, precision: str, typing: str = "strong") -> str:
    """Which build a (TensorRT major, graph, precision, requested typing) gets; one line when impossible."""
    if precision not in PRECISIONS:
        raise SegstyleError(f"unknown precision '{precision}'; choose {', '.join(PRECISIONS)}")
    if typing not in TYPINGS:
        raise SegstyleError(f"unknown typing '{typing}'; choose {', '.join(TYPINGS)}")
    if fp16_graph and precision == "fp32":
        raise SegstyleError("a mixed-precision FP16 graph built strongly typed is FP16, not fp32; "
                            "give the FP32 ONNX for --precision fp32")
    if typing == "weak":
        if major >= 11:
            raise SegstyleError(f"TensorRT {major} has no weakly typed build (BuilderFlag.FP16 was removed); "
                                "use the strongly typed build of the FP16 graph")
        if fp16_graph:
            raise SegstyleError("the weakly typed fallback builds from the FP32 graph; give model.onnx, "
                                "not the FP16 graph")
        if precision != "fp16":
            raise SegstyleError("the weakly typed fallback exists for FP16 only; --precision fp32 is strongly typed")
        return WEAK
    return STRONG


def trt_layer_name(node) -> str:
    """The name onnx-tensorrt gives the layer of ``node`` (``getNodeName``: ``node_of_<output0>`` if unnamed)."""
    if not node.name and len(node.output):
        return "node_of_" + node.output[0]
    return node.name


def fp32_pins(model, keep_fp32: Sequence[str]) -> dict[str, list[str]]:
    """Op type -> TensorRT layer names to pin FP32 on the weakly typed path (every listed op a key).

    The same list as the FP16 graph's kept ops (:func:`segstyle.export.backend.onnx.fp16.kept_nodes`), read from
    the FP32 graph. A name trtexec's ``--layerPrecisions`` cannot carry (``,`` or ``:`` in it) is
    an error rather than a pin that silently matches nothing.
    """
    from segstyle.export.backend.onnx.fp16 import keep_list

    pins: dict[str, list[str]] = {op: [] for op in keep_list(keep_fp32)}
    for node in model.graph.node:
        if node.op_type in pins:
            name = trt_layer_name(node)
            if "," in name or ":" in name:
                raise SegstyleError(f"node name '{name}' ({node.op_type}) contains ',' or ':' and cannot be "
                                    "pinned with trtexec --layerPrecisions; rename the node")
            pins[node.op_type].append(name)
    return pins


def resolve_pins(layer_names: Sequence[str], pins: Mapping[str, Sequence[str]]) -> list[str]:
    """The network layers to pin: every pin must name a layer exactly (returns them in pin order).

    Raises when the graph holds listed ops and no pin matches a layer, or when some pins match
    nothing: a precision constraint that silently applies to nothing is the failure this prevents.
    """
    wanted = [n for names in pins.values() for n in names]
    have = set(layer_names)
    matched = [n for n in wanted if n in have]
    missing = [n for n in wanted if n not in have]
    if wanted and not matched:
        raise SegstyleError(f"none of the {len(wanted)} FP32 pins ({', '.join(wanted[:3])}...) names a TensorRT "
                            "layer; the parser named the layers differently, so nothing would stay FP32")
    if missing:
        raise SegstyleError(f"{len(missing)} of {len(wanted)} FP32 pins name no TensorRT layer, first "
                            f"'{missing[0]}'")
    return matched


def layer_precision_spec(pins: Mapping[str, Sequence[str]]) -> str:
    """``--layerPrecisions`` / ``--layerOutputTypes`` value for trtexec ("" when nothing to pin)."""
    return ",".join(f"{n}:fp32" for names in pins.values() for n in names)


def _shape(s: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in s)


def trtexec_commands(*, input_name: str, shapes: Mapping[str, Sequence[int]], workspace_mb: int,
                     pins: Mapping[str, Sequence[str]], fp32_onnx: str = "model.onnx",
                     fp16_onnx: str = "model_fp16.onnx") -> dict[str, str]:
    """The trtexec lines for the three builds (one string each, no line continuations).

    ``strong_fp16`` (TensorRT 10.x and 11.x, the default), ``weak_fp16_trt10`` (the fallback, pins
    from :func:`fp32_pins`) and ``fp32``. Each build writes its layer information
    (``--profilingVerbosity=detailed --exportLayerInfo``) so :func:`layer_precision_report` can
    prove which layers ran FP32. The bundle README and the Jetson page print these strings.
    """
    shp = " ".join(f"--{k}Shapes={input_name}:{_shape(shapes[k])}" for k in ("min", "opt", "max"))
    common = f"{shp} --memPoolSize=workspace:{int(workspace_mb)}M --timingCacheFile=timing.cache"
    spec = layer_precision_spec(pins)
    pin_flags = (f" --precisionConstraints=obey --layerPrecisions={spec} --layerOutputTypes={spec}"
                 if spec else "")
    detail = "--profilingVerbosity=detailed --exportLayerInfo="
    return {
        "strong_fp16": (f"trtexec --onnx={fp16_onnx} --stronglyTyped {common} "
                        f"{detail}model_fp16.layers.json --saveEngine=model_fp16.engine"),
        "weak_fp16_trt10": (f"trtexec --onnx={fp32_onnx} --fp16{pin_flags} {common} "
                            f"{detail}model_trt10_weak_fp16.layers.json --saveEngine=model_trt10_weak_fp16.engine"),
        "fp32": (f"trtexec --onnx={fp32_onnx} --stronglyTyped {common} "
                 f"{detail}model_fp32.layers.json --saveEngine=model_fp32.engine"),
    }


def int8_commands(*, input_name: str, shapes: Mapping[str, Sequence[int]], workspace_mb: int,
                  int8_onnx: str = "model_int8.onnx") -> dict[str, str]:
    """The trtexec lines for the TensorRT INT8 graph (``segstyle export int8 --target trt``).

    ``strong_int8``: TensorRT 10.x and 11.x, strongly typed (precision from the graph: INT8 between
    its Q/DQ pairs, FP16 elsewhere). ``weak_int8_trt10``: the TensorRT 10 fallback, weakly typed with
    ``--int8 --fp16`` (TensorRT 11 removed both flags). DLA (NVIDIA "Working with DLA"): no dynamic
    dimensions, so one fixed shape, the profile's opt; ``dla_trt10`` for Jetson Orin on JetPack 6.x
    (TensorRT 10.3; 10.7 was the last 10.x release with DLA); ``dla_trt11`` for Jetson AGX Orin on
    JetPack 7.2.2+ (TensorRT 11.4.1, strongly typed; DLA was absent from 11.0-11.3, 11.4.0 had it on
    Windows on ARM only, Jetson Thor has none).
    """
    shp = " ".join(f"--{k}Shapes={input_name}:{_shape(shapes[k])}" for k in ("min", "opt", "max"))
    common = f"{shp} --memPoolSize=workspace:{int(workspace_mb)}M --timingCacheFile=timing.cache"
    fixed = f"--shapes={input_name}:{_shape(shapes['opt'])}"
    detail = "--profilingVerbosity=detailed --exportLayerInfo="
    dla = "--useDLACore=0 --allowGPUFallback"
    return {
        "strong_int8": (f"trtexec --onnx={int8_onnx} --stronglyTyped {common} "
                        f"{detail}model_int8.layers.json --saveEngine=model_int8.engine"),
        "weak_int8_trt10": (f"trtexec --onnx={int8_onnx} --int8 --fp16 {common} "
                            f"{detail}model_int8_trt10_weak.layers.json --saveEngine=model_int8_trt10_weak.engine"),
        "dla_trt10": (f"trtexec --onnx={int8_onnx} --int8 --fp16 {dla} {fixed} "
                      f"{detail}model_int8_dla.layers.json --saveEngine=model_int8_dla.engine"),
        "dla_trt11": (f"trtexec --onnx={int8_onnx} --stronglyTyped {dla} {fixed} "
                      f"{detail}model_int8_dla.layers.json --saveEngine=model_int8_dla.engine"),
    }


# Orin Nano-class modules (4-8 GB shared by CPU and GPU): one image at a time, up to 768x768, and a
# smaller builder workspace, so the build and the engine fit beside the OS and the camera pipeline.
SMALL_MEMORY_PROFILE = {"min": (1, 3, 128, 128), "opt": (1, 3, 384, 384), "max": (1, 3, 768, 768)}
SMALL_MEMORY_WORKSPACE_MB = 1024


def jetson_commands(*, input_name: str, shapes: Mapping[str, Sequence[int]], workspace_mb: int) -> list[str]:
    """The shell lines of the README's Jetson page, in order; the bundle README must contain each verbatim.

    Network-independent lines only (the weak fallback's pins differ per network: the bundle README
    prints that line from :func:`trtexec_commands`). JetPack ships trtexec in /usr/src/tensorrt/bin
    (pip wheels of TensorRT bring none) and its TensorRT as a system package, which a venv only sees
    with ``--system-site-packages``.
    """
    trtexec = "/usr/src/tensorrt/bin/trtexec"
    full = trtexec_commands(input_name=input_name, shapes=shapes, workspace_mb=workspace_mb, pins={})
    small = trtexec_commands(input_name=input_name, shapes=SMALL_MEMORY_PROFILE,
                             workspace_mb=SMALL_MEMORY_WORKSPACE_MB, pins={})
    small_line = small["strong_fp16"].replace("model_fp16.engine", "model_fp16_small.engine").replace(
        "model_fp16.layers.json", "model_fp16_small.layers.json")
    return [
        "sudo nvpmodel -q",
        "sudo nvpmodel -m 0",
        "sudo jetson_clocks",
        "python3 -m venv --system-site-packages .venv && . .venv/bin/activate",
        "python3 -c 'import tensorrt; print(tensorrt.__version__)'",
        "sha256sum -c SHA256SUMS",
        full["strong_fp16"].replace("trtexec ", trtexec + " ", 1),
        small_line.replace("trtexec ", trtexec + " ", 1),
        "python3 check.py --engine model_fp16.engine",
        "python3 check.py --engine model_fp16_small.engine",
    ]


def pins_in_command(command: str) -> list[str]:
    """The layer names a trtexec line pins FP32 (parsed back from ``--layerPrecisions``)."""
    m = re.search(r"--layerPrecisions=(\S+)", command)
    if not m:
        return []
    return [item.rsplit(":", 1)[0] for item in m.group(1).split(",") if item]


# ----------------------------------------------------------------------------- layer precisions (pure)

def layer_precision_report(layer_info: Mapping[str, Any] | Sequence[Any],
                           kept: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """:func:`segstyle.export.portable.layer_precision.layer_precision_report` with its error as one segstyle line.

    The implementation lives in the stdlib-only :mod:`segstyle.export.portable.layer_precision`, which the
    edge bundle ships byte-identical for ``check.py --engine``: one proof, on the build machine and
    on the device.
    """
    try:
        return _lp.layer_precision_report(layer_info, kept)
    except _lp.LayerInfoError as e:
        raise SegstyleError(str(e)) from None


# ----------------------------------------------------------------------------- sidecar and rebuild key

def layers_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".layers.json")


def expected_sidecar(*, trt_version: str, gpu: dict[str, str], onnx_sha256: str,
                     profiles: dict[str, Sequence[int]], precision: str, typing: str = STRONG,
                     keep_fp32: Sequence[str] = ()) -> dict[str, Any]:
    """The rebuild key: the fields an engine's sidecar must match to be run as-is."""
    return {"tensorrt_version": str(trt_version), "gpu_name": gpu["gpu_name"],
            "compute_capability": gpu["compute_capability"], "onnx_sha256": onnx_sha256,
            "profiles": {k: list(v) for k, v in profiles.items()}, "precision": precision,
            "typing": typing, "keep_fp32": sorted(set(keep_fp32))}


# ----------------------------------------------------------------------------- build (needs TensorRT)

def _is_fp16_graph(onnx_path: str | Path) -> bool:
    from segstyle.export.backend.onnx.loader import onnx_precision

    return onnx_precision(onnx_path) == "fp16"


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, profiles, workspace_mb: int,
                 timing_cache: str | Path | None, precision: str = "fp16",
                 keep_fp32: Sequence[str] = ("InstanceNormalization",), typing: str = "strong") -> dict[str, Any]:
    """Build and atomically write an engine, its layer information and its sidecar; returns the sidecar."""
    from segstyle.export.backend.onnx.fp16 import keep_list, kept_nodes
    from segstyle.export.backend.onnx.loader import load_onnx

    trt = require_tensorrt()
    require_cuda()
    onnx_path = Path(onnx_path)
    src_model = load_onnx(onnx_path)  # one-line error for a corrupt file before TensorRT sees it
    shapes = profile_shapes(profiles)
    major = trt_major(trt.__version__)
    fp16_graph = _is_fp16_graph(onnx_path)
    path = typing_path(major, fp16_graph=fp16_graph, precision=precision, typing=typing)
    keep = keep_list(keep_fp32)
    source, tmpdir = onnx_path, None
    if path == STRONG and precision == "fp16" and not fp16_graph:
        import tempfile

        from segstyle.export.backend.onnx.fp16 import export_fp16

        tmpdir = tempfile.TemporaryDirectory(prefix="segstyle-fp16-")
        source = Path(tmpdir.name) / (onnx_path.stem + "_fp16.onnx")
        export_fp16(onnx_path, source, keep)
    try:
        if path == WEAK:
            kept = fp32_pins(src_model, keep)
        elif precision == "fp16":
            kept = kept_nodes(load_onnx(source), keep)
        else:
            kept = {}
        return _build(trt, BuildPlan(typing=path, onnx_path=onnx_path, source=Path(source), engine_path=Path(engine_path),
                                     shapes=shapes, workspace_mb=int(workspace_mb),
                                     timing_cache=Path(timing_cache) if timing_cache else None,
                                     precision=precision, keep=keep, kept=kept))
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()


@dataclass(frozen=True)
class BuildPlan:
    """Everything an engine build decided before TensorRT runs (:func:`build_engine`), in one value."""

    typing: str                   # STRONG or WEAK (:func:`typing_path`)
    onnx_path: Path               # the graph the engine is traced to (its sha256 is the sidecar's key)
    source: Path                  # the graph TensorRT parses (the FP16 graph for a strongly typed FP16 build)
    engine_path: Path
    shapes: dict[str, tuple[int, ...]]  # min/opt/max input shapes
    workspace_mb: int
    timing_cache: Path | None
    precision: str
    keep: list[str]               # the FP16 recipe's kept op types
    kept: dict[str, list[str]]    # kept op type -> node names (WEAK: the FP32 pins to resolve)


def _build(trt, plan: BuildPlan) -> dict[str, Any]:
    """Parse, configure, build, write: the TensorRT API calls of one build, each step a function."""
    logger = trt.Logger(trt.Logger.WARNING)  # outlives the builder and the parser
    builder = trt.Builder(logger)
    network, parser = _parse(trt, builder, logger, plan)
    config, pinned = _configure(trt, builder, network, plan)
    cache = _attach_timing_cache(config, plan.timing_cache)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SegstyleError(f"TensorRT failed to build an engine from {plan.source} (see the builder log above)")
    build_s = time.perf_counter() - t0
    del parser
    return _write_engine(trt, plan, bytes(serialized), cache, network.get_input(0).name, pinned, build_s)


def _parse(trt, builder, logger, plan: BuildPlan):
    """The network from the ONNX file: strongly typed when the plan says so (the flag is required on
    10.x; 11.x deprecated it and ignores it, every network is strongly typed, so it is not set there)."""
    flags = 0
    if plan.typing == STRONG and trt_major(trt.__version__) < 11:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.source)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SegstyleError(f"{plan.source}: TensorRT's ONNX parser failed: {errs[:400]}")
    return network, parser


def _configure(trt, builder, network, plan: BuildPlan):
    """(builder config, FP32-pinned layer names): workspace, detailed profiling (for the layer
    report), the optimisation profile, and on the WEAK path FP16 with the kept layers pinned FP32."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan.workspace_mb) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    pinned = _pin_weak(trt, config, network, plan.kept) if plan.typing == WEAK else []
    inp = network.get_input(0)
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, plan.shapes["min"], plan.shapes["opt"], plan.shapes["max"])
    config.add_optimization_profile(profile)
    return config, pinned


def _pin_weak(trt, config, network, kept: Mapping[str, Sequence[str]]) -> list[str]:
    """The TensorRT 10 weakly typed build: FP16 allowed, the kept layers pinned FP32 by name; returns their names.

    TensorRT 11 removed this path (``BuilderFlag.FP16``, ``OBEY_PRECISION_CONSTRAINTS`` and
    ``ILayer.precision`` / ``set_output_type`` are gone), so it refuses 11.x first (:func:`typing_path`
    refuses earlier; this gate is also the one :mod:`segstyle.export.backend.trt.api_check` reads).
    """
    if trt_major(trt.__version__) >= 11:
        raise SegstyleError(f"TensorRT {trt.__version__} has no weakly typed build (BuilderFlag.FP16 was removed); "
                            "use the strongly typed build of the FP16 graph")
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    layers = {network.get_layer(i).name: network.get_layer(i) for i in range(network.num_layers)}
    pinned = resolve_pins(list(layers), kept)
    for name in pinned:
        layer = layers[name]
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
    return pinned


def _attach_timing_cache(config, cache_file: Path | None):
    """The timing cache from ``cache_file`` (or an empty one) set on ``config``; returns it."""
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file and cache_file.is_file() else b"")
    # a cache file from another GPU/TensorRT is refused (None / False): start an empty one instead
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _write_engine(trt, plan: BuildPlan, blob: bytes, cache, input_name: str, pinned: list[str],
                  build_s: float) -> dict[str, Any]:
    """Write the engine, its layer information, the timing cache and the sidecar (each atomically)."""
    from segstyle.core.hashing import sha256_file

    info = engine_layer_info(trt, blob, input_name, plan.shapes["opt"])
    report = layer_precision_report(info, plan.kept)
    with atomic_path(plan.engine_path) as tmp:
        tmp.write_bytes(blob)
    write_json(layers_path(plan.engine_path), info)
    if plan.timing_cache:
        with atomic_path(plan.timing_cache) as tmp:
            tmp.write_bytes(bytes(cache.serialize()))
    sidecar = expected_sidecar(trt_version=trt.__version__, gpu=gpu_info(), onnx_sha256=sha256_file(plan.onnx_path),
                               profiles=plan.shapes, precision=plan.precision, typing=plan.typing, keep_fp32=plan.keep)
    sidecar.update({
        "engine_sha256": sha256_file(plan.engine_path), "onnx": str(plan.onnx_path), "input": input_name,
        "built_from": str(plan.source.name), "fp32_pins": pinned, "workspace_mb": int(plan.workspace_mb),
        "timing_cache": str(plan.timing_cache) if plan.timing_cache else None, "build_seconds": round(build_s, 1),
        "layer_info": layers_path(plan.engine_path).name,
        "layer_precisions": {k: report[k] for k in ("layers", "by_precision", "fp32_layers", "kept",
                                                    "kept_ran_fp16", "kept_unplaced", "ok")},
    })
    write_json(sidecar_path(plan.engine_path), sidecar)
    return sidecar


def engine_layer_info(trt, blob: bytes, input_name: str, opt_shape: Sequence[int]) -> dict[str, Any]:
    """Engine-inspector JSON of a serialized engine at the profile's opt shape (:func:`~segstyle.export.portable.layer_precision.inspect_engine`)."""
    try:
        return _lp.inspect_engine(trt, blob, input_name, opt_shape)
    except _lp.LayerInfoError as e:
        raise SegstyleError(str(e)) from None


def ensure_engine(onnx_path: str | Path | None, engine_path: str | Path, *, profiles, workspace_mb: int,
                  timing_cache: str | Path | None, precision: str = "fp16",
                  keep_fp32: Sequence[str] = ("InstanceNormalization",), force: bool = False,
                  typing: str = "strong") -> tuple[dict, list[str]]:
    """Return (sidecar, reasons it was rebuilt); an engine not matching this machine is rebuilt, never run."""
    from segstyle.export.backend.onnx.fp16 import keep_list
    from segstyle.core.hashing import sha256_file

    trt = require_tensorrt()
    engine_path = Path(engine_path)
    if onnx_path is None:
        side = read_sidecar(engine_path)
        if side is None or not engine_path.is_file():
            raise SegstyleError(f"{engine_path}: no engine with a sidecar here; give --onnx to build one")
        onnx_path = side.get("onnx")
        if not onnx_path or not Path(onnx_path).is_file():
            raise SegstyleError(f"{engine_path}: its sidecar names ONNX '{onnx_path}', which is missing; give --onnx")
    path = typing_path(trt_major(trt.__version__), fp16_graph=_is_fp16_graph(onnx_path), precision=precision,
                       typing=typing)
    expected = expected_sidecar(trt_version=trt.__version__, gpu=gpu_info(), onnx_sha256=sha256_file(onnx_path),
                                profiles=profile_shapes(profiles), precision=precision, typing=path,
                                keep_fp32=keep_list(keep_fp32))
    if force:
        reasons = ["--force"]
    elif not engine_path.is_file():
        reasons = ["no engine file"]
    else:
        reasons = stale_reasons(read_sidecar(engine_path), expected)
    if reasons:
        side = build_engine(onnx_path, engine_path, profiles=profiles, workspace_mb=workspace_mb,
                            timing_cache=timing_cache, precision=precision, keep_fp32=keep_fp32, typing=typing)
    else:
        side = read_sidecar(engine_path)
    return side, reasons


def engine_shapes(model: str, noise_dim: int | None, profiles) -> dict[str, tuple[int, ...]]:
    """The TensorRT optimisation profile of one network's input as full min/opt/max shapes.

    Each network declares its own (registry ``engine_profile``): a noise network's profile is batch
    only, so its shapes are (batch, nz); image networks without one take ``profiles`` (params
    ``engine.profiles``, [batch, H, W] -> NCHW). The bundle's manifest and trtexec lines are written from this.
    """
    from segstyle.models import get_model_meta

    meta = get_model_meta(model)
    prof = meta.engine_profile
    if noise_dim is not None:
        if not prof:
            raise SegstyleError(f"{model}: a noise network must declare engine_profile (batch min/opt/max)")
        return {k: (int(prof[k][0]), int(noise_dim)) for k in ("min", "opt", "max")}
    return profile_shapes(prof if prof else profiles)


def tensorrt_reason() -> str | None:
    """None when TensorRT can build and run here, else the one-line reason (validation's not-run rows)."""
    if cuda_reason() is not None:
        return f"{NO_GPU} (TensorRT needs one)"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install --extra-index-url https://pypi.nvidia.com tensorrt)"
    return None
