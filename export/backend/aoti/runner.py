"""AOTInductor runner (``aoti-cpu``, ``aoti-cuda``): a compiled package, every input checked before it runs.

A package runs whatever it is given as if it had the shape it was exported for (see
:mod:`segstyle.export.backend.aoti.loader`): a misaligned H or W came back cropped, a
``channels_last`` tensor gave wrong values, a batch above the maximum ran. :meth:`AotiBackend.run`
therefore checks dtype, device, layout, rank, channels and every dimension against the ranges in
the package's sidecar, and refuses with one :class:`SegstyleError` line. It also refuses a package
whose sidecar names another torch build, CPU or GPU, before loading its shared library (code built
``-march=native`` for another CPU can die on an illegal instruction instead of raising).

The runner needs neither the model source nor the exported program: only the package and its
sidecar (a test loads one in a subprocess that never imports :mod:`segstyle.models`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from segstyle.core.errors import SegstyleError, first_line
from segstyle.export.backend.aoti.loader import Ranges, machine_mismatch, read_sidecar
from segstyle.export.backend.base import Backend


def check_input(x: Any, ranges: Ranges, *, dtype: torch.dtype, device: torch.device) -> None:
    """Raise one line unless ``x`` is an input the package was compiled for (see module doc)."""
    if not isinstance(x, torch.Tensor):
        raise SegstyleError(f"aoti: input must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != dtype:
        raise SegstyleError(f"aoti: input dtype {str(x.dtype).removeprefix('torch.')}, the package takes "
                            f"{str(dtype).removeprefix('torch.')}")
    if x.device.type != device.type:
        raise SegstyleError(f"aoti: input on {x.device}, the package runs on {device.type}")
    want_rank = 2 if ranges.height is None else 4
    if x.dim() != want_rank:
        raise SegstyleError(f"aoti: input shape {tuple(x.shape)}; the package takes {ranges.describe()}")
    if not x.is_contiguous():
        layout = "channels_last" if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) else "strided"
        raise SegstyleError(f"aoti: input is {layout}, the package reads contiguous NCHW memory (pass x.contiguous())")
    n = int(x.shape[0])
    if not ranges.batch[0] <= n <= ranges.batch[1]:
        raise SegstyleError(f"aoti: batch {n} outside the package's {ranges.batch[0]}..{ranges.batch[1]} "
                            "(run it in chunks)")
    if ranges.height is None:
        if int(x.shape[1]) != ranges.noise_dim:
            raise SegstyleError(f"aoti: noise length {int(x.shape[1])}, the package takes {ranges.noise_dim}")
        return
    if int(x.shape[1]) != 3:
        raise SegstyleError(f"aoti: {int(x.shape[1])} channels, the package takes 3 (RGB)")
    for name, v, (lo, hi) in (("H", int(x.shape[2]), ranges.height), ("W", int(x.shape[3]), ranges.width)):
        if not lo <= v <= hi:
            raise SegstyleError(f"aoti: {name} {v} outside the package's {lo}..{hi}")
        if v % ranges.align:
            raise SegstyleError(f"aoti: {name} {v} is not a multiple of {ranges.align}, which this package was "
                                f"exported for (it would return a wrong-sized output): resize or pad to "
                                f"{ranges.align * round(v / ranges.align)}")


class AotiBackend(Backend):
    """A compiled AOTInductor package; inputs are float32 0..1 like every backend (cast to FP16 for an FP16 package)."""

    def __init__(self, package: str | Path, *, device: str = "cpu"):
        package = Path(package)
        self.name = f"aoti-{device}"
        side = read_sidecar(package)
        if side is None or not package.is_file():
            raise SegstyleError(f"{package}: no package with a sidecar here; build one with "
                                "`segstyle engine build --backend aoti`")
        if side.get("device") != device:
            raise SegstyleError(f"{package}: a {side.get('device')} package, not {device}")
        bad = machine_mismatch(side, device)
        if bad:
            raise SegstyleError(f"{package}: built for another machine ({bad[0]}); rebuild it with "
                                "`segstyle engine build --backend aoti`")
        self.sidecar = side
        self.ranges = Ranges.from_json(side["ranges"])
        self.precision = side["precision"]
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.device = torch.device(device)
        try:
            from torch._inductor import aoti_load_package

            self.model = aoti_load_package(str(package))
        except Exception as e:
            raise SegstyleError(f"{package}: AOTInductor could not load it ({type(e).__name__}: "
                                f"{first_line(e, 160)})") from None

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """float32 0..1 in (the backends' common input), onto the package's device and precision."""
        return x.to(self.device, dtype=self.dtype if x.dtype == torch.float32 else x.dtype).contiguous()

    @torch.no_grad()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.ranges, dtype=self.dtype, device=self.device)
        out = self.model(x)
        return out[0] if isinstance(out, (list, tuple)) else out
