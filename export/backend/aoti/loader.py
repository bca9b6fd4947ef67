"""AOTInductor: the saved exported program (portable) and the package compiled from it (one machine).

Two artifacts, two names, because both are ``.pt2`` zip archives by default and mean different things:

- ``*.ep.pt2``, the **exported program** (``torch.export.save``): dynamic batch/H/W over the
  network's profile ranges, weights inside, no compiled code. It runs wherever the same torch
  major release runs and is what a bundle ships (:func:`export_program`).
- ``*.aoti.pt2``, the **compiled package** (``torch._inductor.aoti_compile_and_package``): a shared
  library of generated C++ (CPU, built ``-march=native`` for this machine's ISA) or CUDA kernels
  (one compute capability) plus the weights; loaded by ``torch._inductor.aoti_load_package`` or
  C++'s ``torch::inductor::AOTIModelPackageLoader`` with no model source (:func:`compile_package`).

Why the care around shapes: ``torch.export`` proves every shape guard symbolically, and a ResNet
or a stride-4 style network only exports when H and W are declared multiples of some ``align``
(:func:`export_program` tries 1, 2, 4, 8, 16, 32 in turn and records the first that exports). A
compiled package then trusts that declaration: measured here, a package exported with align 32
returned a 192x128 map for a 200x136 input without a word, a ``channels_last`` input gave wrong
values and a batch above the exported maximum ran. So the runner checks every input against the
ranges recorded here before it runs (:mod:`segstyle.export.backend.aoti.runner`), and the package is
compiled with ``aot_inductor.check_lowerbound`` off: ``torch.export`` specialises batch 1 away from a
dynamic batch dimension's lower bound, so its own check would refuse batch 1, which we accept.

Like a TensorRT engine, a package is tied to the torch build, the device kind and the CPU ISA or GPU
it was compiled on (and runs its CPU loops on the thread count it was compiled with). Its sidecar
``<package>.json`` holds that rebuild key (:func:`expected_sidecar`); :func:`ensure_package`
rebuilds a package whose key does not match this machine instead of running it (DVC cannot tell:
a package pulled from a remote looks up to date on any CPU), and the runner refuses one.
"""

from __future__ import annotations

import json
import math
import platform
import re
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from segstyle.core.devices import cuda_reason
from segstyle.core.errors import SegstyleError, first_line
from segstyle.core.hashing import sha256_file
from segstyle.core.io import atomic_named_path, write_json
from segstyle.export.backend.sidecar import read_sidecar, sidecar_path, stale_reasons  # noqa: F401  (re-exported)
from segstyle.export.portable.compare import PARITY

if TYPE_CHECKING:
    import torch

    from segstyle.export.backend.pyt.loader import LoadedNet
    from segstyle.export.settings import ExportSettings

PROGRAM_SUFFIX = ".ep.pt2"
PACKAGE_SUFFIX = ".aoti.pt2"
META_FILE = "segstyle.json"  # our record inside the exported program's archive (torch.export.save extra_files)
ALIGNS = (1, 2, 4, 8, 16, 32)
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16")
# check_lowerbound off: torch.export specialises batch 1 away from a dynamic batch's lower bound, so the
# package's own check would refuse batch 1 (the runner checks every input instead; see the module doc).
# The wrapper (it only sequences kernel calls and allocations) at -O0, the kernels stay -O3: measured on the
# 2-core machine, the fused region-style network then compiles in 165 s instead of 245 s.
INDUCTOR_CONFIGS = {"aot_inductor.check_lowerbound": False, "aot_inductor.compile_wrapper_opt_level": "O0"}


@dataclass(frozen=True)
class Ranges:
    """The input a program accepts: batch [min, max]; images also H/W [min, max] in steps of ``align``."""

    batch: tuple[int, int]
    height: tuple[int, int] | None = None
    width: tuple[int, int] | None = None
    align: int = 1
    noise_dim: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Ranges":
        return cls(batch=tuple(d["batch"]), height=tuple(d["height"]) if d.get("height") else None,
                   width=tuple(d["width"]) if d.get("width") else None, align=int(d.get("align", 1)),
                   noise_dim=d.get("noise_dim"))

    def aligned(self, align: int) -> "Ranges":
        """These ranges with H/W bounds moved inwards onto multiples of ``align``."""
        if self.height is None:
            return self
        def inner(lo, hi):
            return (align * math.ceil(lo / align), align * (hi // align))
        return Ranges(self.batch, inner(*self.height), inner(*self.width), align, self.noise_dim)

    def onto(self, size: Sequence[int]) -> tuple[int, int]:
        """``size`` (H, W) rounded up onto the alignment and clamped into the H/W ranges."""
        return tuple(min(max(self.align * math.ceil(int(v) / self.align), lo), hi)
                     for v, (lo, hi) in zip(size, (self.height, self.width)))

    def describe(self) -> str:
        if self.height is None:
            return f"(N, {self.noise_dim}) float32 noise, N in {self.batch[0]}..{self.batch[1]}"
        return (f"(N, 3, H, W) contiguous 0..1 RGB, N in {self.batch[0]}..{self.batch[1]}, H in "
                f"{self.height[0]}..{self.height[1]}, W in {self.width[0]}..{self.width[1]}, H and W multiples of "
                f"{self.align}")


def network_ranges(loaded: LoadedNet, settings: ExportSettings) -> Ranges:
    """The profile a network is exported over: its registry ``engine_profile`` (a noise network's batch
    range), else params ``engine.profiles`` ([batch, H, W] min/max): the same ranges a TensorRT engine gets."""
    from segstyle.models import get_model_meta

    prof = get_model_meta(loaded.model).engine_profile
    if loaded.noise_dim is not None:
        if not prof:
            raise SegstyleError(f"{loaded.model}: a noise network must declare engine_profile (batch min/opt/max)")
        return Ranges(batch=(int(prof["min"][0]), int(prof["max"][0])), noise_dim=int(loaded.noise_dim))
    lo, hi = (prof["min"], prof["max"]) if prof else (settings.engine_profiles.min, settings.engine_profiles.max)
    return Ranges(batch=(int(lo[0]), int(hi[0])), height=(int(lo[1]), int(hi[1])), width=(int(lo[2]), int(hi[2])))


def dynamic_shapes(r: Ranges):
    """``torch.export`` dims for ``r``: H and W as ``align`` x a dim when ``align`` > 1."""
    from torch.export import Dim

    batch = Dim("batch", min=r.batch[0], max=r.batch[1])
    if r.height is None:
        return ({0: batch},)
    if r.align == 1:
        h, w = Dim("height", min=r.height[0], max=r.height[1]), Dim("width", min=r.width[0], max=r.width[1])
    else:
        a = r.align
        h = a * Dim("height_over_align", min=r.height[0] // a, max=r.height[1] // a)
        w = a * Dim("width_over_align", min=r.width[0] // a, max=r.width[1] // a)
    return ({0: batch, 2: h, 3: w},)


def example(r: Ranges, batch: int, size: Sequence[int] | None, seed: int = 0) -> "torch.Tensor":
    """A seeded input inside ``r`` (``size`` rounded up onto the alignment and clamped into the ranges)."""
    import torch

    from segstyle.export.backend.pyt.loader import example_input

    b = min(max(batch, r.batch[0]), r.batch[1])
    if r.height is None:
        return example_input(r.noise_dim, b, None, torch.Generator().manual_seed(seed))
    return example_input(None, b, r.onto(size), torch.Generator().manual_seed(seed))


def _export(wrapper, x, r: Ranges):
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.export.export(wrapper, (x,), dynamic_shapes=dynamic_shapes(r), strict=False)


def check_sizes(r: Ranges, parity_sizes: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Sizes a candidate program is checked at: the parity sizes and the range's corners put onto the
    alignment, and one odd multiple of it, so a branch ``torch.export`` specialised at the example's shape
    (e.g. "H is / is not a multiple of 32": a crop that is a no-op only then) trips its guard here."""
    odd = (r.align * (2 * (r.height[0] // (2 * r.align)) + 3), r.align * (2 * (r.width[0] // (2 * r.align)) + 5))
    raw = [*parity_sizes, (r.height[0], r.width[0]), (r.height[1], r.width[0]), odd]
    return list(dict.fromkeys(r.onto(hw) for hw in raw))  # in order, each size once


def _program_error(module, wrapper, r: Ranges, settings: ExportSettings) -> tuple[float, str | None]:
    """(max abs error against eager, None) over :func:`check_sizes` at batch 1 and one size at batch 3;
    (inf, why) when the program refuses a shape inside its own ranges (a specialised guard)."""
    import torch

    if r.height is None:  # a noise network: only the batch varies
        cases = [(1, None), (3, None)]
    else:
        cases = [(1, size) for size in check_sizes(r, settings.parity_sizes)] + [(3, settings.parity_sizes[0])]
    worst = 0.0
    for batch, size in cases:
        x = example(r, batch, size, settings.seed + 1)
        with torch.no_grad():
            want = wrapper(x)
            try:
                got = module(x)
            except Exception as e:  # a runtime guard of the program (AssertionError / RuntimeError)
                return math.inf, f"input {tuple(x.shape)} refused: {type(e).__name__}: {first_line(e, 140)}"
        if got.shape != want.shape:
            return math.inf, f"input {tuple(x.shape)}: program {tuple(got.shape)}, eager {tuple(want.shape)}"
        worst = max(worst, float((got - want).abs().max()))
    return worst, None


def export_program(loaded: LoadedNet, settings: ExportSettings, out: str | Path) -> dict[str, Any]:
    """Export ``loaded`` over its ranges, check the program against eager, save it atomically; returns its record.

    The first alignment of :data:`ALIGNS` that ``torch.export`` accepts *and* whose program runs every
    shape of :func:`check_sizes` is taken (alignments below the one a refusal's suggested fix names are
    skipped: each try costs an export); the program's module must then match eager PyTorch within
    the ONNX parity tolerance there (batch 1 and 3, none of them the example input's shape).
    """
    import torch

    from segstyle.export.backend.onnx.exporter import build_metadata
    from segstyle.export.backend.pyt.loader import ExportWrapper

    wrapper = ExportWrapper(loaded.net).eval()
    base = network_ranges(loaded, settings)
    tried: list[str] = []
    t0 = time.perf_counter()
    floor = 1  # torch.export's "Suggested fixes" (h = 32*_h) name the alignment it can prove: skip those below
    for align in ALIGNS if base.height is not None else (1,):
        if align < floor:
            continue
        r = base.aligned(align)
        try:
            ep = _export(wrapper, example(r, 2, settings.size, settings.seed), r)
        except Exception as e:  # torch.export raises many types; the reason is its first line
            tried.append(f"align {align}: {type(e).__name__}: {first_line(e, 160)}")
            floor = max([floor, *(int(v) for v in re.findall(r"=\s*(\d+)\*_", str(e)))])
            continue
        worst, why = _program_error(ep.module(), wrapper, r, settings)
        if why is None:
            break
        tried.append(f"align {align}: {why}")
    else:
        raise SegstyleError(f"torch.export of '{loaded.model}' failed at every alignment ({tried[-1]})")
    seconds = time.perf_counter() - t0
    if not worst <= PARITY.atol:
        raise SegstyleError(f"{loaded.model}: the exported program disagrees with eager PyTorch (max abs error "
                            f"{worst:.3g} > {PARITY.atol:g}); {out} not written")
    size = list(example(r, 2, settings.size).shape[2:]) if r.height is not None else []
    meta = {k.removeprefix("segstyle."): v for k, v in build_metadata(loaded, settings, opset=0, size=size).items()
            if k != "segstyle.opset"}
    record = {"format": "segstyle exported program 1", "ranges": r.as_json(), "alignments_tried": tried,
              "parity_max_abs_err": worst, "metadata": meta}
    with atomic_named_path(out) as tmp:  # no wall-clock value inside: the same network exports the same bytes
        torch.export.save(ep, tmp, extra_files={META_FILE: json.dumps(record, sort_keys=True)})
    return {**record, "export_seconds": round(seconds, 2)}


def read_program_record(path: str | Path) -> dict[str, Any]:
    """Our record inside a saved exported program, read from the zip without loading the program."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith(f"extra/{META_FILE}")), None)
            if name is None:
                raise SegstyleError(f"{path}: not a segstyle exported program (no {META_FILE}; write one with "
                                    "`segstyle export program`)")
            return json.loads(z.read(name))
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise SegstyleError(f"{path}: not a readable exported program ({type(e).__name__}: {first_line(e, 120)})") from None


def load_program(path: str | Path):
    import torch

    try:
        return torch.export.load(str(path))
    except Exception as e:
        raise SegstyleError(f"{path}: torch.export.load failed ({type(e).__name__}: {first_line(e, 160)})") from None


# ----------------------------------------------------------------------------- the machine and its key

def cpu_model() -> str:
    """The CPU's model name (``-march=native`` code is for this CPU, not only for its ISA family)."""
    from segstyle.core.devices import cpuinfo

    return cpuinfo("model name") or platform.processor() or platform.machine()


def machine(device: str) -> dict[str, Any]:
    """What ties a package to a machine: torch build, device kind, CPU ISA + model or GPU + compute capability.

    Not in the key: the OpenMP thread count inductor bakes into CPU loops (``torch.get_num_threads()`` at
    compile time). Another count runs correctly, only at another speed, so the sidecar records it and the
    benchmark refuses to compare a package against backends given a different count."""
    import torch

    key: dict[str, Any] = {"torch_version": torch.__version__, "device": device}
    if device == "cpu":
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        key.update({"cpu_isa": str(pick_vec_isa()) or "scalar", "cpu_model": cpu_model()})
    else:
        why = cuda_reason()
        if why is not None:
            raise SegstyleError(f"aoti-cuda: {why}")
        p = torch.cuda.get_device_properties(0)
        key.update({"gpu_name": p.name, "compute_capability": f"{p.major}.{p.minor}"})
    return key


def expected_sidecar(*, device: str, program_sha256: str, ranges: Ranges, precision: str) -> dict[str, Any]:
    """The rebuild key: every field a package's sidecar must match to be run here as-is."""
    return {**machine(device), "program_sha256": program_sha256, "ranges": ranges.as_json(), "precision": precision}


def machine_mismatch(sidecar: dict[str, Any] | None, device: str) -> list[str]:
    """The machine part of the rebuild key's check (what the runner checks before it loads the shared library)."""
    return stale_reasons(sidecar, machine(device), "package")


def aoti_reason(device: str) -> str | None:
    """None when an AOTInductor package for ``device`` can be compiled and run here, else the reason."""
    import shutil

    if device == "cuda":
        why = cuda_reason()
        return f"{why} (aoti-cuda needs one)" if why else None
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        return "no C++ compiler on PATH (AOTInductor compiles its CPU kernels with one)"
    return None


# ----------------------------------------------------------------------------- compile

def _program_for(path: Path, record: dict[str, Any], device: str, precision: str, checkpoint: str | Path | None):
    """The program to compile for ``device`` / ``precision``.

    - CPU FP32: the saved program as it is.
    - CUDA FP32: the saved program moved to the GPU (``torch.export.passes.move_to_device_pass``: the
      program records the device of every tensor it asserts, so ``.to("cuda")`` on its module fails).
    - FP16: exported again from ``checkpoint`` with ``.half()`` weights and input (as the ``torch-fp16``
      backend runs; InstanceNorm32 keeps its statistics FP32 inside), over the program's own ranges and
      alignment. The program records dtypes too, so it cannot be cast; the checkpoint must be the one
      the program was exported from (its sha256 is in the program's record).
    """
    if precision == "fp32":
        ep = load_program(path)
        if device == "cpu":
            return ep
        from torch.export.passes import move_to_device_pass

        return move_to_device_pass(ep, device)
    from segstyle.export.backend.pyt.loader import ExportWrapper, load_net

    if checkpoint is None:
        raise SegstyleError(f"aoti {device} fp16 compiles from the checkpoint the program came from: give --checkpoint")
    want = record["metadata"].get("checkpoint_sha256")
    have = sha256_file(checkpoint)
    if want != have:
        raise SegstyleError(f"{checkpoint} is not the checkpoint {path} was exported from (sha256 {have[:12]}, the "
                            f"program's {str(want)[:12]})")
    r = Ranges.from_json(record["ranges"])
    module = ExportWrapper(load_net(None, checkpoint).net).eval().to(device).half()
    x = example(r, 2, json.loads(record["metadata"].get("export_size") or "null")).to(device).half()
    return _export(module, x, r)


def compile_package(program: str | Path, out: str | Path, *, device: str = "cpu", precision: str = "fp32",
                    checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Compile the saved program into a package for this machine; write it and its sidecar atomically."""
    import torch

    if device not in DEVICES or precision not in PRECISIONS:
        raise SegstyleError(f"aoti: device must be one of {DEVICES}, precision one of {PRECISIONS}")
    if device == "cpu" and precision == "fp16":
        raise SegstyleError("aoti fp16 is a CUDA package; on a CPU compile fp32 (FP16 runs slower than FP32 on "
                            "these CPUs: see the deployment matrix)")
    why = aoti_reason(device)
    if why:
        raise SegstyleError(f"aoti-{device}: {why}")
    program = Path(program)
    record = read_program_record(program)
    ranges = Ranges.from_json(record["ranges"])
    expected = expected_sidecar(device=device, program_sha256=sha256_file(program), ranges=ranges,
                                precision=precision)
    t0 = time.perf_counter()
    ep = _program_for(program, record, device, precision, checkpoint)
    meta = {"segstyle.model": str(record["metadata"].get("model")), "segstyle.precision": precision,
            "segstyle.ranges": json.dumps(ranges.as_json()), "segstyle.program_sha256": expected["program_sha256"]}
    with atomic_named_path(out) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch._inductor.aoti_compile_and_package(
                ep, package_path=str(tmp),
                inductor_configs={**INDUCTOR_CONFIGS, "aot_inductor.metadata": meta})
        except Exception as e:
            raise SegstyleError(f"AOTInductor could not compile {program} for {device} "
                                f"({type(e).__name__}: {first_line(e, 200)}); {out} not written") from None
    side = {**expected, "threads": torch.get_num_threads() if device == "cpu" else None,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "program": str(program), "package": str(out), "model": record["metadata"].get("model"),
            "task": record["metadata"].get("task"), "compile_seconds": round(time.perf_counter() - t0, 2),
            "input": ranges.describe(), "size_bytes": Path(out).stat().st_size}
    write_json(sidecar_path(out), side)
    return side


def ensure_package(program: str | Path | None, package: str | Path, *, device: str = "cpu", precision: str = "fp32",
                   force: bool = False, threads: int | None = None,
                   checkpoint: str | Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """Return (sidecar, reasons it was rebuilt): a package whose rebuild key does not match is rebuilt, never run.

    Without ``program`` the one its sidecar names is used (it must still exist and hash the same).
    ``threads``: also rebuild a CPU package compiled for another thread count (``engine build --threads``).
    """
    package = Path(package)
    side = read_sidecar(package)
    if program is None:
        program = (side or {}).get("program")
        if not program or not Path(program).is_file():
            raise SegstyleError(f"{package}: no exported program to build it from (its sidecar names "
                                f"{program!r}); give --program")
    record = read_program_record(program)
    expected = expected_sidecar(device=device, program_sha256=sha256_file(program),
                                ranges=Ranges.from_json(record["ranges"]), precision=precision)
    if force:
        reasons = ["--force"]
    elif not package.is_file():
        reasons = ["no package file"]
    else:
        reasons = stale_reasons(side, expected, "package")
        if threads and device == "cpu" and side and side.get("threads") != threads:
            reasons.append(f"threads: package has {side.get('threads')!r}, asked {threads!r}")
    if reasons:
        side = compile_package(program, package, device=device, precision=precision,
                               checkpoint=checkpoint or (side or {}).get("checkpoint"))
    return side, reasons

